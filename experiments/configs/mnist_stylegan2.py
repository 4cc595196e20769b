"""MNIST StyleGAN2 at 32x32 (adapt_then_unlearn.md §9), zero-padded 28 -> 32.

rosinality's recipe, as the paper's MNIST model: config-f (channel multiplier 2, 8-layer mapping
network with lr multiplier 0.01), z = w = 128; Adam lr 0.002, betas (0, 0.99) before the
lazy-regularization correction (jaxunlearn/train/stylegan2.py); R1 γ = 10 every 16 D steps; path
length weight 2 every 4 G steps; style mixing 0.9; EMA of G with decay 0.5^(32/10⁴) ≈ 0.99778
(rosinality fixes it whatever the batch size). D has no minibatch-stddev (rosinality's has one):
each D score depends on its own image only, as membership inference and the methods assume.

Variants:
  (default) CPU-sized: channels capped at 32 (rosinality: 512 at every resolution up to 32),
            batch 32, 3,200 steps (≈ 100k images, 1.8 epochs; measured about 1.9 s per step,
            3 s with path length, on 2 shared, loaded CPU cores: roughly 2 hours), logged every
            64 steps (a multiple of both lazy intervals: each logged step shows R1 and path
            length);
  smoke     seconds, for tests: channels capped at 16, 2 mapping layers, batch 8, 6 steps, both
            regularizers every 2 steps.
"""

from experiments.configs import gan_common


def get_config(variant: str = ""):
  c = gan_common.base_config()
  c.dataset = "mnist"
  c.model = "stylegan2"
  c.latent_dim = 128
  c.stylegan2.channel_max = 32
  c.batch_size = 32
  c.num_steps = 3200
  c.log_every = 64
  c.optimizer.learning_rate = 0.002
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.99
  c.r1_gamma = 10.0
  c.ema_decay = 0.5 ** (32 / 10_000)
  if variant == "smoke":
    c = gan_common.smoke(c)
    c.stylegan2.channel_max = 16
    c.stylegan2.n_mlp = 2
    c.batch_size = 8
    c.stylegan2_reg.d_reg_every = c.stylegan2_reg.g_reg_every = 2
    return c
  if variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
