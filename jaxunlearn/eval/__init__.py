"""Evaluation (see evaluation.md): pure metric functions on arrays, the project's classifiers and
the report card (``evaluate_gan``)."""

from jaxunlearn.eval.classifiers import TrainedClassifier, load_classifier
from jaxunlearn.eval.fid import FeatureStats, feature_statistics, fid_classifier, frechet_distance
from jaxunlearn.eval.forgetting import (
    class_histogram,
    class_share,
    classifier_score,
    confident_share,
    percentage_unlearning,
)
from jaxunlearn.eval.mia import (
    auc_bootstrap_ci,
    auc_null_standard_error,
    logan_balanced_accuracy,
    membership_report,
    real_label_loss,
    roc_auc,
    threshold_balanced_accuracy,
    tpr_at_fpr,
)
from jaxunlearn.eval.prdc import precision_recall_density_coverage
from jaxunlearn.eval.report import evaluate_gan, render_markdown, write_report_card

__all__ = [
    "FeatureStats",
    "TrainedClassifier",
    "auc_bootstrap_ci",
    "auc_null_standard_error",
    "class_histogram",
    "class_share",
    "classifier_score",
    "evaluate_gan",
    "confident_share",
    "feature_statistics",
    "fid_classifier",
    "load_classifier",
    "frechet_distance",
    "logan_balanced_accuracy",
    "membership_report",
    "percentage_unlearning",
    "precision_recall_density_coverage",
    "real_label_loss",
    "render_markdown",
    "roc_auc",
    "threshold_balanced_accuracy",
    "tpr_at_fpr",
    "write_report_card",
]
