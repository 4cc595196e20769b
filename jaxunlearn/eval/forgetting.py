"""Forgotten-class share, PUL and the classifier score (evaluation.md §4, §6).

Inputs are the `eval` classifier's outputs on N generated samples (Z_eval): predicted labels
argmax_y p(y|x) of shape (N,) or softmax probabilities p(y|x) of shape (N, C).
"""

from __future__ import annotations

import numpy as np


def _labels(predicted_labels: np.ndarray) -> np.ndarray:
  labels = np.asarray(predicted_labels).ravel()
  if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError("predicted_labels must be a non-empty integer array")
  return labels


def _probs(probs: np.ndarray) -> np.ndarray:
  p = np.asarray(probs, np.float64)
  if p.ndim != 2 or p.shape[0] == 0:
    raise ValueError(f"probs must have shape (N, C); got {p.shape}")
  if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
    raise ValueError("probs rows must be probability vectors (softmax outputs, not logits)")
  return p


def class_share(predicted_labels: np.ndarray, target_class: int) -> float:
  """Forgotten-class share r_c(G) = (1/N) Σ_i 1[ŷ_i = c]."""
  return float(np.mean(_labels(predicted_labels) == target_class))


def class_histogram(predicted_labels: np.ndarray, num_classes: int) -> np.ndarray:
  """(C,) fraction of samples assigned to each class; sums to 1."""
  labels = _labels(predicted_labels)
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels outside [0, {num_classes})")
  return np.bincount(labels, minlength=num_classes) / labels.size


def confident_share(probs: np.ndarray, target_class: int, min_prob: float = 0.9) -> float:
  """Share of samples assigned to c with confidence: argmax_y p(y|x) = c and p(c|x) ≥ min_prob."""
  p = _probs(probs)
  return float(np.mean((p.argmax(axis=1) == target_class) & (p[:, target_class] >= min_prob)))


def percentage_unlearning(count_original: int, count_unlearned: int) -> float | None:
  """PUL(G) = 100·(N_c(G0) − N_c(G)) / N_c(G0) (Tiwary et al.).

  N_c counts the Z_eval samples assigned to c by G0 and G on the same bank. Counts, not latents, are
  compared, so PUL can be negative. Returns None (n/a) when N_c(G0) = 0.
  """
  if count_original < 0 or count_unlearned < 0:
    raise ValueError("counts must be non-negative")
  if count_original == 0:
    return None
  return 100.0 * (count_original - count_unlearned) / count_original


def classifier_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
  """Classifier score CS = exp(E_x KL(p(y|x) ‖ p̂(y))), p̂ the mean of p(y|x) over a split.

  The Inception-score formula on the `eval` classifier's softmax (not IS). The N samples are cut into
  `num_splits` contiguous splits; returns (mean, std) over splits. The range is [1, C].
  """
  from scipy import special  # pylint: disable=g-import-not-at-top  # here: scipy is slow to import
  p = _probs(probs)
  if not 1 <= num_splits <= p.shape[0]:
    raise ValueError(f"num_splits must be in [1, N={p.shape[0]}]; got {num_splits}")
  scores = []
  for split in np.array_split(p, num_splits):
    marginal = split.mean(axis=0)
    kl = special.rel_entr(split, marginal).sum(axis=1)  # 0·log 0 = 0
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
