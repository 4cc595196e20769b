"""CIFAR-10 DCGAN (cascaded_unlearning.md §7) at 32x32x3.

Variants:
  (default) the spec's recipe, width 64, 50 epochs (a GPU run);
  cpu       what a 2-core CPU allows in minutes: half width (G 256/128/64, D 64/128/256), 3 epochs,
            no EMA (as the MNIST runs of the README);
  smoke     seconds, for tests.
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
  if variant == "cpu":
    c.dcgan.g_width = 32
    c.dcgan.d_width = 32
    c.num_epochs = 3
    return c
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'cpu', 'smoke'")
  return c
