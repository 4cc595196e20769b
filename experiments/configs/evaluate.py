"""The report card of a trained or unlearned GAN (evaluation.md).

Variants: (default) N = 10,000 samples per metric against the full real reference, downstream
task on 20,000 samples for 10 epochs; smoke: a few hundred samples, a one-epoch downstream
task on 256 samples (flagged smoke: true, never to be quoted).
"""

import ml_collections


def get_config(variant: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = ""          # name in the header (default: the --checkpoint folder's name)
  c.num_samples = 10_000     # N generated samples per model (Z_eval; Ret-FID also Z_ref)
  c.num_real = -1            # real reference images (-1: the whole reference split)
  c.num_real_floor = 10_000  # retained training images of the real-vs-real floor
  c.subset_seed = 0          # seeded subsets of real images (when fewer are asked for)
  c.batch_size = 500         # sampling and inference batch (a multiple of the device count)
  c.cs_splits = 10           # classifier score: mean ± std over splits
  c.prdc = ml_collections.ConfigDict({"k_pr": 3, "k_dc": 5})
  c.mia = ml_collections.ConfigDict({"num_threshold": 2000, "seed": 0})
  c.downstream = ml_collections.ConfigDict({
      "enabled": True, "num_samples": 20_000, "num_test": -1, "num_epochs": 10,
      "batch_size": 128, "seed": 1, "upper_bound": True, "shift": 0, "flip": False, "eval_batch_size": 500,
      "optimizer": {"name": "adam", "learning_rate": 1e-3, "momentum": 0.9,
                    "weight_decay": 0.0, "schedule": "constant"}})
  # Cached real features; "": $JAXUNLEARN_CACHE_DIR, else <workdir>/../.stats_cache.
  c.stats_cache_dir = ""
  c.inception_weights = ""   # local Inception-v3 weights for FID (Inception): not implemented
  c.num_devices = -1
  c.smoke = False
  if variant == "smoke":
    c.num_samples = 256
    c.num_real = 512
    c.num_real_floor = 256
    c.batch_size = 128
    c.cs_splits = 4
    c.mia.num_threshold = 200
    c.downstream.num_samples = 256
    c.downstream.num_test = 1000
    c.downstream.num_epochs = 1
    c.downstream.batch_size = 64
    c.smoke = True
    return c
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
