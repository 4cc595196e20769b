"""Fields shared by the classifier training configs (evaluation.md §1)."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = "mnist"
  c.cifar10_variant = "jpeg_full"  # local CIFAR-10 source: jpeg_full (lossy) | exact_subset
  c.role = "eval"                  # eval (metrics only, default seed 0) | feedback (methods, seed 1)
  c.model = "lenet"                # lenet | resnet20
  c.widths = (32, 64, 128)         # lenet: conv1, conv2, dense; resnet20: stage widths; last = d
  c.batch_size = 128
  c.num_epochs = 5
  c.num_steps = -1                 # > 0 overrides num_epochs
  c.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3,
                                           "momentum": 0.9, "weight_decay": 0.0,
                                           "schedule": "cosine"})  # decays to 0 at the end
  c.augment = ml_collections.ConfigDict({"shift": 2, "flip": False})
  c.target_accuracy = 0.99         # acceptance level; a run below it says so
  c.num_devices = -1
  c.eval_batch_size = 500
  c.eval_every_epochs = 1          # test accuracy in metrics.jsonl every k epochs (0: end only)
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.smoke = False
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Seconds on 2 CPU cores: a few steps; the classifier id gets a _smoke suffix."""
  c.batch_size = 64
  c.num_steps = 60
  c.eval_every_epochs = 0
  c.log_every = 20
  c.checkpoint_every = 30
  c.smoke = True
  return c
