"""Substitution mechanism of cascaded unlearning (cascaded_unlearning.md §3) [project reconstruction].

Every forget image x_u ∈ D_u that D is taught to reject (fake label, §4) is paired with a substitute
s ∈ S that D sees as real in the same step, so D's balance of real and fake examples is kept and the
latent region of G that covered D_u gets a valid target instead of a hole.

S is built once, before the cascade, from one source (config ``substitution.source``):

* ``real_retained`` (default): retained training images, i.e. positions in D_r = D \\ D_u (never H,
  never the test split):
  - item mode, ``selection="nearest"``: for each x_u, its nearest neighbour in D_r under the feedback
    classifier's penultimate features; retained images pixel-identical to x_u are skipped
    (:func:`nearest_substitutes`). S is index-aligned with D_u: S[i] substitutes D_u[i].
  - item mode, ``selection="random"``: |S| images uniform from D_r without replacement
    (:func:`random_substitutes`).
  - class mode: class-balanced, |S|/(C−k) images from each of the C−k classes not forgotten, uniform
    within class without replacement; quotas differ by at most one (:func:`class_balanced_substitutes`).
* ``generated_filtered``: samples of G0 that pass a filter on screened candidates:
  - item mode: the feature-space distance to every x_u exceeds τ_nn, the ``percentile``-th percentile of
    the candidates' nearest-neighbour distances among themselves (:func:`far_from_forget`);
  - class mode: the feedback classifier assigns the sample to a class that is not forgotten, with
    probability ≥ ``min_confidence`` (:func:`outside_classes`).
* ``none`` (ablation): no S; the real half of an unlearning step is a random D_r batch.

|S| = round(ratio·|D_u|) (:func:`substitute_count`). Every function is a pure function of arrays and
keys; positions returned index the array passed in (e.g. the retain set), never the dataset directly.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

SOURCES = ("real_retained", "generated_filtered", "none")
SELECTIONS = ("nearest", "random")


def substitute_count(num_forget: int, ratio: float) -> int:
  """|S| = round(ratio·|D_u|), at least 1."""
  return max(1, int(round(ratio * num_forget)))


@functools.partial(jax.jit, static_argnums=3)
def _block_knn(rows: jax.Array, pool: jax.Array, pool_sq_norms: jax.Array, k: int
               ) -> tuple[jax.Array, jax.Array]:
  """Squared distances (b, k), ascending, and pool indices (b, k) of the k nearest pool rows."""
  dots = jnp.dot(rows, pool.T, precision=jax.lax.Precision.HIGHEST)
  d2 = jnp.maximum(jnp.sum(rows * rows, axis=1)[:, None] + pool_sq_norms[None, :] - 2.0 * dots, 0.0)
  neg_d2, idx = jax.lax.top_k(-d2, k)
  return -neg_d2, idx


def nearest_neighbours(query: np.ndarray, pool: np.ndarray, k: int, block_size: int = 256
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The k nearest pool rows of every query row under Euclidean distance.

  Args:
    query: (n, d) features.
    pool: (m, d) features, m ≥ k.
    k: neighbours per query.
    block_size: query rows per device call (memory is block_size·m floats).

  Returns:
    (sq_dists (n, k) ascending, indices (n, k) into pool), float32 and int32 host arrays.
  """
  query = jnp.asarray(query, jnp.float32)
  pool = jnp.asarray(pool, jnp.float32)
  if not 1 <= k <= pool.shape[0]:
    raise ValueError(f"k={k} needs 1 <= k <= {pool.shape[0]} pool rows")
  n = query.shape[0]
  size = min(block_size, n)
  padded = jnp.pad(query, ((0, -n % size), (0, 0)))
  pool_sq = jnp.sum(pool * pool, axis=1)
  blocks = [_block_knn(padded[s:s + size], pool, pool_sq, k) for s in range(0, n, size)]
  d2 = np.concatenate([np.asarray(b[0]) for b in blocks])[:n]
  idx = np.concatenate([np.asarray(b[1]) for b in blocks])[:n]
  return d2, idx


