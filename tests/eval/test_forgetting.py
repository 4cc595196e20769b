"""Tests for the forgotten-class share, PUL and classifier score (evaluation.md §4, §6)."""

import numpy as np
import pytest

from jaxunlearn.eval import (
    class_histogram,
    class_share,
    classifier_score,
    confident_share,
    percentage_unlearning,
)


def test_class_share_and_histogram():
  labels = np.array([0, 2, 2, 1, 2, 0, 3, 2])
  assert class_share(labels, 2) == 0.5
  assert class_share(labels, 4) == 0.0
  np.testing.assert_array_equal(class_histogram(labels, 5), [0.25, 0.125, 0.5, 0.125, 0.0])
  with pytest.raises(ValueError):
    class_histogram(labels, 3)


def test_confident_share():
  probs = np.array([[0.05, 0.95], [0.2, 0.8], [0.9, 0.1], [0.1, 0.9]])
  assert confident_share(probs, 1) == 0.5
  assert confident_share(probs, 1, min_prob=0.8) == 0.75
  assert confident_share(probs, 0) == 0.25
  with pytest.raises(ValueError, match="probability"):
    confident_share(np.array([[2.0, -1.0]]), 0)


def test_percentage_unlearning():
  assert percentage_unlearning(200, 10) == 95.0
  assert percentage_unlearning(100, 0) == 100.0
  assert percentage_unlearning(50, 60) == -20.0  # counts, not latents: can be negative
  assert percentage_unlearning(0, 5) is None  # n/a when N_c(G0) = 0


def test_classifier_score_constant_predictions_is_one():
  probs = np.tile([0.1, 0.7, 0.2], (100, 1))
  mean, std = classifier_score(probs, num_splits=10)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_classifier_score_confident_uniform_is_num_classes():
  probs = np.eye(10)[np.arange(1000) % 10]  # every split holds each class equally often
  mean, std = classifier_score(probs, num_splits=10)
  assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_classifier_score_between_bounds_and_per_split():
    # Split 1 confident over 2 classes (CS = 2), split 2 constant (CS = 1): mean 1.5, std 0.5.
  probs = np.concatenate([np.eye(4)[[0, 1, 0, 1]], np.tile([0.25] * 4, (4, 1))])
  mean, std = classifier_score(probs, num_splits=2)
  assert (mean, std) == pytest.approx((1.5, 0.5))
