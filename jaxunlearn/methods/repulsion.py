"""Repulsion regulariser for Stage 2 ("Unlearn") of Adapt-then-Unlearn (spec §4).

Symbols (spec notation):
  θ          generator ``params`` pytree being trained; leaves p = 1..P, leaf p has n_p elements.
  θ_N^(j)    the j-th negatively adapted generator's ``params``, j = 1..K (constants: no gradient).
  θ̄_N        their leafwise mean, θ̄_{N,p} = (1/K) Σ_j θ_{N,p}^(j).
  d          a squared distance between θ and the adapted models, in one of two forms (§4.2):
               (a) paper: d_paper(θ) = (1/K) Σ_j Σ_p sum((θ_p − θ_{N,p}^(j))²)
               (b) code:  d_code(θ)  = (K/(2P)) Σ_j Σ_p mean((θ_p − θ_{N,p}^(j))²)
             Form (b) reproduces the official code's ``x/2*K`` factor (K multiplied where an average
             would divide) so that official γ values transfer; form (a) never uses it.
  w, α, ε    weight, EL2 rate and IL2 offset of the repulsion term w·f(d) (§4.3):
               EL2: w·exp(−α d)     NL2: −w·d     IL2: w/(d + ε)

Mean-model identity (§4.4), per leaf:
  Σ_j ‖θ_p − θ_{N,p}^(j)‖² = K‖θ_p − θ̄_{N,p}‖² + c_p,   c_p = Σ_j ‖θ_{N,p}^(j) − θ̄_{N,p}‖²,
so with ``aggregate="distance"`` both forms need only θ̄_N and the constants c_p (``MeanModel``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.errors import UserInputError

Params = Any
"""A parameter pytree (e.g. a Flax ``params`` dict); leaves are float arrays."""

REPULSION_KINDS = ("el2", "nl2", "il2")
DISTANCE_FORMS = ("paper", "code")
AGGREGATES = ("distance", "per_model")


class MeanModel(flax.struct.PyTreeNode):
  """Cached summary of the K adapted models for the mean-model identity (spec §4.4).

  Attributes:
    mean_params: θ̄_N, same structure, shapes and dtypes as θ.
    leaf_constants: c_p = Σ_j ‖θ_{N,p}^(j) − θ̄_{N,p}‖², a pytree with θ's structure and scalar leaves.
    num_models: K (static: part of the tree structure, not a traced value).
  """
  mean_params: Params
  leaf_constants: Params
  num_models: int = flax.struct.field(pytree_node=False)


def mean_model(adapted: Sequence[Params]) -> MeanModel:
  """Builds the ``MeanModel`` of θ_N^(1..K) on the host in float64, cast back to each leaf's dtype.

  Call once, outside ``jax.jit`` (it reads the arrays back to the host).

  Args:
    adapted: [θ_N^(1), ..., θ_N^(K)], K ≥ 1 pytrees of identical structure.
  """
  num_models = _num_models(adapted)

  def leaf_mean(*thetas_n: jax.Array) -> jax.Array:
    stacked = np.stack([np.asarray(t, dtype=np.float64) for t in thetas_n])  # (K, *θ_p.shape)
    return jnp.asarray(stacked.mean(axis=0), dtype=thetas_n[0].dtype)

  def leaf_constant(*thetas_n: jax.Array) -> jax.Array:
    stacked = np.stack([np.asarray(t, dtype=np.float64) for t in thetas_n])  # (K, *θ_p.shape)
    return jnp.asarray(np.sum(np.square(stacked - stacked.mean(axis=0))), dtype=thetas_n[0].dtype)

  return MeanModel(
      mean_params=jax.tree.map(leaf_mean, *adapted),
      leaf_constants=jax.tree.map(leaf_constant, *adapted),
      num_models=num_models)


def squared_distance_paper(params: Params, adapted: Sequence[Params]) -> jax.Array:
  """d_paper(θ) = (1/K) Σ_j Σ_p sum((θ_p − θ_{N,p}^(j))²), a scalar; ∇_θ d_paper = 2(θ − θ̄_N)."""
  num_models = _num_models(adapted)
  total = 0.0
  for theta_n in jax.lax.stop_gradient(list(adapted)):
    per_leaf = jax.tree.map(lambda theta, tn: jnp.sum(jnp.square(theta - tn)), params, theta_n)
    total = total + sum(jax.tree.leaves(per_leaf))
  return total / num_models


def squared_distance_code(params: Params, adapted: Sequence[Params]) -> jax.Array:
  """d_code(θ) = (K/(2P)) Σ_j Σ_p mean((θ_p − θ_{N,p}^(j))²), a scalar (official ``x/2*K`` factor).

  ∇_{θ_p} d_code = (K²/P)·(θ_p − θ̄_{N,p})/n_p.
  """
  num_models = _num_models(adapted)
  num_leaves = len(jax.tree.leaves(params))
  total = 0.0
  for theta_n in jax.lax.stop_gradient(list(adapted)):
    per_leaf = jax.tree.map(lambda theta, tn: jnp.mean(jnp.square(theta - tn)), params, theta_n)
    total = total + sum(jax.tree.leaves(per_leaf))
  return total * num_models / (2 * num_leaves)


def squared_distance_paper_cached(params: Params, mm: MeanModel) -> jax.Array:
  """d_paper via the mean model: Σ_p [sum((θ_p − θ̄_{N,p})²) + c_p/K]; equals the direct form."""
  mm = jax.lax.stop_gradient(mm)
  per_leaf = jax.tree.map(
      lambda theta, mean, c: jnp.sum(jnp.square(theta - mean)) + c / mm.num_models,
      params, mm.mean_params, mm.leaf_constants)
  return sum(jax.tree.leaves(per_leaf))


def squared_distance_code_cached(params: Params, mm: MeanModel) -> jax.Array:
  """d_code via the mean model: (K/(2P)) Σ_p [K·mean((θ_p − θ̄_{N,p})²) + c_p/n_p]; equals the direct form."""
  mm = jax.lax.stop_gradient(mm)
  num_leaves = len(jax.tree.leaves(params))
  per_leaf = jax.tree.map(
      lambda theta, mean, c: mm.num_models * jnp.mean(jnp.square(theta - mean)) + c / theta.size,
      params, mm.mean_params, mm.leaf_constants)
  return sum(jax.tree.leaves(per_leaf)) * mm.num_models / (2 * num_leaves)


def squared_distance(params: Params, adapted: Sequence[Params] | MeanModel, form: str) -> jax.Array:
  """d(θ) in the given form ('paper' or 'code'), from the list θ_N^(1..K) or its ``MeanModel``."""
  _check_choice("distance form", form, DISTANCE_FORMS)
  if isinstance(adapted, MeanModel):
    if form == "paper":
      return squared_distance_paper_cached(params, adapted)
    return squared_distance_code_cached(params, adapted)
  if form == "paper":
    return squared_distance_paper(params, adapted)
  return squared_distance_code(params, adapted)


def repulsion_term(
    d: jax.Array | float, kind: str, weight: jax.Array | float, alpha: jax.Array | float = 1.0,
    eps: jax.Array | float = 0.0) -> jax.Array:
  """The repulsion term w·f(d): EL2 w·exp(−α d), NL2 −w·d, IL2 w/(d + ε).

  Each has its maximum where d is smallest, i.e. at the adapted models. ``alpha`` (α) is used by
  EL2 only and ``eps`` (ε) by IL2 only.
  """
  _check_choice("repulsion kind", kind, REPULSION_KINDS)
  if kind == "el2":
    return weight * jnp.exp(-alpha * d)
  if kind == "nl2":
    return -weight * jnp.asarray(d)
  return weight / (d + eps)


def relative_scaling(
    kind: str, d0: float, weight_rel: float, alpha_rel: float) -> tuple[float, float, float]:
  """(w, α, ε) such that the term starts near ``weight_rel`` at θ = θ_G (spec §4.3, §4.4).

  With d0 = d(θ_G): EL2 w = weight_rel, α = alpha_rel/d0 (start weight_rel·e^(−alpha_rel));
  NL2 w = weight_rel/d0 (start −weight_rel); IL2 w = weight_rel·d0 (start ≈ weight_rel).
  α = alpha_rel/d0 is returned for every kind (only EL2 uses it); ε = 1e-12·d0.

  Args:
    kind: 'el2', 'nl2' or 'il2'.
    d0: the distance at θ_G, measured once on the host before Stage 2; must be finite and > 0.
    weight_rel: relative weight (default 1 in the config).
    alpha_rel: relative EL2 rate (default 1 in the config).
  """
  _check_choice("repulsion kind", kind, REPULSION_KINDS)
  d0 = float(d0)
  if not (math.isfinite(d0) and d0 > 0.0):
    raise UserInputError(
        f"relative repulsion scaling needs a finite d0 = d(θ_G) > 0, got {d0}: the adapted models "
        "coincide with the pre-trained generator")
  weights = {"el2": weight_rel, "nl2": weight_rel / d0, "il2": weight_rel * d0}
  return weights[kind], alpha_rel / d0, 1e-12 * d0


def repulsion_loss(
    params: Params,
    adapted: Sequence[Params] | MeanModel,
    *,
    kind: str,
    distance_form: str,
    weight: jax.Array | float,
    alpha: jax.Array | float = 1.0,
    eps: jax.Array | float = 0.0,
    aggregate: str = "distance") -> jax.Array:
  """The repulsion part w·f(·) of the Stage-2 generator loss L_G = L_ns + w·f(d), a scalar.

  Args:
    params: θ.
    adapted: [θ_N^(1), ..., θ_N^(K)] or their ``MeanModel`` (``aggregate="distance"`` only).
    kind: 'el2', 'nl2' or 'il2'.
    distance_form: 'paper' or 'code'.
    weight, alpha, eps: w, α (EL2), ε (IL2), e.g. from ``relative_scaling``.
    aggregate: 'distance' applies f to the aggregated distance, w·f(d) (official code);
      'per_model' averages over the models, (1/K) Σ_j w·f(d_j) with d_j the single-model distance
      (the form with K = 1). The two agree for NL2 with the paper form. With the code form,
      d_j = (1/(2P)) Σ_p mean((θ_p − θ_{N,p}^(j))²) lacks the aggregate's factor K, so there
      per_model NL2 equals distance NL2 divided by K².
  """
  _check_choice("aggregate", aggregate, AGGREGATES)
  if aggregate == "distance":
    d = squared_distance(params, adapted, distance_form)
    return repulsion_term(d, kind, weight, alpha, eps)
  if isinstance(adapted, MeanModel):
    raise UserInputError(
        "aggregate='per_model' needs the list of adapted models, not a MeanModel")
  terms = [repulsion_term(squared_distance(params, [theta_n], distance_form), kind, weight, alpha, eps)
           for theta_n in adapted]
  return sum(terms) / _num_models(adapted)


def _num_models(adapted: Sequence[Params]) -> int:
  """K = len(adapted), checked to be ≥ 1."""
  if len(adapted) < 1:
    raise UserInputError("the repulsion needs at least one adapted model θ_N^(j), got none")
  return len(adapted)


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
  """Raises ``UserInputError`` (a ``ValueError``) naming the valid choices when ``value`` is not one."""
  if value not in valid:
    raise UserInputError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
