"""Adapt-then-Unlearn (adapt_then_unlearn.md): project DCGAN defaults of §2, §3.4, §4.3–§4.5, §5.

Variants:
  (default) the spec's DCGAN defaults: K = 5, 2,000 Stage-1 and 3,000 Stage-2 iterations;
  cpu       a CPU-sized run: K = 2, 300 + 600 iterations, 2,000 positives, λ = 50;
  stylegan2_cpu  the official StyleGAN2 recipe (§3.4, §4.5) cut to this CPU: EWC on the synthesis
            convolutions, Adam 0.0016 with betas (0, 0.99^0.8), batch 16, K = 2, 300 + 1,000
            iterations, EMA decay 0.99 (the official 0.99778 would leave a 300-step stage's EMA
            weights half-way between θ_G and the trained weights), λ from the Fisher scale of our
            channel-capped MNIST StyleGAN2 (see the variant);
  smoke     seconds, for tests.
The flags --repulsion and --num_adapted override repulsion.kind and adapt.num_models.
"""

import ml_collections

from jaxunlearn.models import stylegan2

# λ for the stylegan2_cpu variant: the DCGAN's working λ·F̄ (50 × 5.5e-4 ≈ 0.0275, see `cpu`) at the
# mean Fisher of the synthesis convolutions of our MNIST StyleGAN2 (channel cap 32, 1,643 steps,
# minibatch-stddev D): F̄ = 2.7e-4, so λ = 0.0275 / 2.7e-4 ≈ 100. The official 5e8 was set for
# rosinality's 512-channel model and would pin this one to θ_G.
LAM_STYLEGAN2_CPU = 100.0

EXTRAPOLATION_SCALES = tuple(round(-0.1 * i, 1) for i in range(20)) + tuple(
    round(0.1 * i, 1) for i in range(1, 11))  # {0, −0.1, …, −1.9} ∪ {0.1, …, 1.0}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.baseline = "none"            # none (the method) | extrapolation | positives_only | ewc_finetune
  c.num_devices = -1
  c.sample_batch_size = 256      # generation batch (a multiple of the device count)
  c.feedback = ml_collections.ConfigDict(dict(
      classifier="separate",     # separate: the feedback classifier (role feedback) | eval
      mode="fixed_count",        # fixed_count | fixed_draws (official: fixed draws, variable count)
      n_neg=300, n_pos=5000,     # fixed_count targets
      draws_neg=200, draws_pos=5000,  # fixed_draws: latents drawn per bank (official MNIST)
      max_draws_factor=200,      # fixed_count gives up after factor × target draws
      batch_size=256,            # latents drawn and judged per batch
      min_confidence=0.0))       # > 0: samples below this top probability join neither bank
                                 # (PUL_val still counts every argmax negative)
  c.adapt = ml_collections.ConfigDict(dict(
      num_models=5, num_steps=2000, batch_size=16, learning_rate=2e-4, b1=0.5, b2=0.999,
      r1_gamma=0.0, ema_decay=0.0, log_every=50, checkpoint_every=500,
      sanity_samples=1000))      # Z_val latents for each θ_N^(j)'s negative share
  c.ewc = ml_collections.ConfigDict(dict(
      lam=5e8, num_samples=32,
      param_filter=""))          # regex on leaf paths ("ConvTranspose_1/kernel"); "" = all of G
  c.repulsion = ml_collections.ConfigDict(dict(
      kind="el2",                # el2 | nl2 | il2 (--repulsion)
      distance="paper",          # paper | code (official x/2*K form)
      aggregate="distance",      # distance: f(d) | per_model: mean_j f(d_j)
      relative=True,             # scale by d0 = d(θ_G): term starts near weight_rel
      weight_rel=1.0, alpha_rel=1.0,
      weight=100.0, alpha=1.0))  # absolute w, α when relative=False (official EL2: 100, γ_cli)
  c.unlearn = ml_collections.ConfigDict(dict(
      num_steps=3000, batch_size=64, learning_rate=2e-4, b1=0.5, b2=0.999, r1_gamma=0.0,
      ema_decay=0.0, eval_every=100, log_every=50, checkpoint_every=500))
  c.selection = ml_collections.ConfigDict(dict(fid_budget_factor=2.0, num_val=2000))
  c.extrapolation = ml_collections.ConfigDict(dict(
      scales=EXTRAPOLATION_SCALES, interpolate_batch_stats=False))
  if variant == "":
    return c
  if variant == "cpu":
    c.adapt.num_models = 2
    c.adapt.num_steps = 300
    c.adapt.checkpoint_every = 100
    # λ sweep on the MNIST DCGAN (mean Fisher ≈ 5.5e-4), negative share of θ_N after 300 steps
    # (pre-trained: 7 %): 5e8 → 8 %, 5e6 → 9 %, 5e4 → 13 %, 500 → 53 %, 50 → 60 %, 5 → 62 %.
    c.ewc.lam = 50.0
    c.feedback.n_pos = 2000
    c.unlearn.num_steps = 600
    c.unlearn.checkpoint_every = 100
    return c
  if variant == "stylegan2_cpu":
    adam = dict(learning_rate=0.0016, b1=0.0, b2=0.99 ** 0.8, batch_size=16, ema_decay=0.99)
    c.adapt.update(dict(num_models=2, num_steps=300, checkpoint_every=100, **adam))
    c.ewc.param_filter = stylegan2.SYNTHESIS_CONVS_REGEX
    c.ewc.lam = LAM_STYLEGAN2_CPU
    c.feedback.n_pos = 2000
    c.unlearn.update(dict(num_steps=1000, checkpoint_every=100, **adam))
    return c
  if variant == "smoke":
    c.sample_batch_size = 64
    c.feedback.update(dict(n_neg=16, n_pos=64, batch_size=64))
    c.adapt.update(dict(num_models=2, num_steps=4, batch_size=8, log_every=2, checkpoint_every=2,
                        sanity_samples=64))
    c.ewc.num_samples = 8
    c.unlearn.update(dict(num_steps=6, batch_size=16, eval_every=3, log_every=2,
                          checkpoint_every=2))
    c.selection.num_val = 256
    c.extrapolation.scales = (0.0, -0.5, -1.0, 0.5)
    return c
  raise ValueError(f"unknown variant {variant!r}; valid: '', 'cpu', 'stylegan2_cpu', 'smoke'")
