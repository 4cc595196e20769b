"""Downstream task (evaluation.md §7): a classifier trained on generated samples only.

N_ds samples of a fixed latent bank are labelled by the ``eval`` classifier's argmax; a fresh
classifier of the same architecture is trained on them from a new seed with a fixed budget of
epochs and tested on the real test split: overall accuracy (item unlearning), accuracy on the
retained classes (class unlearning) and per-class accuracy (class c is expected to collapse
after class unlearning). The same recipe on N_ds real retained images gives the upper bound.
This is the unconditional analogue of the Classification Accuracy Score (Ravuri & Vinyals 2019).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from jax.sharding import Mesh

from jaxunlearn import latents as latents_lib
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifier_training
from jaxunlearn.eval.classifiers import TrainedClassifier

MAX_SAMPLES = 20_000


def downstream_latents(latent_dim: int, num_samples: int) -> np.ndarray:
  """The fixed downstream bank: Z_eval followed by Z_ref, first ``num_samples`` (≤ 20,000) rows."""
  if not 1 <= num_samples <= MAX_SAMPLES:
    raise UserInputError(f"downstream.num_samples={num_samples}; valid: 1..{MAX_SAMPLES}")
  bank = np.concatenate([latents_lib.latent_bank("eval", latent_dim),
                         latents_lib.latent_bank("ref", latent_dim)])
  return bank[:num_samples]


def downstream_accuracy(module, train_images: np.ndarray, train_labels: np.ndarray,
                        test_images: np.ndarray, test_labels: np.ndarray, *, config, mesh: Mesh,
                        forgotten_classes: Sequence[int] = ()) -> dict[str, Any]:
  """Trains a fresh ``module`` on (train_images, train_labels) and tests it on the real test split.

  Args:
    module: the classifier architecture (that of the eval classifier), trained from
      ``config.seed``.
    train_images: (N_ds, 32, 32, C) in [-1, 1]; train_labels (N_ds,) int.
    test_images, test_labels: the real test split.
    config: ``num_epochs``, ``batch_size``, ``seed``, ``optimizer`` (classifiers.make_optimizer),
      ``shift``, ``flip``, ``eval_batch_size``.
    forgotten_classes: class unlearning: the headline accuracy is over the other classes.

  Returns:
    accuracy (the headline: overall, or retained-class accuracy in class mode), overall_accuracy,
    retained_accuracy (None without forgotten classes), per_class_accuracy, n_train, epochs.
  """
  variables = classifier_training.fit(
      module, config.optimizer, train_images, train_labels, num_epochs=config.num_epochs,
      batch_size=config.batch_size, seed=config.seed, mesh=mesh, shift=config.shift,
      flip=config.flip)
  predicted = TrainedClassifier(module, variables, {}).predict(test_images, mesh,
                                                               config.eval_batch_size)["labels"]
  report = classifier_training.accuracy_from_predictions(predicted, test_labels, module.num_classes)
  retained = None
  if len(forgotten_classes):
    keep = ~np.isin(test_labels, forgotten_classes)
    retained = float(np.mean(predicted[keep] == test_labels[keep]))
  return {"accuracy": report["accuracy"] if retained is None else retained,
          "overall_accuracy": report["accuracy"], "retained_accuracy": retained,
          "per_class_accuracy": report["per_class_accuracy"], "n_train": int(len(train_images)),
          "n_test": report["n"], "epochs": config.num_epochs}
