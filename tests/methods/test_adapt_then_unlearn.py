"""Adapt-then-Unlearn (adapt_then_unlearn.md §11): feedback banks, PUL, stage steps, selection, and
the experiment end to end (smoke run, refused inputs; kills: tests/test_faults.py).

The EWC, repulsion and extrapolation mathematics are tested in test_{ewc,repulsion,extrapolation}.py
and the 2-D toy in test_mog_toy.py.
"""

import functools
import os
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import parallel, runs
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval.forgetting import percentage_unlearning
from jaxunlearn.methods import adapt_then_unlearn as atu
from jaxunlearn.methods import ewc, repulsion
from jaxunlearn.methods import feedback as feedback_lib
from jaxunlearn.methods import mog_toy
from jaxunlearn.train import pretrained as pretrained_lib
from conftest import run_module

DIM = 3


def _points(z: np.ndarray) -> np.ndarray:
  """Latents as 'images' (N, 1, 1, DIM)."""
  return np.asarray(z, np.float32).reshape(len(z), 1, 1, -1)


def _first_coordinate_above(threshold: float) -> feedback_lib.Feedback:
  return feedback_lib.predicate_feedback(lambda x: x[:, 0, 0, 0] > threshold,
                                         description=f"x0 > {threshold}")


# --------------------------------------------------------------------------------------------------
# PUL and the validator.
# --------------------------------------------------------------------------------------------------

def test_pul_on_synthetic_labels():
  original = np.array([8] * 40 + [1] * 60)
  count = lambda labels: int(np.sum(labels == 8))
  assert percentage_unlearning(count(original), count(np.array([8] * 4 + [3] * 96))) == 90.0
  assert percentage_unlearning(count(original), count(np.array([8] * 60 + [3] * 40))) == -50.0
  assert percentage_unlearning(count(original), count(original)) == 0.0
  assert percentage_unlearning(count(np.array([1, 2, 3])), 5) is None  # N_c(G0) = 0: n/a


def test_validator_counts_negatives_and_computes_pul_on_the_same_bank():
  # "Generator": latents shifted by params['shift']; negatives: first coordinate > 0.
  generate = lambda params, stats, z, bs: _points(z + params["shift"])
  latents = np.random.default_rng(0).standard_normal((400, DIM)).astype(np.float32)
  original = types.SimpleNamespace(g_ema_params={"shift": 0.0}, g_batch_stats={})
  positives = _points(np.abs(latents) * -1)
  negative_x0 = _first_coordinate_above(0.0)
  validator = atu.make_validator(latents, generate, negative_x0, positives, original, batch_size=100)
  count0 = int(np.sum(latents[:, 0] > 0))
  assert validator.count_pretrained == count0
  for shift in (-0.5, 0.0, 0.5):
    scores = validator({"shift": shift}, {})
    count = int(np.sum(latents[:, 0] + shift > 0))
    assert scores["count_val"] == count
    assert scores["pul_val"] == percentage_unlearning(count0, count)
    assert scores["share_val"] == count / 400
  assert validator({"shift": -0.5}, {})["pul_val"] > 0 > validator({"shift": 0.5}, {})["pul_val"]
  with pytest.raises(UserInputError, match="no negative"):
    atu.make_validator(latents, generate, _first_coordinate_above(99.0), positives, original, 100)
  # A bank judge that excludes every sample (a confidence filter) leaves the count to count_judge.
  filtered = feedback_lib.Feedback(
      lambda x: (np.full(len(x), feedback_lib.EXCLUDED, np.int8), negative_x0.judge(x)[1]),
      "filtered", counting_judge=negative_x0.judge)
  assert atu.make_validator(latents, generate, filtered, positives, original,
                            100).count_pretrained == count0


