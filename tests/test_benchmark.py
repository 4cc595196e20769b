"""experiments.benchmark end to end (smoke config): the report's structure, never a speed.

The smoke run includes the end-to-end section (unlearning vs retraining whole runs) on the session's
smoke GAN and stub classifier. The run splits the CPU into two JAX devices
(``--config.cpu_devices=2``: the data-parallel rows run
on a real 2-device mesh) and passes XLA's backend optimisation level 0 through
``--config.xla_flags`` (it halves compile times); the numbers it reports are not used.
"""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from conftest import run_module
from experiments.benchmarks import end_to_end, kinds, suite
from experiments.configs import benchmark as benchmark_config
from jaxunlearn.benchmarking import Case, measure, prepare
from jaxunlearn import runs
from jaxunlearn.errors import UserInputError

ROW_KEYS = {"kind", "framework", "batch_size", "devices", "compile_s", "median_ms", "min_ms",
            "iqr_ms", "cpu_median_ms", "n", "images_per_s", "flops_per_step", "flops_per_s",
            "fraction_of_matmul_peak", "xla_buffer_bytes", "peak_memory_bytes",
            "peak_memory_source"}
O0 = "--xla_backend_optimization_level=0"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, smoke_gan, stub_classifier):
  workdir = str(tmp_path_factory.mktemp("benchmark"))
  run_module("experiments.benchmark", "--config=experiments/configs/benchmark.py:smoke",
             f"--workdir={workdir}", "--config.cpu_devices=2", f"--config.xla_flags={O0}",
             f"--config.end_to_end.pretrained={smoke_gan}",
             f"--config.end_to_end.feedback_classifier={stub_classifier}")
  with open(os.path.join(workdir, "results.json")) as f:
    return workdir, json.load(f)


@pytest.mark.slow
def test_a_row_per_kind_and_batch_size(smoke_run):
  _, results = smoke_run
  jax_rows = {(r["kind"], r["batch_size"]): r for r in results["rows"]
              if r["framework"] == "jax" and r["devices"] == 1}
  skipped = {(s["kind"], s["batch_size"]) for s in results["skipped"]}
  for kind in kinds.KINDS:
    assert (kind, 8) in jax_rows or (kind, 8) in skipped, kind
  for kind in ("gan_train_step", "gan_d_step", "gan_g_step", "sample", "stylegan2_train_step",
               "stylegan2_regularized_step"):
    assert (kind, 8) in jax_rows, f"{kind} was skipped: {results['skipped']}"
  for row in results["rows"]:
    assert set(row) >= ROW_KEYS and row["n"] == 2
    assert row["median_ms"] > 0 and row["images_per_s"] > 0
  train = jax_rows[("gan_train_step", 8)]
  assert train["flops_per_step"] > 0 and train["compile_s"] > 0
  assert 0 < train["fraction_of_matmul_peak"]
  assert results["matmul_peak"]["reference_flops_per_s"] > 0
  assert results["unlearn_vs_retrain"] or not any(k.unlearning for k in kinds.KINDS.values())


