"""Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

evaluation.md §5. Pairwise squared Euclidean distances are computed on device in float32, one block of
rows at a time (never a full N_a × N_b matrix), as ‖a‖² + ‖b‖² − 2a·b clipped at 0. Every comparison is
between squared distances and squared radii, inclusive (≤), and all distances come from one jitted
function so that a radius and the distance it is compared with are the same float32 number.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _sq_dists(rows: jax.Array, row_sq_norms: jax.Array, cols: jax.Array, col_sq_norms: jax.Array):
  """(b, N) squared distances between rows (b, d) and cols (N, d)."""
  dots = jnp.dot(rows, cols.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(row_sq_norms[:, None] + col_sq_norms[None, :] - 2.0 * dots, 0.0)


@jax.jit
def _mask_self(d2: jax.Array, row_start: jax.Array) -> jax.Array:
  """Sets d2[i, row_start + i] to +inf: a point is not its own neighbour (duplicates still are)."""
  rows = row_start + jnp.arange(d2.shape[0])
  return jnp.where(jnp.arange(d2.shape[1])[None, :] == rows[:, None], jnp.inf, d2)


@functools.partial(jax.jit, static_argnums=1)
def _k_smallest(d2: jax.Array, k: int) -> jax.Array:
  """(b, k) k smallest entries of each row, ascending."""
  return -jax.lax.top_k(-d2, k)[0]


@jax.jit
def _count_within(d2: jax.Array, col_sq_radii: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per row: #cols with d2 ≤ radius² for each of the m radius vectors (b, m), and min d2 (b,)."""
  counts = jnp.sum(d2[:, None, :] <= col_sq_radii[None, :, :], axis=-1)
  return counts, jnp.min(d2, axis=1)


def _row_blocks(x: jax.Array, sq_norms: jax.Array, block_size: int):
  """Yields (start, rows, row_sq_norms); the last block is zero-padded so all share one shape."""
  n = x.shape[0]
  size = min(block_size, n)
  pad = -n % size
  x, sq_norms = jnp.pad(x, ((0, pad), (0, 0))), jnp.pad(sq_norms, (0, pad))
  for start in range(0, n, size):
    yield start, x[start : start + size], sq_norms[start : start + size]


def _knn_sq_radii(x: jax.Array, sq_norms: jax.Array, k: int, block_size: int) -> np.ndarray:
  """(N, k) squared distances to the 1st..k-th nearest neighbour within x, self excluded."""
  blocks = [
      _k_smallest(_mask_self(_sq_dists(rows, rn, x, sq_norms), start), k)
      for start, rows, rn in _row_blocks(x, sq_norms, block_size)
  ]
  return np.concatenate([np.asarray(b) for b in blocks])[: x.shape[0]]


def _cross(
    a: jax.Array,
    a_sq: jax.Array,
    b: jax.Array,
    b_sq: jax.Array,
    b_sq_radii: np.ndarray,
    block_size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Per point of a: #points of b within each radius vector (N_a, m), and min squared distance."""
  radii = jnp.asarray(b_sq_radii)
  counts, mins = [], []
  for _, rows, rn in _row_blocks(a, a_sq, block_size):
    c, m = _count_within(_sq_dists(rows, rn, b, b_sq), radii)
    counts.append(np.asarray(c))
    mins.append(np.asarray(m))
  n = a.shape[0]
  return np.concatenate(counts)[:n], np.concatenate(mins)[:n]


def precision_recall_density_coverage(
    real_features: np.ndarray,
    gen_features: np.ndarray,
    *,
    k_pr: int = 3,
    k_dc: int = 5,
    block_size: int = 2000,
) -> dict[str, float]:
  """Precision, recall (k = k_pr), density and coverage (k = k_dc) of G against R.

  With r_k(x) the distance from x to its k-th nearest neighbour in its own set (x excluded):
    precision = (1/|G|) Σ_g 1[∃ r ∈ R: ‖g − r‖ ≤ r_{k_pr}(r)]
    recall    = (1/|R|) Σ_r 1[∃ g ∈ G: ‖r − g‖ ≤ r_{k_pr}(g)]
    density   = (1/(k_dc·|G|)) Σ_g Σ_r 1[‖g − r‖ ≤ r_{k_dc}(r)]
    coverage  = (1/|R|) Σ_r 1[min_g ‖r − g‖ ≤ r_{k_dc}(r)]

  Args:
    real_features: (N_R, d) features of the real set R.
    gen_features: (N_G, d) features of the generated set G.
    k_pr, k_dc: neighbour ranks; needs N_R > max(k_pr, k_dc) and N_G > k_pr.
    block_size: rows per distance block (peak memory ≈ block_size × max(N_R, N_G) floats).

  Returns:
    {"precision", "recall", "density", "coverage"} as Python floats.
  """
  real64 = np.asarray(real_features, np.float64)
  gen64 = np.asarray(gen_features, np.float64)
  if real64.ndim != 2 or gen64.ndim != 2 or real64.shape[1] != gen64.shape[1]:
    raise ValueError(f"need (N, d) feature arrays of equal d; got {real64.shape}, {gen64.shape}")
  if real64.shape[0] <= max(k_pr, k_dc) or gen64.shape[0] <= k_pr:
    raise ValueError(
        f"too few points for k_pr={k_pr}, k_dc={k_dc}: N_R={real64.shape[0]}, N_G={gen64.shape[0]}"
    )
  if block_size < 1:
    raise ValueError(f"block_size must be positive; got {block_size}")
# Distances are translation invariant; centring reduces cancellation in ‖a‖² + ‖b‖² − 2a·b.
  centre = real64.mean(axis=0)
  real = jnp.asarray(real64 - centre, jnp.float32)
  gen = jnp.asarray(gen64 - centre, jnp.float32)
  real_sq = jnp.sum(real * real, axis=1)
  gen_sq = jnp.sum(gen * gen, axis=1)

  real_radii = _knn_sq_radii(real, real_sq, max(k_pr, k_dc), block_size)
  gen_radii = _knn_sq_radii(gen, gen_sq, k_pr, block_size)
  real_pr, real_dc = real_radii[:, k_pr - 1], real_radii[:, k_dc - 1]

  gen_counts, _ = _cross(gen, gen_sq, real, real_sq, np.stack([real_pr, real_dc]), block_size)
  gen_pr = gen_radii[None, :, k_pr - 1]
  real_counts, real_min = _cross(real, real_sq, gen, gen_sq, gen_pr, block_size)
  return {
      "precision": float(np.mean(gen_counts[:, 0] > 0)),
      "recall": float(np.mean(real_counts[:, 0] > 0)),
      "density": float(np.sum(gen_counts[:, 1]) / (k_dc * gen64.shape[0])),
      "coverage": float(np.mean(real_min <= real_dc)),
  }