def test_selection_takes_the_earliest_highest_pul_within_the_fid_budget():
  selection = atu.Selection(fid_limit=1.0)
  taken = []
  for step, pul, fid in [(0, 0.0, 0.5), (100, 50.0, 0.9), (200, 80.0, 1.5), (300, 50.0, 0.8),
                         (400, 70.0, 1.0), (500, 70.0, 0.2)]:
    selection.consider({"step": step, "pul_val": pul, "fid_sel_val": fid},
                       functools.partial(lambda s: taken.append(s) or s, step))
  assert selection.best["step"] == 400 and selection.snapshot == 400
  assert taken == [0, 100, 400]  # snapshots are taken only for new selections


# --------------------------------------------------------------------------------------------------
# Feedback banks.
# --------------------------------------------------------------------------------------------------

def _stream(key, batches, batch_size=64):
  """The latents draw_bank draws from ``key``: batch b from fold_in(key, b)."""
  return np.concatenate([
      np.asarray(jax.random.normal(jax.random.fold_in(key, b), (batch_size, DIM)))
      for b in range(batches)])


def test_fixed_count_banks_keep_exactly_n_and_record_the_draw(tmp_path):
  key = jax.random.key(3)
  feedback = _first_coordinate_above(1.0)
  stream = _stream(key, 40)
  for kind in ("negative", "positive"):
    bank = feedback_lib.draw_bank(key, kind=kind, latent_dim=DIM, sample=_points, feedback=feedback,
                                  count=50, batch_size=64)
    assert bank.latents.shape == (50, DIM) and bank.num_drawn % 64 == 0
    np.testing.assert_array_equal(bank.latents, stream[bank.indices])
    assert np.all(np.diff(bank.indices) > 0)
    assert np.all((bank.latents[:, 0] > 1.0) == (kind == "negative"))
    drawn = stream[:bank.num_drawn]
    assert bank.num_negative == int(np.sum(drawn[:, 0] > 1.0))
    assert bank.negative_rate == bank.num_negative / bank.num_drawn
  # A Store saves the bank once, reloads it for the same settings and refuses other settings.
  store = atu.Store(str(tmp_path), setup="setup")
  saved = store.bank("positives", lambda: bank, store.signature("a"))
  loaded = store.bank("positives", lambda: pytest.fail("redrawn"), store.signature("a"))
  assert loaded.summary() == bank.summary() and loaded.signature == saved.signature != ""
  np.testing.assert_array_equal(loaded.latents, bank.latents)
  with pytest.raises(UserInputError, match="drawn with other settings"):
    store.bank("positives", lambda: bank, store.signature("b"))


def test_fixed_draws_bank_keeps_every_negative_of_a_fixed_draw():
  key = jax.random.key(4)
  bank = feedback_lib.draw_bank(key, kind="negative", latent_dim=DIM, sample=_points,
                                feedback=_first_coordinate_above(1.0), mode="fixed_draws",
                                num_draws=200, batch_size=64)
  stream = _stream(key, 4)[:200]
  assert bank.num_drawn == 200
  np.testing.assert_array_equal(bank.indices, np.flatnonzero(stream[:, 0] > 1.0))


def test_too_few_negatives_give_a_clear_error():
  message = (r"found only \d+ negative samples \(need 300\) in 1000 draws from the pre-trained "
             r"generator \(negative rate \d+\.\d+%; x0 > 3.0\); lower feedback.n_neg or raise "
             r"feedback.max_draws_factor")
  with pytest.raises(UserInputError, match=message):
    feedback_lib.draw_bank(jax.random.key(5), kind="negative", latent_dim=DIM, sample=_points,
                           feedback=_first_coordinate_above(3.0), count=300, max_draws=1000)


