"""The report card: experiments.evaluate end to end, refusals, class mode, feature cache."""

import json
import os
import shutil

import numpy as np
import pytest

import eval_smoke_runs
from conftest import run_module
from experiments.configs import evaluate as evaluate_config
from jaxunlearn import parallel
from jaxunlearn.data import load_dataset
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifiers, inception, real_features, report
from jaxunlearn.eval.fid import FeatureStats
from jaxunlearn.latents import latent_bank
from jaxunlearn.train import pretrained
from jaxunlearn.train.loop import prepare_data
from random_inception import random_variables
from third_party import fid_inception

SMOKE = "--config=experiments/configs/evaluate.py:smoke"


@pytest.fixture(scope="session")
def smoke_classifier(tmp_path_factory, data_dir):
  return eval_smoke_runs.smoke_classifier(str(tmp_path_factory.getbasetemp()), data_dir)


@pytest.fixture(scope="session")
def retrained_gan(tmp_path_factory, data_dir):
  return eval_smoke_runs.retrained_items_gan(str(tmp_path_factory.getbasetemp()), data_dir)


def _keys(section):
  return [c["key"] for c in section["columns"]]


def test_evaluate_writes_a_complete_report_card(smoke_gan, retrained_gan, smoke_classifier,
                                                tmp_path):
  workdir, cache = tmp_path / "eval", tmp_path / "cache"
  run_module("experiments.evaluate", f"--checkpoint={smoke_gan}", f"--reference={retrained_gan}",
             "--forget=items:16", f"--eval_classifier={smoke_classifier}", f"--workdir={workdir}",
             SMOKE, f"--config.stats_cache_dir={cache}")
  assert {"report_card.json", "report_card.md", "results.json", "config.json"} <= set(
      os.listdir(workdir))
  card = json.load(open(workdir / "report_card.json"))
  results = json.load(open(workdir / "results.json"))
  assert results["effectiveness"] == card["effectiveness"] and results["smoke"] is True
  header = card["header"]
  assert {key for key, _ in report.HEADER_FIELDS} <= set(header)
  assert "smoke" in header["flags"] and header["task"].startswith("item unlearning, n = 16")
  assert header["evaluation_classifier"].startswith("mnist_lenet_eval_s0_smoke")
  assert _keys(card["effectiveness"]) == [k for k, _, _ in report.EFFECTIVENESS_COLUMNS]
  assert _keys(card["quality"]) == [k for k, _, _ in report.QUALITY_COLUMNS]
  assert _keys(card["efficiency"]) == [k for k, _, _ in report.EFFICIENCY_COLUMNS]

  effectiveness = {r["model"]: r for r in card["effectiveness"]["rows"]}
  assert list(effectiveness) == ["Original G0/D0", "Retrained G_R/D_R (gold)"]
  for row in effectiveness.values():
    assert row["class_share_pct"] is None and row["pul_pct"] is None  # n/a for items
    assert 0 <= row["mia_d_auc"] <= 1 and 0 <= row["mia_l_bal_acc"] <= 1
    assert row["mia_g_auc"] is None
  mia = card["details"]["retrained"]["mia"]
  assert mia["n_member"] == 16 and mia["n_nonmember"] == 500  # H_eval of the smoke split
  assert card["details"]["mia_sets"] == {"n_member": 16, "n_nonmember": 500, "n_control": 16,
                                         "n_threshold": 200}
  quality = {r["model"]: r for r in card["quality"]["rows"]}
  assert list(quality) == ["Original G0/D0", "Retrained G_R/D_R (gold)", "Floors"]
  for name in ("Original G0/D0", "Retrained G_R/D_R (gold)"):
    row = quality[name]
    assert all(row[k] is not None for k in _keys(card["quality"]))
    assert row["fid_clf"] > quality["Floors"]["fid_clf"]  # a 6-step GAN is far from real data
    assert 1.0 <= row["cs"] <= 10.0
  assert quality["Floors"]["ret_fid_clf"] is not None
  assert quality["Floors"]["downstream_acc_pct"] > 10.0  # real-data bound beats chance
  efficiency = {r["model"]: r for r in card["efficiency"]["rows"]}
  assert efficiency["Retrained (reference)"]["speedup"] == 1.0
  assert efficiency["Original G0/D0"]["steps"] == 6
  floors = card["details"]["floors"]
  assert floors["n_real_reference"] == 512 and not floors["reference_from_cache"]
  assert sorted(os.listdir(cache)) == sorted(
      [floors["reference_cache_key"] + ".npz", floors["real_floor_cache_key"] + ".npz"])
  markdown = (workdir / "report_card.md").read_text()
  for title in ("Table A — effectiveness", "MIA-D TPR@1%FPR", "Ret-FID-clf ↓", "speed-up T_R/T_U",
                "| Floors |", "n/a"):
    assert title in markdown


