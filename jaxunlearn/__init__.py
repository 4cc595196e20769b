"""jaxunlearn: machine unlearning for GANs in JAX/Flax.

The public API: models, the pure GAN steps, both methods' pure steps and pytree arithmetic, the
metric functions, and :func:`unlearn`. Everything else is importable from its module.
"""

from jaxunlearn.api import UnlearnResult, unlearn
from jaxunlearn.data import load_dataset, make_splits, parse_forget_spec
from jaxunlearn.eval import (class_share, classifier_score, fid_classifier, membership_report,
                             percentage_unlearning, precision_recall_density_coverage, roc_auc)
from jaxunlearn.methods import adapt_then_unlearn, cascaded, ewc, extrapolation, repulsion
from jaxunlearn.models import Discriminator, Generator
from jaxunlearn.train import GAN, GANState, d_step, g_step, make_gan, train_step
from jaxunlearn.train.pretrained import TrainedGAN, load_gan

__all__ = [
    "Discriminator", "GAN", "GANState", "Generator", "TrainedGAN", "UnlearnResult",
    "adapt_then_unlearn", "cascaded",
    "class_share", "classifier_score", "d_step", "ewc", "extrapolation", "fid_classifier",
    "g_step", "load_dataset", "load_gan", "make_gan", "make_splits", "membership_report",
    "parse_forget_spec", "percentage_unlearning", "precision_recall_density_coverage",
    "repulsion", "roc_auc", "train_step", "unlearn",
]