def test_classifier_feedback_uses_argmax_and_optional_confidence():
  probs = np.array([[0.1, 0.9, 0.0], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0.0, 0.0, 1.0]])
  stub = types.SimpleNamespace(
      meta={"id": "stub"},
      predict=lambda images, mesh, batch_size: {"probs": probs, "labels": probs.argmax(1),
                                                "features": np.eye(4, 2)})
  verdicts, features = feedback_lib.classifier_feedback(stub, [1, 2], mesh=None).judge(None)
  np.testing.assert_array_equal(verdicts, [1, 0, 1, 1])
  assert features.shape == (4, 2)
  confident = feedback_lib.classifier_feedback(stub, [1, 2], None, min_confidence=0.8)
  np.testing.assert_array_equal(confident.judge(None)[0], [1, -1, -1, 1])
  # PUL's count keeps the plain argmax rule: the filter thins the banks only.
  np.testing.assert_array_equal(confident.count_judge(None)[0], [1, 0, 1, 1])


# --------------------------------------------------------------------------------------------------
# Stage steps on a tiny GAN.
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
  mesh = parallel.make_mesh(1)
  gan = mog_toy.make_toy_gan(latent_dim=4, hidden=8, r1_gamma=0.0)
  state = jax.jit(functools.partial(gan.init, image_shape=mog_toy.POINT_SHAPE))(jax.random.key(0))
  real = mog_toy.sample_ring(jax.random.key(1), 16)
  return mesh, gan, state, real


def test_generator_fisher_matches_the_per_sample_definition(tiny):
  mesh, gan, state, _ = tiny
  z = np.asarray(jax.random.normal(jax.random.key(2), (8, 4)))
  only_last = ewc.path_filter_from_regex(r"^Dense_2/")
  fisher, mean = atu.generator_fisher(gan, state, z, mesh, only_last)
  logit = lambda theta, zi: gan.d_logits(state.d_params,
                                         gan.generate(theta, state.g_batch_stats, zi[None]))[0]
  grads = [jax.grad(logit)(state.g_params, zi) for zi in z]
  expected = jax.tree.map(lambda *g: np.mean(np.square(g), axis=0), *grads)
  chex.assert_trees_all_close(fisher["Dense_2"], expected["Dense_2"], rtol=1e-5, atol=1e-9)
  assert all(np.all(np.asarray(f) == 0) for f in jax.tree.leaves(fisher["Dense_0"]))
  leaves = jax.tree.leaves(expected["Dense_2"])
  np.testing.assert_allclose(mean, sum(l.sum() for l in leaves) / sum(l.size for l in leaves),
                             rtol=1e-5)
  with pytest.raises(UserInputError, match="selects no generator parameter"):
    atu.generator_fisher(gan, state, z, mesh, ewc.path_filter_from_regex("nothing"))


def test_stage_steps_start_with_zero_ewc_and_the_repulsion_at_d0(tiny):
  mesh, gan, pretrained, real = tiny
  stage = atu.stage_gan(gan, types.SimpleNamespace(learning_rate=1e-3, b1=0.5, b2=0.999,
                                                   r1_gamma=0.0, ema_decay=0.0))
  fisher = jax.tree.map(jnp.ones_like, pretrained.g_params)
  ewc_step = parallel.jit_step(functools.partial(
      atu.atu_step, gan=stage, regularizer=functools.partial(atu.ewc_regularizer, lam=10.0)),
      mesh, num_args=4)
  consts = atu.EWCConsts(pretrained.g_params, fisher)
  state = atu.start_state(stage, pretrained, jax.random.key(0))
  state, metrics = parallel.run_step(ewc_step, state, real, jax.random.key(1), consts)
  assert metrics["ewc"] == 0.0 and metrics["g_total"] == metrics["g_loss"]  # θ = θ_G at the G step
  state, metrics = parallel.run_step(ewc_step, state, real, jax.random.key(2), consts)
  assert metrics["ewc"] > 0 and int(state.step) == 2
  # The pre-trained state survives the donated steps.
  chex.assert_tree_all_finite(pretrained)

  adapted = [jax.tree.map(lambda p, k=k: p + 0.1 * (k + 1), pretrained.g_params) for k in range(2)]
  cached = repulsion.mean_model(adapted)
  d0 = float(repulsion.squared_distance(pretrained.g_params, cached, "paper"))
  w, alpha, eps = repulsion.relative_scaling("el2", d0, 1.0, 1.0)
  rep_consts = atu.RepulsionConsts(cached, jnp.float32(w), jnp.float32(alpha), jnp.float32(eps))
  rep_step = parallel.jit_step(functools.partial(
      atu.atu_step, gan=stage, regularizer=functools.partial(
          atu.repulsion_regularizer, kind="el2", distance_form="paper", aggregate="distance")),
      mesh, num_args=4)
  state = atu.start_state(stage, pretrained, jax.random.key(0))
  _, metrics = parallel.run_step(rep_step, state, real, jax.random.key(1), rep_consts)
  np.testing.assert_allclose(metrics["distance"], d0, rtol=1e-5)
  np.testing.assert_allclose(metrics["repulsion"], np.exp(-1.0), rtol=1e-5)  # w·e^(−alpha_rel)