@pytest.mark.slow
def test_peer_scaling_and_files(smoke_run):
  workdir, results = smoke_run
  peer = results["peer"]
  assert results["machine"]["device_count"] == 2 and O0 in results["machine"]["xla_flags"]
  assert {"cpu", "jax", "jaxlib", "load_average_start", "load_average_end"} <= set(
      results["machine"]) and "load_average" not in results["machine"]
  two = [r for r in results["rows"] if r["devices"] == 2]
  assert [(r["kind"], r["batch_size"]) for r in two] == [("gan_train_step", 8)]
  if peer["available"]:
    assert peer["parameters"]["jax"] == peer["parameters"]["torch"]
    assert [c["batch_size"] for c in peer["comparison"]] == [8]
    comparison = peer["comparison"][0]
    assert set(comparison["jax_median_ms_by_devices"]) == {"1", "2"}  # JSON object keys
    best = comparison["jax_median_ms_by_devices"][str(comparison["jax_best_devices"])]
    assert best == min(comparison["jax_median_ms_by_devices"].values())
    assert comparison["torch_over_jax_best"] == pytest.approx(comparison["torch_median_ms"] / best)
    assert peer["torch_threads"] >= 1 and peer["process"] == "separate"
    assert any(r["framework"] == "torch" for r in results["rows"])
    onednn = [r for r in results["rows"] if r["kind"] == suite.ONEDNN]  # absent without oneDNN
    if onednn:
      assert comparison["torch_over_jax_onednn"] == pytest.approx(
          comparison["torch_median_ms"] / onednn[0]["median_ms"])
  else:
    assert "torch" in peer["reason"].lower() or "pytorch" in peer["reason"].lower()
  scaling = {s["devices"]: s for s in results["scaling"] if "devices" in s}
  assert scaling[1]["speedup"] == 1.0 and scaling[2]["images_per_s"] > 0
  with open(os.path.join(workdir, "benchmark.md")) as f:
    table = f.read()
  assert "| kind | framework | devices | batch |" in table
  assert "| gan_train_step | jax | 1 | 8 |" in table and "| gan_train_step | jax | 2 | 8 |" in table
  assert "## gan_train_step on several devices" in table
  if "torch_over_jax_onednn" in (peer["comparison"] or [{}])[0]:
    assert "| PyTorch / JAX, oneDNN convolutions |" in table
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["config"]["batch_sizes"] == [8]


@pytest.mark.slow
def test_end_to_end_rows_come_from_the_sub_runs(smoke_run):
  workdir, results = smoke_run
  section = results["end_to_end"]
  assert [(r["method"], r["forget"]) for r in section["rows"]] == [("cascaded", "class:8")]
  assert {"method": "cascaded_warm", "forget": "class:8",
          "reason": "item SPECs with nearest substitutes only"} in section["skipped"]
  for row in section["rows"]:
    retrain, unlearn = row["retrain"], row["unlearn"]
    sub = runs.read_json(os.path.join(retrain["workdir"], "results.json"))
    assert sub["forget"] == row["forget"] and sub["steps"] == retrain["measured_steps"] == 2
    assert retrain["extrapolated"] and retrain["steps"] > 2
    assert retrain["retrain_s"] == pytest.approx(sub["timing"]["train_s"] * retrain["steps"] / 2)
    assert retrain["image_passes"] == retrain["steps"] * 2 * sub["batch_size"]
    (unlearn_dir,) = [os.path.join(workdir, "end_to_end", d)
                      for d in os.listdir(os.path.join(workdir, "end_to_end"))
                      if d.startswith("cascaded_" + row["forget"].replace(":", "_"))]
    cascade = runs.read_json(os.path.join(unlearn_dir, "results.json"))
    assert unlearn["unlearn_s_repeats"] == [cascade["timing"]["unlearn_s"]]
    assert unlearn["steps"] == cascade["timing"]["steps"] and unlearn["reused"] == [False]
    assert row["reference"] is None and cascade["reference"] is None  # G_R only from a whole retrain
    assert row["speedup"] == pytest.approx(retrain["retrain_s"] / unlearn["unlearn_s"])
    assert row["step_ratio"] == pytest.approx(retrain["steps"] / unlearn["steps"])
    quality = unlearn["quality"]
    assert (quality["original"], quality["unlearned"]) == (cascade["stop"]["original"],
                                                           cascade["stop"]["statistic"])
  with open(os.path.join(workdir, "benchmark.md")) as f:
    table = f.read()
  assert "whole runs (same process, spec §9)" in table
  assert "| cascaded | class:8 |" in table and "2 of " in table and "(extrapolated)" in table