def skip_duplicates(candidates: np.ndarray, forget_pixels: np.ndarray,
                    candidate_pixels: np.ndarray) -> np.ndarray:
  """Per row, the first candidate whose pixels differ from its forget image.

  Args:
    candidates: (n, k) pool indices, nearest first.
    forget_pixels: (n, ...) the forget images x_u (any dtype; compared exactly).
    candidate_pixels: (n, k, ...) the images of ``candidates``.

  Returns:
    (n,) the chosen entry of each row of ``candidates``.
  """
  same = np.all(candidate_pixels == forget_pixels[:, None],
                axis=tuple(range(2, candidate_pixels.ndim)))
  if np.any(same.all(axis=1)):
    rows = np.flatnonzero(same.all(axis=1)).tolist()
    raise ValueError(f"all {candidates.shape[1]} nearest candidates of forget rows {rows[:5]} are "
                     "exact duplicates; raise substitution.nearest_candidates")
  return candidates[np.arange(len(candidates)), np.argmax(~same, axis=1)]


def nearest_substitutes(forget_features: np.ndarray, retain_features: np.ndarray,
                        forget_pixels: np.ndarray, retain_pixels: np.ndarray, k: int = 8
                        ) -> np.ndarray:
  """Item mode, ``nearest``: x_u's nearest retained image that is not a pixel duplicate of x_u.

  Args:
    forget_features: (n, d) feedback-classifier penultimate features of D_u.
    retain_features: (m, d) the same features of D_r.
    forget_pixels / retain_pixels: (n, ...) / (m, ...) the images themselves (for duplicates).
    k: nearest candidates examined per x_u.

  Returns:
    (n,) int64 indices into the retain set; entry i is the substitute of D_u[i].
  """
  _, candidates = nearest_neighbours(forget_features, retain_features, min(k, len(retain_features)))
  return skip_duplicates(candidates, forget_pixels, retain_pixels[candidates]).astype(np.int64)


def host_rng(key: jax.Array) -> np.random.Generator:
  """A NumPy generator seeded by a JAX key's data: host-side draws (permutations) that need no
  compilation per array size, yet follow the ``fold_in`` key tree."""
  return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def random_substitutes(key: jax.Array, num_retain: int, count: int) -> np.ndarray:
  """Item mode, ``random``: ``count`` indices into the retain set, uniform without replacement."""
  if count > num_retain:
    raise ValueError(f"{count} substitutes requested from {num_retain} retained images")
  return host_rng(key).permutation(num_retain)[:count].astype(np.int64)


def class_balanced_substitutes(key: jax.Array, retain_labels: np.ndarray,
                               forget_classes: tuple[int, ...], num_classes: int, count: int
                               ) -> np.ndarray:
  """Class mode: ``count`` indices into the retain set, balanced over the classes not forgotten.

  The C−k other classes get quotas ⌊count/(C−k)⌋, the first ``count mod (C−k)`` of them one more;
  class c contributes its first quota images in one random order of the retain set (drawn from
  ``key``): uniform within class, without replacement.

  Args:
    key: a JAX key.
    retain_labels: (m,) labels of D_r.
    forget_classes: the k forgotten classes.
    num_classes: C.
    count: |S|.

  Returns:
    (count,) int64 indices into the retain set, grouped by class in class order.
  """
  others = [c for c in range(num_classes) if c not in forget_classes]
  base, extra = divmod(count, len(others))
  order = host_rng(key).permutation(len(retain_labels))
  chosen = []
  for i, c in enumerate(others):
    quota = base + (i < extra)
    members = order[retain_labels[order] == c]
    if quota > len(members):
      raise ValueError(f"class {c} has {len(members)} retained images; {quota} substitutes needed "
                       "(lower substitution.ratio)")
    chosen.append(members[:quota])
  return np.concatenate(chosen).astype(np.int64)


