"""Tests for precision/recall/density/coverage (evaluation.md §5)."""

import numpy as np
import pytest

from jaxunlearn.eval import precision_recall_density_coverage


def _reference(real: np.ndarray, gen: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
  """Brute-force float64 definition: full distance matrices, self excluded via the diagonal."""

  def dists(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

  def radii(x, k):
    d = dists(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]

  d_gr = dists(gen, real)  # (|G|, |R|)
  r_pr, r_dc, g_pr = radii(real, k_pr), radii(real, k_dc), radii(gen, k_pr)
  return {
      "precision": np.mean((d_gr <= r_pr[None, :]).any(axis=1)),
      "recall": np.mean((d_gr <= g_pr[:, None]).any(axis=0)),
      "density": (d_gr <= r_dc[None, :]).sum() / (k_dc * len(gen)),
      "coverage": np.mean(d_gr.min(axis=0) <= r_dc),
  }


@pytest.mark.parametrize("block_size", [2000, 128])
def test_matches_brute_force_float64(block_size):
  rng = np.random.default_rng(0)
  real = rng.normal(size=(500, 16))
  gen = 0.8 * rng.normal(size=(450, 16)) + 0.3
  got = precision_recall_density_coverage(real, gen, k_pr=3, k_dc=5, block_size=block_size)
  expected = _reference(real, gen, 3, 5)
  assert 0.1 < expected["precision"] < 0.99 and 0.1 < expected["recall"] < 0.99
  for key, value in expected.items():
    assert got[key] == pytest.approx(value, abs=1e-12), key


def test_identical_sets():
  x = np.random.default_rng(1).normal(size=(300, 8))
  got = precision_recall_density_coverage(x, x, block_size=64)
  assert got["precision"] == got["recall"] == got["coverage"] == 1.0
  # Each real ball holds its centre and its k_dc = 5 neighbours: density = (k + 1)/k exactly.
  assert got["density"] == pytest.approx(6 / 5, abs=1e-12)


def test_same_distribution_density_near_one():
  rng = np.random.default_rng(2)
  got = precision_recall_density_coverage(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)))
  assert got["density"] == pytest.approx(1.0, abs=0.1)
  assert got["coverage"] > 0.9


def test_far_apart_sets():
  rng = np.random.default_rng(3)
  real, gen = rng.normal(size=(100, 4)), rng.normal(size=(80, 4)) + 50.0
  got = precision_recall_density_coverage(real, gen)
  assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_self_exclusion_duplicates_and_inclusive_ties():
    # 1-D, k = 1. Real radii: r(0)=r(0)=0 (duplicates count), r(4)=4, r(10)=6 (self excluded).
    # Generated radii: r(-2)=r(0)=2, r(16)=r(30)=14.
  real = np.array([[0.0], [0.0], [4.0], [10.0]])
  gen = np.array([[0.0], [-2.0], [16.0], [30.0]])
  got = precision_recall_density_coverage(real, gen, k_pr=1, k_dc=1)
  # precision: 0 (dist 0 ≤ 0) and 16 (dist 6 ≤ 6) are inside; -2 and 30 are not.
  # density: g=0 lies in the balls of 0, 0 and 4; g=16 in the ball of 10 → 4 / (1·4).
  # coverage: min distances 0, 0, 4, 6 against radii 0, 0, 4, 6 (all ties, inclusive).
  assert got == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 1.0}
  assert got == _reference(real, gen, 1, 1)


def test_too_few_points_raise():
  with pytest.raises(ValueError, match="too few"):
    precision_recall_density_coverage(np.zeros((5, 2)), np.ones((5, 2)), k_dc=5)
