"""Cascaded unlearning (Sun et al.; cascaded_unlearning.md) of a GAN trained by experiments.train_gan.

Every field is a reconstruction choice of the spec (§3–§7), documented in
jaxunlearn/methods/cascaded.py. The GAN itself (architecture, dataset, splits) comes from --pretrained.

Variants: (default) the spec's defaults; smoke (seconds on a smoke GAN, for tests and CI).
"""

import ml_collections


def get_config(variant: str = ""):
  c = ml_collections.ConfigDict()
  c.smoke = False
  c.batch_size = -1                  # B; -1: the pre-trained GAN's batch size
  c.optimizer = ml_collections.ConfigDict({"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999})
  c.optimizer_state = "fresh"        # fresh | restore (the original's Adam moments)
  c.ema_decay = 0.0                  # EMA of G during unlearning (G starts from G0's EMA weights)

  c.substitution = ml_collections.ConfigDict()
  c.substitution.source = "real_retained"  # real_retained | generated_filtered | none
  c.substitution.selection = "nearest"     # item mode with real_retained: nearest | random
  c.substitution.ratio = 1.0               # |S| = round(ratio·|D_u|); nearest needs 1.0
  c.substitution.nearest_candidates = 8    # nearest: neighbours checked for exact duplicates of x_u
  c.substitution.candidate_factor = 1.5    # generated: ⌈factor·|S|⌉ G0 samples screened
  c.substitution.tau_percentile = 5.0      # generated, item: τ_nn percentile of candidate NN distances
  c.substitution.min_confidence = 0.0      # generated, class: min feedback probability of the class
  c.substitution.feature_cache = ""        # nearest: folder caching D's classifier features ("" = off)

  c.fake_label = ml_collections.ConfigDict({"value": 0.0,   # y_fake
                                            "weight": 1.0})  # λ_u

  c.schedule = ml_collections.ConfigDict()
  c.schedule.order = "interleaved"   # interleaved | phased
  c.schedule.g_steps = 1             # n_G per unlearning D step
  c.schedule.min_unlearn_steps = 10  # n_min: n_u = max(⌈|D_u|/B_u⌉, n_min)
  c.schedule.max_unlearn_steps = -1  # cap on n_u (-1: none)
  c.schedule.learning_ratio = 1.0    # n_l = round(learning_ratio·n_u)
  c.schedule.max_rounds = 20         # T_max

  c.learning = ml_collections.ConfigDict({"real_source": "retained"})  # retained (D_r ∪ S) | substitutes

  c.stop = ml_collections.ConfigDict()
  c.stop.class_delta = 0.0       # δ_c (with --reference)
  c.stop.class_epsilon = 0.01    # ε (without --reference)
  c.stop.item_delta_min = 0.02   # δ_i = max(item_delta_min, SE_0)
  c.stop.min_rounds = 1          # no stop before this round

  c.eval_batch_size = 500        # sampling, scoring and classifier batches
  c.num_devices = -1             # -1: every device of the mesh
  c.keep_checkpoints = 3
  if variant == "smoke":
    c.smoke = True
    c.schedule.min_unlearn_steps = 2
    c.schedule.max_unlearn_steps = 4
    c.schedule.max_rounds = 3
    c.eval_batch_size = 200
    return c
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