def far_from_forget(candidate_features: np.ndarray, forget_features: np.ndarray,
                    percentile: float = 5.0) -> tuple[np.ndarray, float]:
  """Item mode, ``generated_filtered``: candidates farther than τ_nn from every x_u.

  τ_nn is the ``percentile``-th percentile of the candidates' nearest-neighbour distances among
  themselves (self excluded).

  Args:
    candidate_features: (N, d) features of the G0 samples screened (N ≥ 2).
    forget_features: (n, d) features of D_u.

  Returns:
    (keep mask (N,) bool, τ_nn).
  """
  self_d2, _ = nearest_neighbours(candidate_features, candidate_features, 2)
  tau = float(np.percentile(np.sqrt(self_d2[:, 1]), percentile))  # column 0 is the point itself
  forget_d2, _ = nearest_neighbours(candidate_features, forget_features, 1)
  return np.sqrt(forget_d2[:, 0]) > tau, tau


def outside_classes(candidate_probs: np.ndarray, forget_classes: tuple[int, ...],
                    min_confidence: float = 0.0) -> np.ndarray:
  """Class mode, ``generated_filtered``: (N,) mask of candidates assigned to a class not forgotten.

  Args:
    candidate_probs: (N, C) feedback-classifier softmax of the G0 samples.
    forget_classes: the forgotten classes.
    min_confidence: the predicted class must also have probability ≥ this.
  """
  probs = np.asarray(candidate_probs)
  predicted = probs.argmax(axis=1)
  return ~np.isin(predicted, forget_classes) & (probs.max(axis=1) >= min_confidence)


def first_accepted(keep: np.ndarray, count: int) -> np.ndarray:
  """(count,) int64 indices of the first ``count`` True entries of ``keep`` (candidate order)."""
  accepted = np.flatnonzero(keep)
  if len(accepted) < count:
    raise ValueError(f"only {len(accepted)} of {len(keep)} generated candidates pass the filter, "
                     f"{count} needed; raise substitution.candidate_factor")
  return accepted[:count].astype(np.int64)


def num_candidates(count: int, factor: float) -> int:
  """How many G0 samples are screened for ``count`` generated substitutes: ⌈factor·count⌉ (≥ 2)."""
  return max(2, math.ceil(factor * count))


def paired_batches(key: jax.Array, num_forget: int, num_substitutes: int, batch_size: int,
                   num_steps: int, aligned: bool) -> tuple[np.ndarray, np.ndarray]:
  """Which substitute replaces each forget image in D's real batch, for one round of unlearning steps.

  Step i's forget batch is ``perm_u[(i·B_u + j) mod |D_u|]``, j = 0..B_u−1, with perm_u a permutation of
  D_u drawn with ``fold_in(key, 0)`` (every x_u is seen once per ⌈|D_u|/B_u⌉ steps; batches wrap). Its
  substitute batch is the same indices when S is index-aligned with D_u (``aligned``), else
  ``perm_s[(i·B_u + j) mod |S|]`` with perm_s from ``fold_in(key, 1)``.

  Returns:
    (forget indices into D_u, substitute indices into S), both (num_steps, batch_size) int64.
  """
  forget = batch_indices(jax.random.fold_in(key, 0), num_forget, batch_size, num_steps)
  if aligned:
    if num_substitutes != num_forget:
      raise ValueError(f"aligned pairing needs |S| = |D_u|, got {num_substitutes} != {num_forget}")
    return forget, forget
  return forget, batch_indices(jax.random.fold_in(key, 1), num_substitutes, batch_size, num_steps)


def batch_indices(key: jax.Array, num_items: int, batch_size: int, num_steps: int) -> np.ndarray:
  """(num_steps, batch_size) int64: batch i is ``perm[(i·B + j) mod num_items]``, perm drawn with
  ``host_rng(key)``."""
  perm = host_rng(key).permutation(num_items).astype(np.int64)
  slots = (np.arange(num_steps)[:, None] * batch_size + np.arange(batch_size)[None, :]) % num_items
  return perm[slots]
