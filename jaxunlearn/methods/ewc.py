"""Elastic weight consolidation for Stage 1 ("Adapt") of Adapt-then-Unlearn (spec §3.2).

Symbols (spec notation):
  θ      generator ``params`` pytree being adapted; leaves indexed p = 1..P, leaf p has n_p elements.
  θ_G    the pre-trained generator's ``params`` (the EWC anchor, frozen).
  F      diagonal Fisher information, a pytree with θ's structure, estimated once at θ_G and frozen:
         F_i = (1/M) Σ_b (∂ D_{φ_G}(G_θ(z_b)) / ∂θ_i)²  over M latents z_b.
  S      the set of leaves under EWC (``param_filter``); F is zero outside S.
  λ      the EWC weight (official value 5e8; γ is folded into λ).

The penalty added to the generator loss is (λ/2)·Σ_leaves sum(F ⊙ (θ − θ_G)²).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = Any
"""A parameter pytree (e.g. a Flax ``params`` dict); leaves are float arrays."""

LogitFn = Callable[[Params, jax.Array], jax.Array]
"""``logit_fn(θ, z) -> scalar``: raw logit of the pre-trained D on G_θ(z[None]) for one latent z."""

PathFilter = Callable[[str], bool]
"""Predicate on a leaf's '/'-joined path, e.g. ``'Dense_0/kernel'``; True selects the leaf into S."""


def leaf_path(path: tuple[Any, ...]) -> str:
  """Joins a JAX key path with '/', e.g. ``(DictKey('Dense_0'), DictKey('kernel'))`` -> 'Dense_0/kernel'."""
  return jax.tree_util.keystr(path, simple=True, separator='/')


def path_filter_from_regex(pattern: str) -> PathFilter:
  """Returns a filter selecting the leaves whose '/'-joined path matches ``pattern`` (``re.search``).

  Use anchors for an exact match, e.g. ``r'^Dense_0/'`` selects every leaf of ``Dense_0``.
  """
  compiled = re.compile(pattern)
  return lambda path: compiled.search(path) is not None


def fisher_information(
    logit_fn: LogitFn,
    params: Params,
    latents: jax.Array,
    param_filter: PathFilter | None = None,
) -> Params:
  """Diagonal Fisher information F of the pre-trained D's logit w.r.t. the generator parameters θ.

  Per-sample gradients g_b = ∂ logit_fn(θ, z_b) / ∂θ come from ``jax.vmap(jax.grad(logit_fn),
  in_axes=(None, 0))``, so each gradient depends on one latent only (both networks must be in
  inference mode inside ``logit_fn``). Then F = tree_map(mean over b of g_b²).

  Args:
    logit_fn: ``(θ, z) -> scalar`` raw logit D_{φ_G}(G_θ(z[None])); z has shape (z_dim,). It closes
      over D's params and any batch statistics.
    params: θ at which F is estimated (θ_G in Stage 1).
    latents: z_1..z_M, shape (M, z_dim) (M = 32 officially).
    param_filter: selects the set S by leaf path; F is zero on every leaf outside S. None selects all.

  Returns:
    F, a pytree with θ's structure, dtypes and shapes; every entry is ≥ 0.
  """
  per_sample_grads = jax.vmap(jax.grad(logit_fn), in_axes=(None, 0))(params, latents)  # leaves (M, *θ_p.shape)
  fisher = jax.tree.map(lambda g: jnp.mean(jnp.square(g), axis=0), per_sample_grads)
  if param_filter is None:
    return fisher
  return jax.tree.map_with_path(
      lambda path, f: f if param_filter(leaf_path(path)) else jnp.zeros_like(f), fisher)


def ewc_penalty(params: Params, anchor_params: Params, fisher: Params, lam: float | jax.Array) -> jax.Array:
  """EWC penalty (λ/2)·Σ_leaves sum(F ⊙ (θ − θ_G)²); a scalar that is exactly 0 at θ = θ_G.

  Args:
    params: θ, the generator parameters being trained (gradients flow into these only).
    anchor_params: θ_G, same structure as θ (treated as a constant).
    fisher: F, same structure as θ (treated as a constant).
    lam: λ.

  Returns:
    A scalar; its gradient w.r.t. θ is λ F ⊙ (θ − θ_G).
  """
  anchor_params = jax.lax.stop_gradient(anchor_params)
  fisher = jax.lax.stop_gradient(fisher)
  per_leaf = jax.tree.map(
      lambda theta, theta_g, f: jnp.sum(f * jnp.square(theta - theta_g)), params, anchor_params, fisher)
  return 0.5 * lam * sum(jax.tree.leaves(per_leaf))
