"""``jaxunlearn.unlearn``: either method from research code in one call.

    result = jaxunlearn.unlearn("runs/mnist_gan", "class:8", method="cascaded",
                                workdir="runs/cu8", feedback_classifier="runs/clf_feedback",
                                eval_classifier="runs/clf_eval", reference="runs/retrain8")
    result.trained.state.g_params      # the unlearned generator parameters θ
    result.report_card["effectiveness"]

It runs the same library code as the experiment entry points (so the workdir resumes and holds
the same files) and, when an evaluation classifier is given, the report card of evaluation.md.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from jaxunlearn import parallel
from jaxunlearn.errors import UserInputError
from jaxunlearn.train import pretrained

METHODS = ("cascaded", "adapt_then_unlearn")


@dataclasses.dataclass(frozen=True)
class UnlearnResult:
  """The unlearned GAN (``trained.state.g_params`` is θ_U), the run's results and report card."""
  trained: pretrained.TrainedGAN
  results: dict[str, Any]
  report_card: dict[str, Any] | None


def _default_config(method: str):
  if method == "cascaded":
    from experiments.configs import cascaded_unlearning  # pylint: disable=g-import-not-at-top
    return cascaded_unlearning.get_config()
  from experiments.configs import adapt_then_unlearn  # pylint: disable=g-import-not-at-top
  return adapt_then_unlearn.get_config()


def unlearn(gan: str | pretrained.TrainedGAN, forget: str, *, method: str, workdir: str,
            feedback_classifier: str, config=None, eval_classifier: str | None = None,
            reference: str | None = None, evaluate_config=None, data_dir: str | None = None,
            seed: int = 0) -> UnlearnResult:
  """Unlearns ``forget`` (a forget SPEC) from a trained GAN with ``method``.

  Args:
    gan: the train_gan workdir of the pre-trained GAN (or a loaded TrainedGAN).
    forget: "class:C", "classes:...", "items:N" or "items_file:PATH" (items: cascaded only).
    method: "cascaded" (Sun et al.) or "adapt_then_unlearn" (Tiwary et al.).
    workdir: where the run writes (and resumes); the report card goes to ``workdir/eval``.
    feedback_classifier: train_classifier workdir the method may use (never the eval one).
    config: the method's ConfigDict (default: its experiment config's default variant).
    eval_classifier: train_classifier workdir for the report card (None: no report card).
    reference: the retrained-from-scratch GAN's workdir (stopping rules and Ret-FID-clf).
    evaluate_config: the report card's ConfigDict (default: experiments/configs/evaluate.py).
  """
  if method not in METHODS:
    raise UserInputError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
  source = gan.workdir if isinstance(gan, pretrained.TrainedGAN) else gan
  config = config if config is not None else _default_config(method)
  if method == "cascaded":
    from jaxunlearn.methods import cascaded  # pylint: disable=g-import-not-at-top
    results = cascaded.unlearn(config, workdir, pretrained=source, forget_spec=forget,
                               feedback_classifier=feedback_classifier, reference=reference,
                               data_dir=data_dir, seed=seed)
  else:
    from jaxunlearn.methods import atu_experiment  # pylint: disable=g-import-not-at-top
    results = atu_experiment.run_experiment(config, workdir, pretrained=source, forget=forget,
                                            feedback_classifier=feedback_classifier, seed=seed)
  trained = pretrained.load_gan(workdir, parallel.make_mesh(), flag="workdir")
  card = None
  if eval_classifier is not None:
    from experiments.configs import evaluate  # pylint: disable=g-import-not-at-top
    from jaxunlearn.eval import report  # pylint: disable=g-import-not-at-top
    report.run_evaluation(evaluate_config or evaluate.get_config(), os.path.join(workdir, "eval"),
                          checkpoint=workdir, eval_classifier=eval_classifier, reference=reference,
                          original=source, forget_spec=forget, data_dir=data_dir, seed=seed)
    from jaxunlearn import runs  # pylint: disable=g-import-not-at-top
    card = runs.read_json(os.path.join(workdir, "eval", "report_card.json"))
  return UnlearnResult(trained, results, card)