@pytest.fixture(scope="module")
def cifar_gan(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("cifar_gan"))
  run_module("experiments.train_gan", f"--workdir={workdir}",
             "--config=experiments/configs/cifar10_dcgan.py:smoke",
             "--config.cifar10_variant=exact_subset", f"--data_dir={data_dir}")
  return workdir


def _corrupt_copy(src, dst):
  shutil.copytree(src, dst)
  for root, _, files in os.walk(os.path.join(dst, "checkpoints")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  return dst


@pytest.mark.parametrize("case, message", [
    ("corrupt", "no intact checkpoint"),
    ("cifar_reference", "was trained on 'cifar10' but the model under test on 'mnist'"),
    ("full_data_reference", "was trained on all of D"),
    ("classifier_is_a_gan", "holds no classifier"),
])
def test_bad_input_is_one_error_line_and_no_results(case, message, smoke_gan, smoke_classifier,
                                                    tmp_path, request):
  checkpoint, reference, classifier = smoke_gan, None, smoke_classifier
  if case == "corrupt":
    checkpoint = _corrupt_copy(smoke_gan, tmp_path / "corrupt")
  elif case == "cifar_reference":
    reference = request.getfixturevalue("cifar_gan")
  elif case == "full_data_reference":
    reference = smoke_gan
  else:
    classifier = smoke_gan
  workdir = tmp_path / "eval"
  args = [f"--checkpoint={checkpoint}", f"--eval_classifier={classifier}", f"--workdir={workdir}",
          SMOKE] + ([f"--reference={reference}"] if reference else [])
  proc = run_module("experiments.evaluate", *args, check=False)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(errors) == 1 and message in errors[0]
  assert proc.stderr.strip().splitlines()[-1] == errors[0]
  assert not workdir.exists() or not any(workdir.iterdir())


def test_class_mode_shares_pul_floors_and_na_cells(smoke_gan, retrained_gan, smoke_classifier,
                                                   data_dir, tmp_path):
  mesh = parallel.make_mesh()
  original = pretrained.load_gan(smoke_gan, mesh)
  model = pretrained.load_gan(retrained_gan, mesh)  # stands in for an unlearned model
  classifier = classifiers.load_classifier(smoke_classifier)
  data = prepare_data(model.config, data_dir, 0, "class:1")
  config = evaluate_config.get_config("smoke")
  config.num_real, config.downstream.enabled = -1, False
  timing = {"unlearn_s": 2.0, "compile_s": 1.0, "steps": 5}
  card = report.evaluate_gan(model, eval_classifier=classifier, data=data, forget=data.forget,
                             original=original, config=config, mesh=mesh, cache_dir=None,
                             model_results={"method": "mymethod", "timing": timing})
  rows = {r["model"]: r for r in card["effectiveness"]["rows"]}
  assert list(rows) == ["Original G0/D0", "Unlearned (mymethod)"]
  details = card["details"]
  for key, label in (("original", "Original G0/D0"), ("model", "Unlearned (mymethod)")):
    histogram = np.asarray(details[key]["class_histogram"])
    assert histogram.sum() == pytest.approx(1.0)
    assert rows[label]["class_share_pct"] == pytest.approx(100 * histogram[1])
    assert details[key]["class_count"] == round(histogram[1] * config.num_samples)
    assert rows[label]["mia_d_auc"] is None  # MIA is n/a for class unlearning
  assert rows["Original G0/D0"]["pul_pct"] is None
  n0, n1 = details["original"]["class_count"], details["model"]["class_count"]
  expected_pul = None if n0 == 0 else 100 * (n0 - n1) / n0
  assert rows["Unlearned (mymethod)"]["pul_pct"] == expected_pul
  dataset = data.dataset
  assert details["floors"]["n_real_reference"] == int(np.sum(dataset.test_labels != 1))
  assert 0 <= details["floors"]["classifier_floor_share_pct"] < 5  # a 94 % classifier
  assert card["header"]["task"] == "class 1"
  quality = {r["model"]: r for r in card["quality"]["rows"]}
  assert quality["Unlearned (mymethod)"]["ret_fid_clf"] is None  # no reference given
  assert quality["Floors"]["downstream_acc_pct"] is None
  efficiency = card["efficiency"]["rows"]
  assert efficiency == [{"model": "Unlearned (mymethod)", "steps": 5, "image_passes": None,
                         "wall_time_s": 2.0, "compile_s": 1.0, "speedup": None,
                         "speedup_incl_compile": None}]
  assert "n/a" in report.render_markdown(card)


def test_real_feature_cache_is_reused_and_keyed_by_the_set(smoke_classifier, data_dir, tmp_path):
  classifier = classifiers.load_classifier(smoke_classifier)
  dataset = load_dataset("mnist", data_dir)
  mesh = parallel.make_mesh()
  get = lambda idx: real_features.real_features(dataset, "test", "all", idx, classifier, mesh,
                                                cache_dir=str(tmp_path), batch_size=50)
  first, second = get(np.arange(100)), get(np.arange(100))
  assert not first.cached and second.cached and first.key == second.key
  np.testing.assert_array_equal(first.features, second.features)
  np.testing.assert_allclose(first.stats.sigma, second.stats.sigma)
  other = get(np.arange(1, 101))
  assert not other.cached and other.key != first.key
  assert first.key.startswith("mnist_test_all_mnist_lenet_eval_s0_smoke_")
  # A damaged entry is recomputed and replaced: truncated, not a .npz, or with rows missing.
  path = tmp_path / f"{first.key}.npz"
  intact = path.read_bytes()
  with np.load(path) as f:
    fields = dict(f)
  short = tmp_path / "short.npz"
  np.savez(short, **{**fields, "features": fields["features"][:-1]})
  for damaged in (intact[:len(intact) // 2], b"not an npz", short.read_bytes()):
    path.write_bytes(damaged)
    again = get(np.arange(100))
    assert not again.cached
    np.testing.assert_array_equal(again.features, first.features)
    assert get(np.arange(100)).cached


def test_default_cache_dir(tmp_path, monkeypatch):
  monkeypatch.delenv(real_features.CACHE_ENV, raising=False)
  assert real_features.default_cache_dir(str(tmp_path / "w")) == str(tmp_path / ".stats_cache")
  monkeypatch.setenv(real_features.CACHE_ENV, "/somewhere")
  assert real_features.default_cache_dir(str(tmp_path / "w")) == "/somewhere"


def test_inception_weights_are_checked_before_anything_runs(tmp_path):
  config, mesh = evaluate_config.get_config("smoke"), parallel.make_mesh()
  config.inception_weights = str(tmp_path / "missing.pth")
  with pytest.raises(UserInputError, match="does not exist"):
    report.validate_config(config, mesh)
  weights = tmp_path / "pt_inception.pth"
  weights.write_bytes(b"x")
  config.inception_weights = str(weights)
  with pytest.raises(UserInputError, match="not a readable PyTorch state dict|pip install torch"):
    report.validate_config(config, mesh)


def test_fid_inception_column_when_weights_are_given(smoke_gan, smoke_classifier, data_dir,
                                                     tmp_path, monkeypatch):
  # Stand-ins: one reads the file (the importer is tested in test_inception.py), the other
  # replaces the 2048-d Fréchet distance (seconds of eigh) by ‖μ₁ − μ₂‖², enough to check that
  # each cell gets the right features.
  monkeypatch.setattr(fid_inception, "load_fid_inception", lambda path: random_variables())
  mean = lambda f: f.mu if isinstance(f, FeatureStats) else np.mean(f, axis=0, dtype=np.float64)
  monkeypatch.setattr(inception, "fid_inception", lambda gen, real: {
      "fid_inception": float(np.sum((mean(gen) - mean(real)) ** 2)), "fid_eps_used": False})
  weights, cache = tmp_path / "pt_inception.pth", tmp_path / "cache"
  weights.write_bytes(b"stand-in")
  mesh = parallel.make_mesh()
  model = pretrained.load_gan(smoke_gan, mesh)
  config = evaluate_config.get_config("smoke")
  config.num_samples = config.num_real = config.num_real_floor = config.batch_size = 4
  config.prdc.k_pr = config.prdc.k_dc = config.cs_splits = 2
  config.downstream.enabled = False
  config.inception_weights = str(weights)
  card = report.evaluate_gan(model, eval_classifier=classifiers.load_classifier(smoke_classifier),
                             data=prepare_data(model.config, data_dir, 0, None), forget=None,
                             config=config, mesh=mesh, cache_dir=str(cache))
  assert _keys(card["quality"]) == [k for k, _, _ in report.QUALITY_COLUMNS] + ["fid_inception"]
  quality = {r["model"]: r for r in card["quality"]["rows"]}
  assert list(quality) == ["Original G0/D0", "Floors"]
  info = card["details"]["fid_inception"]
  assert info["id"] == "fid_inception_v3" and info["resolution"] == 299
  features = {}
  for key in ("reference_cache_key", "real_floor_cache_key"):
    with np.load(cache / f"{info[key]}.npz") as f:
      features[key] = f["features"]
  reference = features["reference_cache_key"]
  assert reference.shape == (4, 2048) and not np.allclose(features["real_floor_cache_key"],
                                                          reference)
  distance = lambda gen: float(np.sum((mean(gen) - mean(reference)) ** 2))
  assert quality["Floors"]["fid_inception"] == pytest.approx(
      distance(features["real_floor_cache_key"]), rel=1e-6)
  samples = report._samples(model, latent_bank("eval", model.gan.latent_dim)[:4], mesh, 4)
  network = inception.load_inception(str(weights))
  assert quality["Original G0/D0"]["fid_inception"] == pytest.approx(
      distance(network.predict(samples, mesh, 4)["features"]), rel=1e-5)
  assert any("different architecture and resolution" in note and "299×299" in note
             for note in card["notes"])
  assert "| FID (Inception) ↓ |" in report.render_markdown(card)