# --------------------------------------------------------------------------------------------------
# The experiment end to end.
# --------------------------------------------------------------------------------------------------

SMOKE_ARGS = ("--forget=class:8", "--repulsion=el2", "--num_adapted=2",
              "--config=experiments/configs/adapt_then_unlearn.py:smoke")
RUN_STEP_CALLS = 2 * 4 + 6  # K·(Stage-1 steps) + Stage-2 steps of the smoke config


def _args(workdir, smoke_gan, classifier):
  return (f"--workdir={workdir}", f"--pretrained={smoke_gan}",
          f"--feedback_classifier={classifier}", *SMOKE_ARGS)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_gan, stub_classifier) -> str:
  workdir = str(tmp_path_factory.mktemp("atu_smoke"))
  run_module("experiments.adapt_then_unlearn", *_args(workdir, smoke_gan, stub_classifier))
  return workdir


def _metrics_without_timing(workdir):
  records = runs.MetricsLog(os.path.join(workdir, "metrics.jsonl")).read()
  return [{k: v for k, v in r.items() if k != "train_s"} for r in records]


@pytest.mark.slow
def test_smoke_run_end_to_end(smoke_run):
  results = runs.read_json(os.path.join(smoke_run, "results.json"))
  assert results["method"] == "adapt_then_unlearn" and results["forget_classes"] == [8]
  assert results["dataset"] == "mnist" and results["seed"] == 0
  assert set(results["timing"]) >= {"unlearn_s", "compile_s", "steps", "image_passes"}
  assert results["timing"]["steps"] == RUN_STEP_CALLS
  assert results["selection"].startswith("validation rule: step ")
  selection = results["selection_detail"]
  assert results["pul_val"] == selection["selected"]["pul_val"]
  assert selection["selected"]["fid_sel_val"] <= selection["fid_limit"]
  assert selection["final"]["step"] == 6 and selection["count_pretrained"] > 0
  info = results["atu"]
  assert [m["negatives"]["count"] for m in info["stage1"]] == [16, 16]
  assert info["feedback"]["positives"]["count"] == 64 and info["repulsion"]["d0"] > 0
  for name in ("config.json", "grids/original_000000.png", "grids/adapt_1_000004.png",
               "grids/unlearn_000006.png", "grids/compare_unlearned.png",
               "atu/banks/positives.npz"):
    assert os.path.exists(os.path.join(smoke_run, name)), name
  steps = [r["step"] for r in _metrics_without_timing(smoke_run)]
  assert steps == sorted(set(steps)) and steps[-1] == RUN_STEP_CALLS
  # The workdir is a train_gan workdir holding the selected generator.
  trained = pretrained_lib.load_gan(smoke_run, parallel.make_mesh())
  assert trained.step == RUN_STEP_CALLS and trained.meta["method"] == "adapt_then_unlearn"
  assert trained.meta["selected"]["step"] == selection["selected"]["step"]
  config = runs.read_json(os.path.join(smoke_run, "config.json"))["config"]
  assert config["model"] == "dcgan" and config["atu"]["repulsion"]["kind"] == "el2"
