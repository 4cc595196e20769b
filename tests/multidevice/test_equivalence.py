"""Run under 8 fake CPU devices (see tests/test_parallel.py): N devices == 1 device.

Every jitted step kind of the project runs here on a 1-device and an 8-device mesh with the same
global batch and keys, and must give the same state and metrics: GAN training (DCGAN, and
StyleGAN2 with its lazy regularizers), classifier training,
the cascaded D-unlearning and G steps, Adapt-then-Unlearn's Stage 1 (EWC) and Stage 2 (repulsion)
steps and its Fisher, sampling and classifier feature extraction.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn import sampling
from jaxunlearn import batching
from jaxunlearn.eval import classifier_training
from jaxunlearn.eval import classifiers
from jaxunlearn.methods import adapt_then_unlearn as atu
from jaxunlearn.methods import cascaded
from jaxunlearn.methods import repulsion
from jaxunlearn.train import gan as gan_lib

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")

TOL = dict(rtol=1e-4, atol=1e-5)
GLOBAL_BATCH = 16
IMAGE_SHAPE = (32, 32, 1)


def _gan(conv_backend: str = "xla"):
  config = ml_collections.ConfigDict(dict(
      model="dcgan", dataset="mnist", latent_dim=16, r1_gamma=1.0, ema_decay=0.9,
      optimizer=dict(learning_rate=1e-3, b1=0.5, b2=0.999),
      dcgan=dict(g_width=4, d_width=4, conv_backend=conv_backend)))
  return gan_lib.make_gan(config)


def _images(n, seed):
  return np.random.default_rng(seed).uniform(-1, 1, (n, *IMAGE_SHAPE)).astype(np.float32)


def _batches(n, seed=0):
  return [_images(GLOBAL_BATCH, seed * 100 + i) for i in range(n)]


def _run(step_fn, mesh, state, batches, key, *consts, first_step=0):
  """Runs ``step_fn(state, batch, rng, *consts)`` jitted over ``mesh`` once per batch.

  Returns the final state (on the host) and the metrics of every step.
  """
  step = parallel.jit_step(step_fn, mesh, num_args=3 + len(consts))
  state = parallel.replicate(mesh, jax.device_get(state))  # a fresh copy: the step donates it
  consts = parallel.replicate(mesh, consts)
  history = []
  for i, batch in enumerate(batches):
    state, metrics = parallel.run_step(step, state, parallel.shard_batch(mesh, batch),
                                       jax.random.fold_in(key, first_step + i), *consts)
    history.append(metrics)
  return jax.device_get(state), history


def _assert_8_equals_1(step_fn, state, batches, *consts, tol=None):
  one = _run(step_fn, parallel.make_mesh(1), state, batches, jax.random.key(1), *consts)
  eight = _run(step_fn, parallel.make_mesh(8), state, batches, jax.random.key(1), *consts)
  chex.assert_trees_all_close(eight, one, **(tol or TOL))
  return one


def test_train_steps_on_8_devices_equal_1_device():
  gan = _gan()
  state = gan.init(jax.random.key(0), IMAGE_SHAPE)
  _, history = _assert_8_equals_1(functools.partial(gan_lib.train_step, gan=gan), state,
                                  _batches(3))
  assert {"d_loss", "g_loss"} <= set(history[0])


def test_onednn_train_step_on_8_devices_equals_1_device():
  """conv_backend='onednn' (with R1: second derivatives): XLA gathers each custom call's operands
  onto every device (slow, so the backend is meant for one device), and the result must still be
  the 1-device one."""
  from jaxunlearn.ops import onednn  # pylint: disable=g-import-not-at-top
  try:
    onednn.register()
  except onednn.OnednnUnavailable as e:
    pytest.skip(str(e))
  gan = _gan("onednn")
  state = gan.init(jax.random.key(0), IMAGE_SHAPE)
  _assert_8_equals_1(functools.partial(gan_lib.train_step, gan=gan), state, _batches(2))


def test_stylegan2_train_step_with_lazy_regularizers_on_8_devices_equals_1_device():
  """Steps 0 and 1 of the smoke config: plain, then lazy R1 + path length (every 2 steps).

  Tolerance 10x the others': the 8-device reductions round differently, and Adam's first steps
  divide each gradient by its own magnitude, so an element with a near-zero gradient carries that
  rounding into its update (seen on an Intel Xeon host: 1 of 2,048 weights off by 4.3e-5).
  """
  from experiments.configs import mnist_stylegan2  # pylint: disable=g-import-not-at-top
  config = mnist_stylegan2.get_config("smoke")
  gan = gan_lib.make_gan(config)
  state = gan.init(jax.random.key(0), IMAGE_SHAPE)
  _, history = _assert_8_equals_1(gan_lib.make_train_step(config, gan), state, _batches(2),
                                  tol=dict(rtol=1e-3, atol=1e-4))
  assert history[0]["r1"] == 0 and history[1]["r1"] > 0 and history[1]["pl_penalty"] != 0


def test_classifier_train_step_on_8_devices_equals_1_device():
  """BatchNorm statistics are over the global batch on any mesh (the ResNet has BatchNorm)."""
  arch = {"model": "resnet20", "dataset": "mnist", "widths": [4, 4, 8], "num_classes": 10,
          "channels": 1}
  module = classifiers.make_classifier(arch)
  optimizer = classifiers.make_optimizer(
      {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
       "schedule": "cosine"}, total_steps=10)
  state = classifiers.create_state(module, optimizer, jax.random.key(0), IMAGE_SHAPE)
  assert jax.tree.leaves(state.batch_stats), "the check needs a model with BatchNorm"
  labels = np.random.default_rng(0).integers(0, 10, (3, GLOBAL_BATCH)).astype(np.int32)
  batches = [{"images": x, "labels": y} for x, y in zip(_batches(3), labels)]
  step_fn = functools.partial(classifier_training.train_step, module=module, optimizer=optimizer,
                              shift=2, flip=True)
  (final, _) = _assert_8_equals_1(step_fn, state, batches)
  assert int(final.step) == 3


def test_cascaded_unlearning_steps_on_8_devices_equal_1_device():
  gan = _gan()
  state = gan.init(jax.random.key(0), IMAGE_SHAPE)
  d_unlearn = functools.partial(cascaded.d_unlearn_step, gan=gan, fake_batch_size=GLOBAL_BATCH,
                                fake_label=0.1, weight=2.0)
  batches = [{"forget": f, "substitute": s} for f, s in zip(_batches(2, 1), _batches(2, 2))]
  _, history = _assert_8_equals_1(d_unlearn, state, batches)
  assert {"d_unlearn_loss", "d_forget", "r1_unlearn"} <= set(history[0])

  def generator_step(state, batch, rng):  # the G step takes no batch: feed a dummy one
    del batch
    return cascaded.generator_step(state, rng, gan=gan, batch_size=GLOBAL_BATCH)
  _assert_8_equals_1(generator_step, state, [np.zeros((GLOBAL_BATCH,), np.float32)] * 2)


def _stage():
  stage_cfg = ml_collections.ConfigDict(dict(learning_rate=1e-3, b1=0.5, b2=0.999, r1_gamma=1.0,
                                             ema_decay=0.0))
  gan = _gan()
  pretrained = gan.init(jax.random.key(0), IMAGE_SHAPE)
  stage = atu.stage_gan(gan, stage_cfg)
  return gan, pretrained, stage, atu.start_state(stage, pretrained, jax.random.key(3))


def test_adapt_then_unlearn_steps_and_fisher_on_8_devices_equal_1_device():
  gan, pretrained, stage, start = _stage()
  z = np.asarray(jax.random.normal(jax.random.key(4), (GLOBAL_BATCH, gan.latent_dim)))
  fisher1, mean1 = atu.generator_fisher(gan, pretrained, z, parallel.make_mesh(1))
  fisher8, mean8 = atu.generator_fisher(gan, pretrained, z, parallel.make_mesh(8))
  # F of a random tiny D is ~1e-11 and a square of gradients with cancellations: compare at 1e-3
  # of its own scale (1e-4 of each gradient), never with an absolute tolerance that hides it.
  fisher1, fisher8 = jax.device_get(fisher1), jax.device_get(fisher8)
  scale = max(float(np.max(f)) for f in jax.tree.leaves(fisher1))
  assert scale > 0
  chex.assert_trees_all_close(fisher8, fisher1, rtol=1e-3, atol=1e-3 * scale)
  np.testing.assert_allclose(mean8, mean1, rtol=1e-3)

  # Stage 1: L_ns + EWC, with a non-zero penalty from the second step on.
  ewc_step = functools.partial(atu.atu_step, gan=stage,
                               regularizer=functools.partial(atu.ewc_regularizer, lam=1e3))
  consts = atu.EWCConsts(anchor=pretrained.g_params, fisher=fisher1)
  _, history = _assert_8_equals_1(ewc_step, start, _batches(2), consts)
  assert history[1]["ewc"] > 0

  # Stage 2: L_ns + repulsion from two adapted models (through the mean-model identity).
  adapted = [jax.tree.map(lambda p, k=k: p + 0.01 * (k + 1), pretrained.g_params)
             for k in range(2)]
  cached = repulsion.mean_model(adapted)
  d0 = float(repulsion.squared_distance(pretrained.g_params, cached, "paper"))
  w, alpha, eps = repulsion.relative_scaling("nl2", d0, 1.0, 1.0)
  rep_consts = atu.RepulsionConsts(cached, jnp.float32(w), jnp.float32(alpha), jnp.float32(eps))
  rep_step = functools.partial(atu.atu_step, gan=stage, regularizer=functools.partial(
      atu.repulsion_regularizer, kind="nl2", distance_form="paper", aggregate="distance"))
  _, history = _assert_8_equals_1(rep_step, start, _batches(2), rep_consts)
  assert history[0]["repulsion"] != 0


def test_sampling_and_feature_extraction_on_8_devices_equal_1_device():
  gan = _gan()
  state = gan.init(jax.random.key(0), IMAGE_SHAPE)
  z = np.asarray(jax.random.normal(jax.random.key(5), (37, gan.latent_dim)))  # 37: a padded tail
  images = {n: sampling.make_generate_fn(gan.generate, parallel.make_mesh(n))(
      state.g_ema_params, state.g_batch_stats, z, GLOBAL_BATCH) for n in (1, 8)}
  np.testing.assert_allclose(images[8], images[1], **TOL)
  assert images[1].shape == (37, *IMAGE_SHAPE)

  arch = {"model": "lenet", "dataset": "mnist", "widths": [4, 8, 16], "num_classes": 10,
          "channels": 1}
  module = classifiers.make_classifier(arch)
  variables = module.init(jax.random.key(6), jnp.zeros((1, *IMAGE_SHAPE)), train=False)
  features = {n: batching.make_batched_apply(lambda v, x: module.apply(v, x),
                                             parallel.make_mesh(n))(variables, images[1], 16)
              for n in (1, 8)}
  chex.assert_trees_all_close(features[8], features[1], **TOL)
  assert features[1][1].shape == (37, 16)


def test_checkpoint_from_8_devices_restores_on_1_and_continues_identically(tmp_path):
  gan = _gan()
  step_fn = functools.partial(gan_lib.train_step, gan=gan)
  state = gan.init(jax.random.key(0), IMAGE_SHAPE)
  mesh8, mesh1 = parallel.make_mesh(8), parallel.make_mesh(1)
  batches = _batches(4)
  straight, _ = _run(step_fn, mesh8, state, batches, jax.random.key(1))
  half, _ = _run(step_fn, mesh8, state, batches[:2], jax.random.key(1))
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  ckpt.save(2, parallel.replicate(mesh8, half), {"kind": "gan"})
  ckpt.close()
  abstract = ckpt_lib.abstract_like(state, parallel.replicated(mesh1))
  step, restored, meta = ckpt_lib.Checkpointer(str(tmp_path)).restore_latest(abstract)
  assert step == 2 and meta["kind"] == "gan"
  assert len(jax.tree.leaves(restored)[0].sharding.device_set) == 1
  resumed, _ = _run(step_fn, mesh1, restored, batches[2:], jax.random.key(1), first_step=2)
  chex.assert_trees_all_close(resumed, straight, **TOL)


def test_batch_size_must_divide_the_device_count():
  with pytest.raises(ValueError, match="batch_size=12 does not divide by the 8 devices"):
    parallel.check_batch_size(12, parallel.make_mesh(8))
