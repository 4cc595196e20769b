"""Tests for jaxunlearn.methods.extrapolation: task vector τ and θ(s) = θ_G + s·τ (spec §5, §11)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.methods import extrapolation


def _setup(num_models: int = 3):
  """θ_G (with a −0.0 entry) and K adapted models; τ is positive where θ_G is −0.0."""
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(3, 4)).astype(np.float32)
  kernel[0, 0] = -0.0
  theta_g = {"Dense_0": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
             "scale": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}
  adapted = [jax.tree.map(lambda x: x + jnp.asarray(rng.normal(size=x.shape), jnp.float32), theta_g)
             for _ in range(num_models)]
  for theta_n in adapted:
    theta_n["Dense_0"]["kernel"] = theta_n["Dense_0"]["kernel"].at[0, 0].set(1.0)
  return theta_g, adapted


def _assert_bit_equal(tree_a, tree_b):
  assert jax.tree.structure(tree_a) == jax.tree.structure(tree_b)
  for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))


def test_task_vector_is_mean_difference():
  theta_g, adapted = _setup()
  tau = extrapolation.task_vector(theta_g, adapted)
  expected = jax.tree.map(
      lambda g, *ns: np.mean([np.asarray(n, np.float64) - np.asarray(g, np.float64) for n in ns], axis=0),
      theta_g, *adapted)
  jax.tree.map(lambda t, e: np.testing.assert_allclose(t, e, rtol=1e-6, atol=1e-6), tau, expected)


def test_s_zero_returns_theta_g_bit_exactly():
  theta_g, adapted = _setup()
  tau = extrapolation.task_vector(theta_g, adapted)
  assert float(tau["Dense_0"]["kernel"][0, 0]) > 0  # so θ_G + 0·τ would turn −0.0 into +0.0
  at_zero = extrapolation.extrapolate(theta_g, tau, 0.0)
  _assert_bit_equal(at_zero, theta_g)
  assert all(a is b for a, b in zip(jax.tree.leaves(at_zero), jax.tree.leaves(theta_g)))  # θ_G's own leaves
  _assert_bit_equal(extrapolation.extrapolate(theta_g, tau, jnp.float32(0.0)), theta_g)
  _assert_bit_equal(jax.jit(extrapolation.extrapolate)(theta_g, tau, jnp.float32(0.0)), theta_g)


def test_s_one_is_mean_adapted_model_and_negative_s_moves_away():
  theta_g, adapted = _setup()
  tau = extrapolation.task_vector(theta_g, adapted)
  mean = jax.tree.map(lambda *ns: np.mean([np.asarray(n, np.float64) for n in ns], axis=0), *adapted)
  jax.tree.map(lambda a, m: np.testing.assert_allclose(a, m, rtol=1e-6, atol=1e-6),
               extrapolation.extrapolate(theta_g, tau, 1.0), mean)
  jax.tree.map(lambda a, m: np.testing.assert_allclose(a, m, rtol=1e-6, atol=1e-6),
               jax.jit(extrapolation.extrapolate)(theta_g, tau, jnp.float32(1.0)), mean)
  jax.tree.map(lambda a, g, m: np.testing.assert_allclose(a, 1.5 * g - 0.5 * m, rtol=1e-5, atol=1e-6),
               extrapolation.extrapolate(theta_g, tau, -0.5), theta_g, mean)
