"""MNIST LeNet classifier (evaluation.md §1): the eval (seed 0) or feedback (seed 1) instance.

Variants: (default) Adam 1e-3 on a cosine schedule, ±2-pixel shifts, 5 epochs on all 60,000
training images (acceptance: >= 99.0 % test accuracy; a constant rate ended at 98.9 %, the
decay removes the last-step noise); smoke: 60 steps, for tests.

  python -m experiments.train_classifier --workdir=W --config=experiments/configs/mnist_classifier.py \
      --config.role=eval|feedback
"""

from experiments.configs import classifier_common


def get_config(variant: str = ""):
  c = classifier_common.base_config()
  if variant == "smoke":
    return classifier_common.smoke(c)
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