def test_warm_cascade_times_only_runs_after_the_one_that_fills_the_feature_cache(monkeypatch,
                                                                                 tmp_path):
  calls = []

  def fake_unlearn(config, workdir, **kwargs):
    del kwargs
    calls.append((os.path.basename(workdir), config.substitution.feature_cache))
    source = "cache" if len(calls) > 1 else "computed, stored"
    return {"timing": {"unlearn_s": float(len(calls)), "compile_s": 1.0, "steps": 20,
                       "image_passes": 9, "substitute_s": 0.5},
            "substitution": {"features": source}, "mode": "item",
            "stop": {"original": 0.5, "statistic": 0.45, "reference": None, "met": True},
            "flags": []}

  monkeypatch.setattr(end_to_end.cascaded, "unlearn", fake_unlearn)
  config = benchmark_config.get_config("smoke").end_to_end
  config.repeats = 2
  out = end_to_end._unlearn_repeats(config, "cascaded_warm", str(tmp_path), "items:64", None, 0,
                                    None, lambda message: None)
  cache = os.path.join(str(tmp_path), end_to_end.FEATURE_CACHE)
  assert calls == [("cascaded_warm_items_64_fill", cache), ("cascaded_warm_items_64_r0", cache),
                   ("cascaded_warm_items_64_r1", cache)]
  assert out["unlearn_s_repeats"] == [2.0, 3.0] and out["features"] == ["cache", "cache"]
  assert out["substitute_s"] == 0.5
  assert config.cascaded.substitution.feature_cache == ""  # the benchmark's config is untouched


def test_median_repeat():
  repeats = [{"timing": {"unlearn_s": t}, "i": i} for i, t in enumerate((5.0, 1.0, 3.0))]
  assert end_to_end.median_repeat(repeats)["i"] == 2
  assert end_to_end.median_repeat(repeats[:2])["i"] == 0  # upper median of two


@pytest.mark.parametrize("field, value, message", [
    ("methods", "cascaded,nope", "nope"), ("forget", " , ", "empty"), ("repeats", 0, "repeats"),
    ("adapt_then_unlearn_repeats", 0, "adapt_then_unlearn_repeats"),
    ("feedback_classifier", "/no/such/dir", "feedback_classifier")])
def test_bad_end_to_end_settings_are_refused(tmp_path, field, value, message):
  config = benchmark_config.get_config("smoke").end_to_end
  config.pretrained = config.feedback_classifier = str(tmp_path)
  config[field] = value
  with pytest.raises(UserInputError, match=message):
    end_to_end.check_config(config)


@pytest.mark.parametrize("field, value, message", [
    ("kinds", "gan_train_step,nope", "nope"), ("batch_sizes", (8, 0), "batch_sizes"),
    ("iters", 0, "iters"), ("cpu_devices", -2, "cpu_devices")])
def test_bad_settings_are_refused(field, value, message):
  config = benchmark_config.get_config("smoke")
  config[field] = value
  with pytest.raises(UserInputError, match=message):
    suite.check_config(config)


def test_measure_threads_donated_state_and_alternates():
  step = jax.jit(lambda s, x: (s + x, jnp.sum(s)), donate_argnums=0)
  runner = prepare(Case(step, (jnp.zeros(3), jnp.ones(3)), items=3))
  calls = []
  other = lambda: calls.append("other")
  timings = measure({"step": runner, "other": other}, warmup=1, iters=4, rounds=2)
  assert len(timings["step"].wall) == 4 and len(timings["other"].cpu) == 4
  # 1 warm-up + 2 rounds × (1 settling + 2 timed) calls, each adding 1 to the threaded state.
  assert float(runner.args[0][0]) == 7.0
  assert calls == ["other"] * 7


def test_retraining_recipe_fills_fields_the_original_predates(tmp_path):
  stored = {"model": "dcgan", "latent_dim": 100, "dataset": "mnist", "num_epochs": 3,
            "dcgan": {"g_width": 32}, "optimizer": {"learning_rate": 1e-3}}
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"config": stored}, f)
  recipe = end_to_end.retraining_recipe(str(tmp_path))
  assert recipe.num_epochs == 3 and recipe.dcgan.g_width == 32 and recipe.dcgan.d_width == 64
  assert recipe.optimizer.learning_rate == 1e-3 and recipe.optimizer.b1 == 0.5
  assert recipe.nonfinite_policy == "stop"  # absent from the stored config: today's default


def test_a_bad_forget_spec_is_refused_before_any_run(smoke_gan, data_dir):
  config = benchmark_config.get_config("smoke").end_to_end
  config.pretrained = smoke_gan
  config.forget = "class:8,class:12"
  with pytest.raises(UserInputError, match="12"):
    end_to_end.check_forget_specs(config, data_dir, seed=0)
