"""Cascaded unlearning (cascaded_unlearning.md): fake-label loss, substitution, stop rules, and the
experiment end to end (item and class runs, bad SPEC; kills: tests/test_faults.py)."""

import functools
import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import run_module
from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn.methods import cascaded, substitution
from jaxunlearn.train import gan as gan_lib
from jaxunlearn.train import loop, pretrained

SMOKE = "--config=experiments/configs/cascaded_unlearning.py:smoke"
TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}


def _softplus(x):
  return np.log1p(np.exp(x))


# ------------------------------------------------------------------------------------------------
# Pure pieces.
# ------------------------------------------------------------------------------------------------


def test_fake_label_loss_equals_hand_computed_value():
  sub, fake, forget = np.array([0.5, -1.0]), np.array([2.0, 0.0, -0.5]), np.array([1.5, 3.0])
  # ℓ(l, y) = softplus(l) − y·l: real term ℓ(s, 1) = softplus(−s), fake term ℓ(f, 0) = softplus(f).
  expected = (np.mean(_softplus(-sub)) + np.mean(_softplus(fake))
              + 2.0 * np.mean(_softplus(forget) - 0.1 * forget))
  got = cascaded.unlearning_d_loss(jnp.asarray(sub), jnp.asarray(fake), jnp.asarray(forget),
                                   fake_label=0.1, weight=2.0)
  np.testing.assert_allclose(float(got), expected, rtol=1e-6)
  zero = cascaded.unlearning_d_loss(jnp.zeros(4), jnp.zeros(4), jnp.zeros(4), fake_label=0.0,
                                    weight=1.0)
  np.testing.assert_allclose(float(zero), 3 * np.log(2.0), rtol=1e-6)


class _TinyG(nn.Module):
  """z (N, 3) -> images (N, 2, 2, 1); ``train`` accepted like the DCGAN's (no batch statistics)."""

  @nn.compact
  def __call__(self, z, train=False):
    del train
    return jnp.tanh(nn.Dense(4)(z)).reshape(-1, 2, 2, 1)


