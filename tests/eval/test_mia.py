"""Tests for the membership-inference metrics (evaluation.md §8)."""

import itertools

import numpy as np
import pytest

from jaxunlearn.eval import (
    auc_bootstrap_ci,
    auc_null_standard_error,
    logan_balanced_accuracy,
    membership_report,
    real_label_loss,
    roc_auc,
    threshold_balanced_accuracy,
    tpr_at_fpr,
)


def test_auc_exchangeable_near_half():
  rng = np.random.default_rng(0)
  member, nonmember = rng.normal(size=500), rng.normal(size=2500)
  assert abs(roc_auc(member, nonmember) - 0.5) < 3 * auc_null_standard_error(500, 2500)


def test_auc_separable_and_reversed():
  assert roc_auc([3.0, 4.0, 5.0], [0.0, 1.0, 2.9]) == 1.0
  assert roc_auc([0.0, 1.0], [3.0, 4.0, 5.0]) == 0.0


def test_auc_ties_count_half():
    # Pairs (1,1) tie → ½; (1,0), (2,1), (2,0) → 1 each: 3.5 / 4.
  assert roc_auc([1.0, 2.0], [1.0, 0.0]) == 0.875
  rng = np.random.default_rng(1)
  member, nonmember = rng.integers(0, 4, 40).astype(float), rng.integers(0, 4, 30).astype(float)
  diff = member[:, None] - nonmember[None, :]
  assert roc_auc(member, nonmember) == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_bootstrap_ci_contains_auc_and_is_seeded():
  rng = np.random.default_rng(2)
  member, nonmember = rng.normal(0.5, 1.0, 200), rng.normal(0.0, 1.0, 1000)
  auc = roc_auc(member, nonmember)
  lo, hi = auc_bootstrap_ci(member, nonmember, seed=3)
  assert lo < auc < hi
  null_width = 3.92 * auc_null_standard_error(200, 1000)
  assert 0.5 * null_width < hi - lo < 2 * null_width
  assert auc_bootstrap_ci(member, nonmember, seed=3) == (lo, hi)
  assert auc_bootstrap_ci(member, nonmember, seed=4) != (lo, hi)


def test_null_standard_error_matches_exact_permutation_distribution():
  n, m = 3, 4
  scores = np.arange(n + m, dtype=float)
  aucs = [
      roc_auc(scores[list(idx)], np.delete(scores, list(idx)))
      for idx in itertools.combinations(range(n + m), n)
  ]
  assert auc_null_standard_error(n, m) == pytest.approx(np.std(aucs), rel=1e-12)


def test_tpr_at_fpr_hand_case():
  nonmember = np.arange(100, dtype=float)  # 0.99 quantile (linear) = 98.01
  member = np.array([99.5, 100.0, 98.5, 50.0, 120.0])
  assert tpr_at_fpr(member, nonmember, fpr=0.01) == 0.8
  assert tpr_at_fpr(member, nonmember, fpr=0.05) == 0.8  # threshold 94.05
  assert tpr_at_fpr(np.array([98.0, 98.02]), nonmember, fpr=0.01) == 0.5
  with pytest.raises(ValueError):
    tpr_at_fpr(member, nonmember[:50], fpr=0.01)


def test_logan_balanced_accuracy_hand_cases():
    # n = 2 highest of {5, 1} ∪ {3, 0, -1} are 5 and 3: TPR = 1/2, FPR = 1/3.
  assert logan_balanced_accuracy([5.0, 1.0], [3.0, 0.0, -1.0]) == pytest.approx((0.5 + 2 / 3) / 2)
  assert logan_balanced_accuracy([5.0, 4.0], [3.0, 0.0]) == 1.0
  # All tied: the 2 slots are shared in expectation, 2·(2/4) true positives → TPR = FPR = ½.
  assert logan_balanced_accuracy([1.0, 1.0], [1.0, 1.0]) == 0.5


def test_threshold_attack_and_loss():
  out = threshold_balanced_accuracy([0.1, 0.5, 0.9], [0.2, 1.0, 2.0, 3.0], tau=0.5)
  assert out == pytest.approx({"tpr": 2 / 3, "fpr": 0.25, "balanced_accuracy": (2 / 3 + 0.75) / 2})
  logits = np.array([-800.0, 0.0, 800.0])
  np.testing.assert_allclose(real_label_loss(logits), [800.0, np.log(2.0), 0.0], atol=1e-12)


def test_membership_report():
  rng = np.random.default_rng(5)
  member, nonmember = rng.normal(2.0, 1.0, 64), rng.normal(0.0, 1.0, 2500)
  control = rng.normal(0.0, 1.0, 64)
  report = membership_report(member, nonmember, control_scores=control, loss_threshold=0.5, seed=1)
  assert report["auc"] == roc_auc(member, nonmember) and report["auc"] > 0.85
  assert report["uninformative"] is False
  assert report["auc_ci"][0] < report["auc"] < report["auc_ci"][1]
  assert report["balanced_accuracy"] == logan_balanced_accuracy(member, nonmember)
  assert report["tpr_at_1pct_fpr"] == tpr_at_fpr(member, nonmember, 0.01)
  assert report["mean_score_member"] == pytest.approx(member.mean())
  assert report["control_auc_ci"][0] < 0.5 < report["control_auc_ci"][1]
  # ℓ = softplus(−D) is decreasing in D, so ranking by −ℓ gives the same AUC.
  loss_auc = roc_auc(-real_label_loss(member), -real_label_loss(nonmember))
  assert loss_auc == pytest.approx(report["auc"])
  attack = threshold_balanced_accuracy(real_label_loss(member), real_label_loss(nonmember), 0.5)
  assert report["loss_balanced_accuracy"] == attack["balanced_accuracy"]
  assert report["loss_tpr"] == np.mean(member >= -np.log(np.expm1(0.5)))

  null = membership_report(rng.normal(size=64), rng.normal(size=2500))
  assert null["uninformative"] is True and "loss_tpr" not in null and "control_auc" not in null
