"""CIFAR-10 ResNet-20 classifier at double width 32/64/128 (evaluation.md §1).

Variants: (default) SGD momentum 0.9, lr 0.1 on a cosine schedule, weight decay 5e-4, random
crops (±4 pixels) and flips, 150 epochs (a GPU run; acceptance: >= 90 % test accuracy);
cpu: what this 2-core CPU allows in a session: the standard ResNet-20 widths 16/32/64,
6 epochs on the lossy-JPEG full training set, same recipe otherwise (the accuracy it reached is in
the README; it is below the 90 % acceptance, which needs the GPU run);
smoke: widths 8/16/32 and a few steps, for tests.
"""

from experiments.configs import classifier_common


def get_config(variant: str = ""):
  c = classifier_common.base_config()
  c.dataset = "cifar10"
  c.model = "resnet20"
  c.widths = (32, 64, 128)
  c.num_epochs = 150
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "cosine"
  c.augment.shift = 4
  c.augment.flip = True
  c.target_accuracy = 0.90
  c.eval_every_epochs = 10
  if variant == "cpu":
    c.widths = (16, 32, 64)
    c.num_epochs = 6
    c.eval_every_epochs = 2
    return c
  if variant == "smoke":
    c.widths = (8, 16, 32)
    c = classifier_common.smoke(c)
    c.batch_size = 32
    c.num_steps = 4
    c.log_every = 2
    c.checkpoint_every = 2
    return c
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'cpu', 'smoke'")
  return c
