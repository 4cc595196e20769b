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
  # MIA-G (optional; item unlearning): L_rec(x) = min_z ‖G(z) − x‖² by Adam on z from `restarts`
  # N(0, I) starts (seeded per image by `seed`), `steps` steps of `learning_rate`; `batch_size`
  # images per batch. lr 0.1: 0.01 had not converged in 300 steps on generated images.
  c.mia_g = ml_collections.ConfigDict({"enabled": False, "restarts": 5, "steps": 300,
                                       "learning_rate": 0.1, "batch_size": 256, "seed": 0})
  c.downstream = ml_collections.ConfigDict({
      "enabled": True, "num_samples": 20_000, "num_test": -1, "num_epochs": 10,
      "batch_size": 128, "seed": 1, "upper_bound": True, "shift": 0, "flip": False, "eval_batch_size": 500,
      "optimizer": {"name": "adam", "learning_rate": 1e-3, "momentum": 0.9,
                    "weight_decay": 0.0, "schedule": "constant"}})
  # Cached real features; "": $JAXUNLEARN_CACHE_DIR, else <workdir>/../.stats_cache.
  c.stats_cache_dir = ""
  # Optional FID (Inception) (evaluation.md §3): a local copy of pytorch-fid's
  # pt_inception-2015-12-05-6726825d.pth (read with torch, an optional dependency; never
  # downloaded). "": off, the report card is unchanged.
  c.inception_weights = ""
  c.num_devices = -1
  c.smoke = False
  if variant == "smoke":
    c.num_samples = 256
    c.num_real = 512
    c.num_real_floor = 256
    c.batch_size = 128
    c.cs_splits = 4
    c.mia.num_threshold = 200
    c.mia_g.restarts = 2
    c.mia_g.steps = 20
    c.mia_g.batch_size = 128
    c.downstream.num_samples = 256
    c.downstream.num_test = 1000
    c.downstream.num_epochs = 1
    c.downstream.batch_size = 64
    c.smoke = True
    return c
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
