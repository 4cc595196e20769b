"""Tests for jaxunlearn.methods.ewc: Fisher information F and the EWC penalty (spec §3.2, §11)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.methods import ewc

Z_DIM, IMG_DIM, NUM_LATENTS = 4, 3, 6


class _LinearG(nn.Module):
  """G_θ(z) = z W + b, images of shape (B, IMG_DIM)."""

  @nn.compact
  def __call__(self, z):
    return nn.Dense(IMG_DIM)(z)


class _MlpG(nn.Module):
  """Two-layer generator with leaves Dense_0/{kernel,bias}, Dense_1/{kernel,bias}."""

  @nn.compact
  def __call__(self, z):
    return nn.Dense(IMG_DIM)(jnp.tanh(nn.Dense(5)(z)))


def _logit_fn(generator: nn.Module, key: jax.Array):
  """(θ, logit_fn) with logit_fn(θ, z) = D(G_θ(z[None]))[0, 0] for a fixed linear D = Dense(1)."""
  g_key, d_key = jax.random.split(key)
  params = generator.init(g_key, jnp.zeros((1, Z_DIM)))["params"]
  disc = nn.Dense(1)
  d_vars = disc.init(d_key, jnp.zeros((1, IMG_DIM)))
  logit_fn = lambda theta, z: disc.apply(d_vars, generator.apply({"params": theta}, z[None]))[0, 0]
  return params, logit_fn, d_vars


def test_fisher_matches_closed_form_for_linear_model():
  # f(θ, z) = (z W + b)·v + c, so ∂f/∂W = z vᵀ and ∂f/∂b = v: F_W = mean_b(z_b²) v², F_b = v².
  params, logit_fn, d_vars = _logit_fn(_LinearG(), jax.random.key(0))
  latents = jax.random.normal(jax.random.key(1), (NUM_LATENTS, Z_DIM))
  fisher = ewc.fisher_information(logit_fn, params, latents)

  v = np.asarray(d_vars["params"]["kernel"], np.float64)[:, 0]  # (IMG_DIM,)
  z = np.asarray(latents, np.float64)
  expected_kernel = np.mean(z**2, axis=0)[:, None] * v[None, :] ** 2  # (Z_DIM, IMG_DIM)
  np.testing.assert_allclose(fisher["Dense_0"]["kernel"], expected_kernel, rtol=1e-5)
  np.testing.assert_allclose(fisher["Dense_0"]["bias"], v**2, rtol=1e-5)


def test_fisher_structure_nonnegative_and_zero_outside_selected_set():
  params, logit_fn, _ = _logit_fn(_MlpG(), jax.random.key(2))
  latents = jax.random.normal(jax.random.key(3), (NUM_LATENTS, Z_DIM))
  full = ewc.fisher_information(logit_fn, params, latents)
  seen = []

  def only_dense_1(path: str) -> bool:
    seen.append(path)
    return path.startswith("Dense_1/")

  filtered = ewc.fisher_information(logit_fn, params, latents, param_filter=only_dense_1)

  assert sorted(seen) == ["Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel"]
  for fisher in (full, filtered):
    assert jax.tree.structure(fisher) == jax.tree.structure(params)
    for f, p in zip(jax.tree.leaves(fisher), jax.tree.leaves(params)):
      assert (f.shape, f.dtype) == (p.shape, p.dtype)
    assert all(bool(jnp.all(f >= 0)) for f in jax.tree.leaves(fisher))
  for name in ("kernel", "bias"):
    assert bool(jnp.any(full["Dense_0"][name] > 0))  # so that zeroing below is the filter's doing
    np.testing.assert_array_equal(filtered["Dense_0"][name], 0.0)
    np.testing.assert_array_equal(filtered["Dense_1"][name], full["Dense_1"][name])


def test_fisher_is_jittable_with_filter():
  params, logit_fn, _ = _logit_fn(_MlpG(), jax.random.key(4))
  latents = jax.random.normal(jax.random.key(5), (NUM_LATENTS, Z_DIM))
  select = ewc.path_filter_from_regex(r"^Dense_0/kernel$")
  jitted = jax.jit(lambda p, z: ewc.fisher_information(logit_fn, p, z, param_filter=select))(params, latents)
  eager = ewc.fisher_information(logit_fn, params, latents, param_filter=select)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), jitted, eager)
  assert bool(jnp.any(jitted["Dense_0"]["kernel"] > 0))
  np.testing.assert_array_equal(jitted["Dense_0"]["bias"], 0.0)


def test_path_filter_from_regex_searches_joined_path():
  select = ewc.path_filter_from_regex(r"^Dense_1/|bias$")
  assert select("Dense_1/kernel") and select("Dense_0/bias")
  assert not select("Dense_0/kernel") and not select("Dense_10/kernel")


def _random_tree(seed: int):
  rng = np.random.default_rng(seed)
  return {"a": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
          "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}


def test_ewc_penalty_zero_at_anchor_value_and_gradient():
  lam = 3.0
  theta_g = _random_tree(0)
  theta = _random_tree(1)
  fisher = jax.tree.map(jnp.abs, _random_tree(2))

  assert float(ewc.ewc_penalty(theta_g, theta_g, fisher, 5e8)) == 0.0

  expected = 0.5 * lam * sum(
      np.sum(np.asarray(f, np.float64) * (np.asarray(t, np.float64) - np.asarray(g, np.float64)) ** 2)
      for t, g, f in zip(jax.tree.leaves(theta), jax.tree.leaves(theta_g), jax.tree.leaves(fisher)))
  np.testing.assert_allclose(float(ewc.ewc_penalty(theta, theta_g, fisher, lam)), expected, rtol=1e-5)

  grad = jax.jit(jax.grad(ewc.ewc_penalty))(theta, theta_g, fisher, lam)
  jax.tree.map(lambda gr, t, g, f: np.testing.assert_allclose(gr, lam * f * (t - g), rtol=1e-5, atol=1e-6),
               grad, theta, theta_g, fisher)
