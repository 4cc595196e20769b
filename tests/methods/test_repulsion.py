"""Tests for jaxunlearn.methods.repulsion: distances d, the mean model and repulsion terms (spec §4, §11)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.methods import repulsion

SHAPES = {"a": {"kernel": (3, 4), "bias": (4,)}, "b": (2,), "c": {"w": (5, 2, 3)}}  # n_p = 12, 4, 2, 30


def _tree(rng: np.random.Generator, scale: float = 1.0, offset=None):
  """A float32 pytree with SHAPES; offset (a pytree) is added when given."""
  tree = jax.tree.map(lambda shape: jnp.asarray(scale * rng.normal(size=shape), jnp.float32), SHAPES,
                      is_leaf=lambda x: isinstance(x, tuple))
  return tree if offset is None else jax.tree.map(jnp.add, tree, offset)


def _setup(num_models: int, seed: int = 0):
  """θ, θ_G and K adapted models θ_N^(j) = θ_G + noise, with a non-zero common shift."""
  rng = np.random.default_rng(seed)
  theta_g = _tree(rng)
  theta = _tree(rng, 0.3, theta_g)
  adapted = [_tree(rng, 0.5, theta_g) for _ in range(num_models)]
  return theta, theta_g, adapted


def _brute_force(theta, adapted):
  """(d_paper, d_code) with explicit float64 loops over models, leaves and elements."""
  leaves = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(theta)]
  num_models, num_leaves = len(adapted), len(leaves)
  paper, code = 0.0, 0.0
  for theta_n in adapted:
    for theta_p, theta_np in zip(leaves, jax.tree.leaves(theta_n)):
      theta_np = np.asarray(theta_np, np.float64).ravel()
      leaf_sum = 0.0
      for i in range(theta_p.size):
        leaf_sum += (theta_p[i] - theta_np[i]) ** 2
      paper += leaf_sum
      code += leaf_sum / theta_p.size
  return paper / num_models, code * num_models / (2 * num_leaves)


def _mean_tree(adapted):
  return jax.tree.map(lambda *xs: np.mean(np.stack([np.asarray(x, np.float64) for x in xs]), axis=0),
                      *adapted)


@pytest.mark.parametrize("num_models", [1, 2, 5])
def test_distances_match_brute_force_and_cached_matches_direct(num_models):
  theta, _, adapted = _setup(num_models)
  paper, code = _brute_force(theta, adapted)
  mm = repulsion.mean_model(adapted)
  assert mm.num_models == num_models
  assert jax.tree.structure(mm.mean_params) == jax.tree.structure(theta)

  np.testing.assert_allclose(float(repulsion.squared_distance_paper(theta, adapted)), paper, rtol=1e-5)
  np.testing.assert_allclose(float(repulsion.squared_distance_code(theta, adapted)), code, rtol=1e-5)
  np.testing.assert_allclose(float(repulsion.squared_distance_paper_cached(theta, mm)), paper, rtol=1e-5)
  np.testing.assert_allclose(float(repulsion.squared_distance_code_cached(theta, mm)), code, rtol=1e-5)
  for form, expected in (("paper", paper), ("code", code)):
    np.testing.assert_allclose(float(repulsion.squared_distance(theta, mm, form)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(repulsion.squared_distance(theta, adapted, form)), expected, rtol=1e-5)


@pytest.mark.parametrize("num_models", [2, 5])
def test_distance_gradients_match_analytic(num_models):
  theta, _, adapted = _setup(num_models, seed=1)
  mm = repulsion.mean_model(adapted)
  mean = _mean_tree(adapted)
  num_leaves = len(jax.tree.leaves(theta))
  expected_paper = jax.tree.map(lambda t, m: 2.0 * (np.asarray(t, np.float64) - m), theta, mean)
  expected_code = jax.tree.map(
      lambda t, m: num_models**2 / num_leaves * (np.asarray(t, np.float64) - m) / t.size, theta, mean)
  cases = [(repulsion.squared_distance_paper, adapted, expected_paper),
           (repulsion.squared_distance_paper_cached, mm, expected_paper),
           (repulsion.squared_distance_code, adapted, expected_code),
           (repulsion.squared_distance_code_cached, mm, expected_code)]
  for fn, models, expected in cases:
    grad = jax.grad(fn)(theta, models)
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6), grad, expected)


@pytest.mark.parametrize("kind", repulsion.REPULSION_KINDS)
def test_repulsion_term_value_and_gradient(kind):
  weight, alpha, eps = 0.7, 1.3, 1e-3
  formulas = {  # kind -> (f, df/dd) by hand
      "el2": (lambda d: weight * np.exp(-alpha * d), lambda d: -weight * alpha * np.exp(-alpha * d)),
      "nl2": (lambda d: -weight * d, lambda d: -weight),
      "il2": (lambda d: weight / (d + eps), lambda d: -weight / (d + eps) ** 2),
  }
  value_fn, grad_fn = formulas[kind]
  term = lambda d: repulsion.repulsion_term(d, kind, weight, alpha, eps)
  for d in (0.05, 0.8, 2.5):
    np.testing.assert_allclose(float(term(jnp.float32(d))), value_fn(d), rtol=1e-6)
    np.testing.assert_allclose(float(jax.grad(term)(jnp.float32(d))), grad_fn(d), rtol=1e-5)


def test_unknown_choices_raise_listing_valid_ones():
  theta, _, adapted = _setup(2)
  with pytest.raises(ValueError, match="el2, nl2, il2"):
    repulsion.repulsion_term(1.0, "l2", 1.0, 1.0, 0.0)
  with pytest.raises(ValueError, match="el2, nl2, il2"):
    repulsion.relative_scaling("exp", 1.0, 1.0, 1.0)
  with pytest.raises(ValueError, match="paper, code"):
    repulsion.repulsion_loss(theta, adapted, kind="nl2", distance_form="mse", weight=1.0)
  with pytest.raises(ValueError, match="distance, per_model"):
    repulsion.repulsion_loss(theta, adapted, kind="nl2", distance_form="paper", weight=1.0, aggregate="mean")
  with pytest.raises(ValueError, match="list of adapted models"):
    repulsion.repulsion_loss(theta, repulsion.mean_model(adapted), kind="nl2", distance_form="paper",
                             weight=1.0, aggregate="per_model")
  with pytest.raises(ValueError, match="d0"):
    repulsion.relative_scaling("el2", 0.0, 1.0, 1.0)


@pytest.mark.parametrize("form", repulsion.DISTANCE_FORMS)
def test_relative_scaling_starts_every_term_at_weight_rel(form):
  _, theta_g, adapted = _setup(3, seed=2)
  weight_rel, alpha_rel = 0.3, 2.0
  d0 = float(repulsion.squared_distance(theta_g, adapted, form))
  expected = {"el2": weight_rel * np.exp(-alpha_rel), "nl2": -weight_rel, "il2": weight_rel}
  for kind in repulsion.REPULSION_KINDS:
    weight, alpha, eps = repulsion.relative_scaling(kind, d0, weight_rel, alpha_rel)
    np.testing.assert_allclose(eps, 1e-12 * d0, rtol=1e-12)
    start = repulsion.repulsion_loss(theta_g, repulsion.mean_model(adapted), kind=kind, distance_form=form,
                                     weight=weight, alpha=alpha, eps=eps)
    np.testing.assert_allclose(float(start), expected[kind], rtol=1e-5)


@pytest.mark.parametrize("form", repulsion.DISTANCE_FORMS)
def test_aggregation_modes(form):
  num_models = 3
  theta, _, adapted = _setup(num_models, seed=3)
  loss = lambda kind, aggregate, models=adapted: float(repulsion.repulsion_loss(
      theta, models, kind=kind, distance_form=form, weight=0.5, alpha=0.1, eps=1e-6, aggregate=aggregate))

  # NL2: per_model equals distance aggregation (paper form); the code form's factor K makes it 1/K².
  scale = 1.0 if form == "paper" else 1.0 / num_models**2
  np.testing.assert_allclose(loss("nl2", "per_model"), scale * loss("nl2", "distance"), rtol=1e-5)
  # EL2: mean_j exp(−α d_j) > exp(−α mean_j d_j) (Jensen), so per_model differs from distance.
  if form == "paper":
    assert loss("el2", "per_model") > loss("el2", "distance") * (1 + 1e-4)
  # The cached mean model gives the same loss as the list for every kind.
  mm = repulsion.mean_model(adapted)
  for kind in repulsion.REPULSION_KINDS:
    np.testing.assert_allclose(loss(kind, "distance", mm), loss(kind, "distance"), rtol=1e-5)


def test_repulsion_loss_jits_with_mean_model_argument():
  theta, _, adapted = _setup(2, seed=4)
  mm = repulsion.mean_model(adapted)
  fn = lambda p, m: repulsion.repulsion_loss(p, m, kind="el2", distance_form="code", weight=1.0, alpha=0.5)
  value, grad = jax.jit(jax.value_and_grad(fn))(theta, mm)
  np.testing.assert_allclose(float(value), float(fn(theta, adapted)), rtol=1e-5)
  assert jax.tree.structure(grad) == jax.tree.structure(theta)
