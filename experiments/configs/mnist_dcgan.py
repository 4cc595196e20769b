"""MNIST DCGAN (cascaded_unlearning.md §7), zero-padded to 32x32.

Variants:
  (default) the CPU-sized pre-trained model every MNIST unlearning experiment starts from:
            half-width DCGAN (G 256/128/64, D 64/128/256), 3 epochs (see README for its time),
            samples from an EMA of G (decay 0.999): after 2 epochs its grids show smoother digits
            than the raw generator's broken strokes, but its classifier-feature FID on 5,000
            samples was not better (213 against 151 for a raw-G run; README, quickstart);
  full      the spec's recipe: width 64 (G 512/256/128), 25 epochs (a GPU run);
  smoke     seconds, for tests.
"""

from experiments.configs import gan_common


def get_config(variant: str = ""):
  c = gan_common.base_config()
  c.dataset = "mnist"
  if variant == "full":
    return c
  if variant == "smoke":
    return gan_common.smoke(c)
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'full', 'smoke'")
  c.dcgan.g_width = 32
  c.dcgan.d_width = 32
  c.num_epochs = 3
  c.ema_decay = 0.999
  return c
