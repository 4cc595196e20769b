"""Membership-inference metrics for item unlearning (evaluation.md §8).

Scores follow one convention: higher means "member" (e.g. the discriminator logit D(x) of MIA-D). Members
are the forget set D_u (n images), non-members the held-out set H_eval (m images).
"""

from __future__ import annotations

import math

import numpy as np


def _scores(x: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(x, np.float64).ravel()
  if x.size == 0 or not np.all(np.isfinite(x)):
    raise ValueError(f"{name} must be a non-empty array of finite scores")
  return x


def _auc_from_ranks(member: np.ndarray, nonmember: np.ndarray) -> np.ndarray:
  """Mann–Whitney AUC along the last axis; mid-ranks make ties count 1/2."""
  from scipy import stats  # pylint: disable=g-import-not-at-top  # here: ~1 s at import
  n, m = member.shape[-1], nonmember.shape[-1]
  ranks = stats.rankdata(np.concatenate([member, nonmember], axis=-1), axis=-1)
  u = ranks[..., :n].sum(axis=-1) - n * (n + 1) / 2
  return u / (n * m)


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
  """AUC = P(s_member > s_nonmember) + ½·P(tie), the Mann–Whitney U statistic divided by n·m."""
  member = _scores(member_scores, "member_scores")
  nonmember = _scores(nonmember_scores, "nonmember_scores")
  return float(_auc_from_ranks(member, nonmember))


def auc_bootstrap_ci(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    *,
    num_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
  """Percentile bootstrap CI of the AUC.

  Members and non-members are resampled separately with replacement (n and m draws per resample),
  using `np.random.default_rng(seed)`; all resamples are ranked at once.

  Returns:
    (lo, hi), the (1 − level)/2 and (1 + level)/2 quantiles of the resampled AUCs.
  """
  member = _scores(member_scores, "member_scores")
  nonmember = _scores(nonmember_scores, "nonmember_scores")
  if not 0.0 < level < 1.0 or num_resamples < 1:
    raise ValueError(f"need 0 < level < 1 and num_resamples >= 1; got {level}, {num_resamples}")
  rng = np.random.default_rng(seed)
  m_idx = rng.integers(0, member.size, size=(num_resamples, member.size))
  h_idx = rng.integers(0, nonmember.size, size=(num_resamples, nonmember.size))
  aucs = _auc_from_ranks(member[m_idx], nonmember[h_idx])
  lo, hi = np.quantile(aucs, [(1.0 - level) / 2, (1.0 + level) / 2])
  return float(lo), float(hi)


def auc_null_standard_error(n: int, m: int) -> float:
  """Standard error of the AUC when scores are exchangeable (no ties): √((n + m + 1) / (12·n·m))."""
  return math.sqrt((n + m + 1) / (12 * n * m))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float = 0.01) -> float:
  """TPR at a fixed FPR.

  Convention: the threshold t is the (1 − fpr) quantile of the non-member scores (NumPy's default
  linear interpolation), and an image is called a member iff its score is strictly greater than t, so
  the empirical FPR is at most `fpr`. Needs m·fpr ≥ 1 (m ≥ 100 at 1 %; the protocol uses 2,500).
  """
  member = _scores(member_scores, "member_scores")
  nonmember = _scores(nonmember_scores, "nonmember_scores")
  if not 0.0 < fpr < 1.0 or nonmember.size * fpr < 1.0:
    raise ValueError(f"fpr={fpr} is not resolvable with {nonmember.size} non-members")
  threshold = np.quantile(nonmember, 1.0 - fpr)
  return float(np.mean(member > threshold))


def logan_balanced_accuracy(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
  """Balanced accuracy (TPR + TNR)/2 of the LOGAN rule (Hayes et al.).

  The n highest-scored images of D_u ∪ H_eval are called members (n = |D_u|). A tie group straddling
  the cut fills the remaining slots in expectation, i.e. as if ties were broken at random.
  """
  member = _scores(member_scores, "member_scores")
  nonmember = _scores(nonmember_scores, "nonmember_scores")
  n, m = member.size, nonmember.size
  cut = np.sort(np.concatenate([member, nonmember]))[::-1][n - 1]
  slots = n - np.sum(member > cut) - np.sum(nonmember > cut)
  tied_members, tied_nonmembers = np.sum(member == cut), np.sum(nonmember == cut)
  true_pos = np.sum(member > cut) + slots * tied_members / (tied_members + tied_nonmembers)
  false_pos = n - true_pos
  return float((true_pos / n + 1.0 - false_pos / m) / 2)


def threshold_balanced_accuracy(
    member_losses: np.ndarray, nonmember_losses: np.ndarray, tau: float
) -> dict[str, float]:
  """Loss-threshold attack (Yeom et al.): an image is called a member iff its loss ℓ(x) ≤ τ.

  Returns:
    {"tpr", "fpr", "balanced_accuracy"} with balanced accuracy (TPR + 1 − FPR)/2.
  """
  member = _scores(member_losses, "member_losses")
  nonmember = _scores(nonmember_losses, "nonmember_losses")
  tpr, fpr = float(np.mean(member <= tau)), float(np.mean(nonmember <= tau))
  return {"tpr": tpr, "fpr": fpr, "balanced_accuracy": (tpr + 1.0 - fpr) / 2}


def real_label_loss(logits: np.ndarray) -> np.ndarray:
  """Discriminator loss on the real label, ℓ(x) = softplus(−D(x)), computed stably; a decreasing map."""
  return np.logaddexp(0.0, -np.asarray(logits, np.float64))


def membership_report(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    *,
    control_scores: np.ndarray | None = None,
    loss_threshold: float | None = None,
    seed: int = 0,
) -> dict:
  """All MIA-D numbers for one model, plus MIA-L's operating point when τ is given.

  Args:
    member_scores: (n,) discriminator logits D(x) on the forget set D_u.
    nonmember_scores: (m,) logits on H_eval.
    control_scores: optional logits on n retained training images (still members); their AUC against
      H_eval shows whether the attack has power at all.
    loss_threshold: τ of the loss-threshold attack on ℓ = softplus(−D(x)), fixed beforehand (mean loss on
      retained training images). ℓ is monotone in D(x), so MIA-L's AUC equals `auc`.
    seed: bootstrap seed.

  Returns:
    auc, auc_ci [lo, hi], auc_null_se, uninformative (0.5 inside auc_ci), balanced_accuracy (LOGAN),
    tpr_at_1pct_fpr (None when m < 100), mean_score_member, mean_score_nonmember, n_member,
    n_nonmember; with control_scores also mean_score_control, control_auc, control_auc_ci; with
    loss_threshold also loss_threshold, loss_tpr, loss_fpr, loss_balanced_accuracy.
  """
  member = _scores(member_scores, "member_scores")
  nonmember = _scores(nonmember_scores, "nonmember_scores")
  lo, hi = auc_bootstrap_ci(member, nonmember, seed=seed)
  report: dict = {
      "auc": roc_auc(member, nonmember),
      "auc_ci": [lo, hi],
      "auc_null_se": auc_null_standard_error(member.size, nonmember.size),
      "uninformative": bool(lo <= 0.5 <= hi),
      "balanced_accuracy": logan_balanced_accuracy(member, nonmember),
      "tpr_at_1pct_fpr": tpr_at_fpr(member, nonmember, 0.01) if nonmember.size >= 100 else None,
      "mean_score_member": float(member.mean()),
      "mean_score_nonmember": float(nonmember.mean()),
      "n_member": int(member.size),
      "n_nonmember": int(nonmember.size),
  }
  if control_scores is not None:
    control = _scores(control_scores, "control_scores")
    report["mean_score_control"] = float(control.mean())
    report["control_auc"] = roc_auc(control, nonmember)
    report["control_auc_ci"] = list(auc_bootstrap_ci(control, nonmember, seed=seed))
  if loss_threshold is not None:
    attack = threshold_balanced_accuracy(
        real_label_loss(member), real_label_loss(nonmember), loss_threshold
    )
    report["loss_threshold"] = float(loss_threshold)
    report.update({f"loss_{key}": value for key, value in attack.items()})
  return report
