"""Fréchet distance on classifier features ("FID (classifier features)", FID-clf).

Host-side float64 NumPy, following evaluation.md §2. This is *not* Inception FID: the features are the
penultimate layer of the project's `eval` classifier, so numbers are never comparable with Inception FID.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_NEG_EIG_RTOL = 1e-6  # min(ν) < −1e-6·max(ν) triggers the ε·I fallback
_NEG_RESULT_ATOL = 1e-6  # results in [−1e-6, 0) are clipped to 0


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """Gaussian statistics of N feature vectors (float64).

  Attributes:
    mu: (d,) mean μ = (1/N) Σ f_i.
    sigma: (d, d) unbiased covariance Σ = (1/(N−1)) Σ (f_i − μ)(f_i − μ)ᵀ.
    n: number of samples N.
  """

  mu: np.ndarray
  sigma: np.ndarray
  n: int


def feature_statistics(features: np.ndarray) -> FeatureStats:
  """Mean and unbiased covariance of features of shape (N, d), N ≥ 2, computed in float64."""
  f = np.asarray(features, dtype=np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"features must have shape (N >= 2, d); got {f.shape}")
  if not np.all(np.isfinite(f)):
    raise ValueError("features contain non-finite values")
  mu = f.mean(axis=0)
  centred = f - mu
  sigma = centred.T @ centred / (f.shape[0] - 1)
  return FeatureStats(mu=mu, sigma=sigma, n=int(f.shape[0]))


def _sqrt_product_eigenvalues(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
  """Eigenvalues ν of M = Σ₁^{1/2} Σ₂ Σ₁^{1/2} (unclipped); same spectrum as Σ₁Σ₂."""
  lam, u = np.linalg.eigh(sigma1)
  a = (u * np.sqrt(np.clip(lam, 0.0, None))) @ u.T
  m = a @ sigma2 @ a
  return np.linalg.eigvalsh(0.5 * (m + m.T))


def _needs_fallback(nu: np.ndarray) -> bool:
  return not np.all(np.isfinite(nu)) or nu.min() < -_NEG_EIG_RTOL * nu.max()


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    eps: float = 1e-6,
    n1: int | None = None,
    n2: int | None = None,
) -> tuple[float, bool]:
  """Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).

  FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}), the trace square root taken as
  Σ_i √ν_i over the eigenvalues ν of the symmetric PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2} (no Schur sqrtm).

  Args:
    mu1, mu2: (d,) means.
    sigma1, sigma2: (d, d) covariances.
    eps: ε of the fallback, which recomputes everything with Σ₁ + εI and Σ₂ + εI. It is used when
      min(n1, n2) ≤ d, when an intermediate is non-finite, or when min(ν) < −1e-6·max(ν).
    n1, n2: sample counts N behind the statistics, if known (enables the N ≤ d trigger).

  Returns:
    (FD, eps_used). Results in [−1e-6, 0) are clipped to 0.

  Raises:
    ValueError: on shape mismatch, non-finite inputs or result, or FD < −1e-6 (e.g. a covariance that
      is not PSD).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(
        f"shape mismatch: mu {mu1.shape}, {mu2.shape}; sigma {sigma1.shape}, {sigma2.shape}"
    )
  if not all(np.all(np.isfinite(x)) for x in (mu1, mu2, sigma1, sigma2)):
    raise ValueError("statistics contain non-finite values")

  eps_used = any(n is not None and n <= d for n in (n1, n2))
  if eps_used:
    sigma1, sigma2 = sigma1 + eps * np.eye(d), sigma2 + eps * np.eye(d)
  nu = _sqrt_product_eigenvalues(sigma1, sigma2)
  if _needs_fallback(nu) and not eps_used:
    eps_used = True
    sigma1, sigma2 = sigma1 + eps * np.eye(d), sigma2 + eps * np.eye(d)
    nu = _sqrt_product_eigenvalues(sigma1, sigma2)

  diff = mu1 - mu2
  trace_sqrt = np.sum(np.sqrt(np.clip(nu, 0.0, None)))
  distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
  if not np.isfinite(distance):
    raise ValueError("Fréchet distance is not finite")
  if distance < -_NEG_RESULT_ATOL:
    raise ValueError(f"Fréchet distance {distance:.3g} is negative beyond tolerance")
  return max(distance, 0.0), eps_used


def fid_classifier(
    gen_features: np.ndarray | FeatureStats, real_features: np.ndarray | FeatureStats
) -> dict:
  """FID-clf: Fréchet distance between generated and real classifier features.

  Args:
    gen_features: (N_gen, d) penultimate features of generated samples, or their FeatureStats.
    real_features: (N_real, d) features of the real reference, or its (cached) FeatureStats.

  Returns:
    {"fid_classifier": FD, "fid_eps_used": bool, "n_gen": N_gen, "n_real": N_real, "feature_dim": d}.
  """
  gen, real = (
      f if isinstance(f, FeatureStats) else feature_statistics(f) for f in (gen_features, real_features)
  )
  distance, eps_used = frechet_distance(
      gen.mu, gen.sigma, real.mu, real.sigma, n1=gen.n, n2=real.n
  )
  return {
      "fid_classifier": distance,
      "fid_eps_used": eps_used,
      "n_gen": gen.n,
      "n_real": real.n,
      "feature_dim": int(gen.mu.shape[0]),
  }
