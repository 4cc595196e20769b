"""Tests for the Fréchet distance on classifier features (evaluation.md §2)."""

import numpy as np
import pytest
import scipy.linalg

from jaxunlearn.eval import feature_statistics, fid_classifier, frechet_distance


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
  x = rng.normal(size=(d, 2 * d))
  return x @ x.T / (2 * d) + 0.05 * np.eye(d)


def test_feature_statistics_unbiased_float64():
  features = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
  stats = feature_statistics(features)
  assert stats.n == 50 and stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64
  np.testing.assert_allclose(stats.mu, features.astype(np.float64).mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(stats.sigma, np.cov(features.astype(np.float64), rowvar=False, ddof=1))


def test_diagonal_closed_form():
  rng = np.random.default_rng(1)
  a, b = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
  mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  distance, eps_used = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert not eps_used
  np.testing.assert_allclose(distance, expected, rtol=1e-12)


def test_one_dimensional():
  distance, _ = frechet_distance(
      np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])
  )
  np.testing.assert_allclose(distance, (1.0 + 2.0) ** 2 + (2.0 - 3.0) ** 2, rtol=1e-12)


def test_identical_is_zero_and_symmetric():
  rng = np.random.default_rng(2)
  s1, s2 = _random_spd(rng, 32), _random_spd(rng, 32)
  mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
  assert frechet_distance(mu1, s1, mu1, s1)[0] == pytest.approx(0.0, abs=1e-9)
  forward, _ = frechet_distance(mu1, s1, mu2, s2)
  backward, _ = frechet_distance(mu2, s2, mu1, s1)
  assert forward > 1.0
  np.testing.assert_allclose(forward, backward, rtol=1e-10)


def test_non_commuting_matches_scipy_sqrtm():
  rng = np.random.default_rng(3)
  for _ in range(3):
    s1, s2 = _random_spd(rng, 64), _random_spd(rng, 64)
    assert np.linalg.norm(s1 @ s2 - s2 @ s1) > 0.1 * np.linalg.norm(s1 @ s2)
    mu1, mu2 = rng.normal(size=64), rng.normal(size=64)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    distance, eps_used = frechet_distance(mu1, s1, mu2, s2)
    assert not eps_used
    np.testing.assert_allclose(distance, expected, rtol=1e-6)


def test_rank_deficient_uses_fallback_and_stays_finite():
  rng = np.random.default_rng(4)
  gen, real = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 0.5
  result = fid_classifier(gen, real)
  assert result["fid_eps_used"] is True
  assert np.isfinite(result["fid_classifier"]) and result["fid_classifier"] > 0
  assert (result["n_gen"], result["n_real"], result["feature_dim"]) == (20, 20, 64)
  # Identical rank-deficient statistics: the ε-regularised distance is still 0, not negative.
  same = fid_classifier(gen, gen)
  assert same["fid_eps_used"] and same["fid_classifier"] == pytest.approx(0.0, abs=1e-9)


def test_enough_samples_do_not_use_fallback():
  features = np.random.default_rng(5).normal(size=(100, 8))
  assert fid_classifier(features, features[::-1] + 1.0)["fid_eps_used"] is False


def test_large_gaussian_samples_reproduce_closed_form():
  rng = np.random.default_rng(6)
  a, b = np.array([1.0, 2.0, 0.5, 1.5]), np.array([0.5, 1.0, 2.0, 1.5])
  mu1, mu2 = np.zeros(4), np.array([1.0, -0.5, 0.0, 0.5])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  gen = mu1 + np.sqrt(a) * rng.normal(size=(20000, 4))
  real = mu2 + np.sqrt(b) * rng.normal(size=(20000, 4))
  result = fid_classifier(gen, feature_statistics(real))
  np.testing.assert_allclose(result["fid_classifier"], expected, rtol=0.03)


def test_negative_result_and_non_finite_input_raise():
    # Σ₁ is not PSD; its negative eigenvalue is clipped inside the trace sqrt: FD = 5 − 8 < 0.
  with pytest.raises(ValueError, match="negative"):
    frechet_distance(np.zeros(2), np.diag([4.0, -3.0]), np.zeros(2), np.diag([4.0, 0.0]))
  with pytest.raises(ValueError, match="non-finite"):
    frechet_distance(np.zeros(1), np.array([[np.nan]]), np.zeros(1), np.eye(1))