class _TinyD(nn.Module):
  """images (N, 2, 2, 1) -> (N,) logits."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def test_fake_label_step_pushes_forget_scores_down():
  gan = gan_lib.GAN(generator=_TinyG(), discriminator=_TinyD(), g_optimizer=optax.adam(1e-2),
                    d_optimizer=optax.adam(1e-2), latent_dim=3)
  state = gan.init(jax.random.key(0), (2, 2, 1))
  rng = np.random.default_rng(0)
  batch = {"forget": jnp.asarray(rng.uniform(-1, 1, (4, 2, 2, 1)), jnp.float32),
           "substitute": jnp.asarray(rng.uniform(-1, 1, (4, 2, 2, 1)), jnp.float32)}
  step = jax.jit(functools.partial(cascaded.d_unlearn_step, gan=gan, fake_batch_size=4,
                                   fake_label=0.0))  # λ_u traced: one compilation
  after = {}
  for weight in (0.0, 1.0):
    new, metrics = step(state, batch, jax.random.key(1), weight=jnp.float32(weight))
    assert set(metrics) == {"d_unlearn_loss", "d_substitute", "d_unlearn_fake", "d_forget"}
    after[weight] = float(jnp.mean(gan.d_logits(new.d_params, batch["forget"])))
    chex.assert_trees_all_equal(new.g_params, state.g_params)  # a D step leaves G alone
  assert after[1.0] < after[0.0]


def test_unlearning_starts_g_from_the_original_ema_weights_with_fresh_adam():
  gan = gan_lib.GAN(generator=_TinyG(), discriminator=_TinyD(), g_optimizer=optax.adam(1e-2),
                    d_optimizer=optax.adam(1e-2), latent_dim=3)
  state = gan.init(jax.random.key(0), (2, 2, 1))
  state = state.replace(g_ema_params=jax.tree.map(lambda p: p + 1.0, state.g_params),
                        g_opt_state=jax.tree.map(lambda x: x + 1, state.g_opt_state))
  start = cascaded._initial_state(state, gan=gan, fresh=True)  # pylint: disable=protected-access
  chex.assert_trees_all_equal(start.g_params, state.g_ema_params)
  chex.assert_trees_all_equal(start.g_ema_params, state.g_ema_params)
  chex.assert_trees_all_equal(start.d_params, state.d_params)
  chex.assert_trees_all_equal(start.g_opt_state, gan.g_optimizer.init(state.g_ema_params))


def test_nearest_substitutes_skip_exact_duplicates():
  forget_pixels = np.arange(2 * 4, dtype=np.uint8).reshape(2, 4)
  retain_pixels = np.stack([forget_pixels[0], forget_pixels[0] + 1, forget_pixels[1] + 7,
                            forget_pixels[1]])
  forget_features = np.array([[0.0, 0.0], [10.0, 10.0]])
  retain_features = np.array([[0.0, 0.0], [0.1, 0.0], [10.5, 10.0], [10.0, 10.0]])
  # Retained rows 0 and 3 are pixel copies of the forget images (distance 0): skipped.
  got = substitution.nearest_substitutes(forget_features, retain_features, forget_pixels,
                                         retain_pixels, k=3)
  np.testing.assert_array_equal(got, [1, 2])
  with pytest.raises(ValueError, match="exact duplicates"):
    substitution.nearest_substitutes(forget_features, retain_features, forget_pixels,
                                     retain_pixels, k=1)


def test_only_item_mode_with_nearest_retained_substitutes_reads_features():
  config = ml_collections.ConfigDict({"substitution": {"source": "real_retained",
                                                       "selection": "nearest"}})
  assert cascaded.uses_nearest_substitutes(config, "item")
  assert not cascaded.uses_nearest_substitutes(config, "class")
  config.substitution.selection = "random"
  assert not cascaded.uses_nearest_substitutes(config, "item")
  config.substitution.selection, config.substitution.source = "nearest", "generated_filtered"
  assert not cascaded.uses_nearest_substitutes(config, "item")


def test_class_balanced_substitutes_come_only_from_other_retained_classes():
  labels = np.repeat(np.arange(4), [30, 5, 30, 30])  # the retain set's labels
  got = substitution.class_balanced_substitutes(jax.random.key(0), labels, (1,), 4, 20)
  assert len(np.unique(got)) == 20 and got.min() >= 0 and got.max() < len(labels)
  counts = np.bincount(labels[got], minlength=4)
  np.testing.assert_array_equal(counts, [7, 0, 7, 6])  # 20 = 7 + 7 + 6 over classes 0, 2, 3
  again = substitution.class_balanced_substitutes(jax.random.key(0), labels, (1,), 4, 20)
  np.testing.assert_array_equal(got, again)
  with pytest.raises(ValueError, match="class 0 has 30 retained images"):
    substitution.class_balanced_substitutes(jax.random.key(0), labels, (1,), 4, 100)


def test_paired_batches_align_and_wrap():
  forget, subs = substitution.paired_batches(jax.random.key(3), 5, 5, 4, 3, aligned=True)
  np.testing.assert_array_equal(forget, subs)
  assert forget.shape == (3, 4)
  np.testing.assert_array_equal(np.sort(forget.ravel()[:5]), np.arange(5))  # each x_u once, then wrap
  forget, subs = substitution.paired_batches(jax.random.key(3), 5, 7, 4, 3, aligned=False)
  assert subs.max() < 7 and not np.array_equal(forget, subs)


def test_stop_rules():
  delta = cascaded.item_delta(64, 2500, 0.02)
  np.testing.assert_allclose(delta, np.sqrt(2565 / (12 * 64 * 2500)), rtol=1e-12)  # SE_0 ≈ 0.037
  assert not cascaded.item_stop(0.56, None, delta=delta).stop
  assert cascaded.item_stop(0.53, None, delta=delta).stop
  assert cascaded.item_stop(0.60, 0.58, delta=delta).stop  # AUC_R raises the threshold
  over = cascaded.item_stop(0.45, None, delta=delta)
  assert over.stop and over.over_unlearning
  assert not cascaded.item_stop(0.47, None, delta=delta).over_unlearning
  assert cascaded.class_stop(0.009, None, delta=0.0, epsilon=0.01).stop
  assert not cascaded.class_stop(0.02, 0.01, delta=0.005, epsilon=0.5).stop
  assert cascaded.class_stop(0.014, 0.01, delta=0.005, epsilon=0.0).stop


def test_schedule_counts():
  cfg = ml_collections.ConfigDict(dict(min_unlearn_steps=10, max_unlearn_steps=-1,
                                       learning_ratio=1.0, g_steps=1, order="interleaved",
                                       max_rounds=20))
  item = cascaded.make_schedule(64, 64, cfg, 1)
  assert (item.forget_batch, item.unlearn_steps, item.learn_steps) == (64, 10, 10)
  assert item.image_passes() == 10 * (2 * 64 + 64) + 10 * 2 * 64
  klass = cascaded.make_schedule(5421, 64, cfg, 8)
  assert (klass.forget_batch, klass.unlearn_steps) == (64, 85)
  assert cascaded.make_schedule(5, 16, cfg, 2).forget_batch == 6  # rounded up to the devices


# ------------------------------------------------------------------------------------------------
# End to end through experiments.cascaded_unlearning.
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feedback(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("feedback"))
  run_module("experiments.train_classifier", f"--workdir={workdir}",
             "--config=experiments/configs/mnist_classifier.py:smoke", "--config.role=feedback",
             f"--data_dir={data_dir}")
  return workdir


def _args(gan, workdir, forget, *extra):
  return [f"--pretrained={gan}", f"--forget={forget}", f"--workdir={workdir}", SMOKE, *extra]


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _positions(workdir, round_):
  """The substitutes' positions in D recorded by round ``round_``'s checkpoint."""
  meta = ckpt_lib.Checkpointer(str(workdir), read_only=True).read_meta(round_)
  return np.asarray(meta["substitutes"]["positions"])


def _check_run(workdir, smoke_gan, data_dir, forget):
  files = set(os.listdir(workdir))
  assert {"config.json", "metrics.jsonl", "results.json", "grid_compare.png", "grid_before.png",
          "grid_after.png", "checkpoints"} <= files
  results = _results(workdir)
  assert results["method"] == "cascaded" and results["forget"] == forget
  assert results["dataset"] == "mnist" and results["seed"] == 0
  timing = results["timing"]
  assert timing["unlearn_s"] > 0 and timing["compile_s"] > 0
  assert timing["steps"] > 0 and timing["image_passes"] > 0
  assert 1 <= results["rounds"] <= 3 and len(results["stop"]["history"]) == results["rounds"]
  assert results["stop"]["met"] != results["stop"]["stop_rule_not_met"]
  mesh = parallel.make_mesh(1)
  unlearned = pretrained.load_gan(workdir, mesh)  # a train_gan-style workdir
  original = pretrained.load_gan(smoke_gan, mesh)
  pretrained.check_same_setup(original, unlearned, "the unlearned model")
  assert not np.allclose(unlearned.state.d_params["Conv_3"]["kernel"],
                         original.state.d_params["Conv_3"]["kernel"])
  # Substitutes: retained training images only, never D_u, never H.
  data = loop.prepare_data(original.config, data_dir, 0, forget)
  positions = _positions(workdir, results["rounds"])
  assert len(positions) == results["num_forget"]
  assert np.isin(positions, data.forget.retain_positions(len(data.splits.gan_train))).all()
  assert not np.isin(positions, data.forget.positions).any()
  holdout = np.concatenate([data.splits.holdout_cal, data.splits.holdout_eval])
  assert not np.isin(data.splits.gan_train[positions], holdout).any()
  return results, data, positions


def test_item_run_end_to_end(smoke_gan, feedback, data_dir, tmp_path):
  """An item run that stores D's features in a feature cache; a later request reads them and picks
  the same substitutes (the uncached default runs in test_parallel and the quickstart test)."""
  workdir, cache = tmp_path / "item", tmp_path / "features"
  run_module("experiments.cascaded_unlearning",
             *_args(smoke_gan, workdir, "items:5", f"--feedback_classifier={feedback}",
                    f"--config.substitution.feature_cache={cache}"), env=TWO_DEVICES)
  results, _, positions = _check_run(str(workdir), smoke_gan, data_dir, "items:5")
  assert results["mode"] == "item" and results["stop"]["rule"] == "d_logit_auc_cal"
  assert results["schedule"]["forget_batch"] == 6 and len(results["devices"]) == 2
  assert results["substitution"]["selection"] == "nearest"
  assert results["substitution"]["features"] == "computed, stored"
  warm = tmp_path / "warm"
  run_module("experiments.cascaded_unlearning",
             *_args(smoke_gan, warm, "items:5", f"--feedback_classifier={feedback}",
                    f"--config.substitution.feature_cache={cache}",
                    "--config.schedule.max_rounds=1"), env=TWO_DEVICES)
  assert _results(warm)["substitution"]["features"] == "cache"
  np.testing.assert_array_equal(_positions(warm, 1), positions)
  assert len(os.listdir(cache)) == 1


def test_class_run_end_to_end(smoke_gan, feedback, data_dir, tmp_path):
  workdir = tmp_path / "class"
  run_module("experiments.cascaded_unlearning",
             *_args(smoke_gan, workdir, "class:3", f"--feedback_classifier={feedback}"),
             env=TWO_DEVICES)
  results, data, positions = _check_run(str(workdir), smoke_gan, data_dir, "class:3")
  assert results["mode"] == "class" and results["forget_classes"] == [3]
  assert results["stop"]["rule"] == "class_share_feedback"
  labels = data.dataset.train_labels[data.splits.gan_train[positions]]
  counts = np.bincount(labels, minlength=10)
  assert counts[3] == 0 and np.ptp(counts[np.arange(10) != 3]) <= 1  # class-balanced
