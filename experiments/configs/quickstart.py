"""The quickstart: the whole unlearning story on MNIST in one command.

Variants:
  (default) about 15 minutes on 2 CPU cores: a half-width DCGAN for 2 epochs (and its retrained
            twin), 1-epoch classifiers, cascaded class and 64-item unlearning, Adapt-then-Unlearn
            (the `cpu` preset), report cards on 5,000 samples;
  full      the paper-scale run for a GPU: spec widths and epochs, 10,000-sample report cards;
  smoke     seconds, for tests (numbers never to be quoted).
"""

import ml_collections

from experiments.configs import adapt_then_unlearn, cascaded_unlearning, evaluate, mnist_classifier
from experiments.configs import mnist_dcgan


def get_config(variant: str = ""):
  if variant not in ("", "full", "smoke"):
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'full', 'smoke'")
  smoke = variant == "smoke"
  c = ml_collections.ConfigDict()
  c.digit = 8                 # the class every method forgets
  c.num_items = 64            # the item-unlearning forget set (items:N)
  c.gan = mnist_dcgan.get_config(variant)
  c.classifier = mnist_classifier.get_config("smoke" if smoke else "")
  c.cascaded = cascaded_unlearning.get_config("smoke" if smoke else "")
  c.atu = adapt_then_unlearn.get_config({"": "cpu", "full": "", "smoke": "smoke"}[variant])
  c.evaluate = evaluate.get_config("smoke" if smoke else "")
  if variant == "":
    c.gan.num_epochs = 2
    c.classifier.num_epochs = 1
    c.evaluate.num_samples = 5000
    c.evaluate.num_real_floor = 5000
    c.evaluate.downstream.num_samples = 5000
    c.evaluate.downstream.num_epochs = 3
  return c
