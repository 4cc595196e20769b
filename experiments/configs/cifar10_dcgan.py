"""CIFAR-10 DCGAN (cascaded_unlearning.md §7) at 32x32x3.

Variants: (default) the spec's recipe, width 64, 50 epochs (a GPU run); smoke (seconds).
Local data default to the lossy JPEG copy of all 50,000 training images
(``--config.cifar10_variant=exact_subset`` for the 4,000 pixel-exact ones).
"""

from experiments.configs import gan_common


def get_config(variant: str = ""):
  c = gan_common.base_config()
  c.dataset = "cifar10"
  c.num_epochs = 50
  if variant == "smoke":
    return gan_common.smoke(c)
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
