"""Run under 8 fake CPU devices (see tests/test_parallel.py): N devices == 1 device."""

import functools

import chex
import jax
import ml_collections
import numpy as np
import pytest

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn.train import gan as gan_lib

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


def _gan():
  config = ml_collections.ConfigDict(dict(
      model="dcgan", dataset="mnist", latent_dim=16, r1_gamma=1.0, ema_decay=0.9,
      optimizer=dict(learning_rate=1e-3, b1=0.5, b2=0.999), dcgan=dict(g_width=4, d_width=4)))
  return gan_lib.make_gan(config)


def _run(mesh, state, batches, key, first_step=0):
  gan = _gan()
  step = parallel.jit_step(functools.partial(gan_lib.train_step, gan=gan), mesh)
  state = parallel.replicate(mesh, jax.device_get(state))  # a fresh copy: the step donates it
  history = []
  for i, batch in enumerate(batches):
    state, metrics = parallel.run_step(step, state, parallel.shard_batch(mesh, batch),
                                       jax.random.fold_in(key, first_step + i))
    history.append(metrics)
  return jax.device_get(state), history


def _batches(n, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32) for _ in range(n)]


def test_train_steps_on_8_devices_equal_1_device():
  state = _gan().init(jax.random.key(0), (32, 32, 1))
  one, hist1 = _run(parallel.make_mesh(1), state, _batches(3), jax.random.key(1))
  eight, hist8 = _run(parallel.make_mesh(8), state, _batches(3), jax.random.key(1))
  chex.assert_trees_all_close(eight, one, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(hist8, hist1, rtol=1e-4, atol=1e-5)


def test_checkpoint_from_8_devices_restores_on_1_and_continues_identically(tmp_path):
  state = _gan().init(jax.random.key(0), (32, 32, 1))
  mesh8, mesh1 = parallel.make_mesh(8), parallel.make_mesh(1)
  batches = _batches(4)
  straight, _ = _run(mesh8, state, batches, jax.random.key(1))
  half, _ = _run(mesh8, state, batches[:2], jax.random.key(1))
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  ckpt.save(2, parallel.replicate(mesh8, half), {"kind": "gan"})
  ckpt.close()
  abstract = ckpt_lib.abstract_like(state, parallel.replicated(mesh1))
  step, restored, meta = ckpt_lib.Checkpointer(str(tmp_path)).restore_latest(abstract)
  assert step == 2 and meta["kind"] == "gan"
  assert len(jax.tree.leaves(restored)[0].sharding.device_set) == 1
  resumed, _ = _run(mesh1, restored, batches[2:], jax.random.key(1), first_step=2)
  chex.assert_trees_all_close(resumed, straight, rtol=1e-4, atol=1e-5)


def test_batch_size_must_divide_the_device_count():
  with pytest.raises(ValueError, match="batch_size=12 does not divide by the 8 devices"):
    parallel.check_batch_size(12, parallel.make_mesh(8))
