"""StyleGAN2 training as rosinality's ``train.py`` runs it, as pure jittable pieces and one step.

Symbols (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020): z a
latent (N, D), w = f(z) its style, ws the per-layer styles (N, L, D) that the synthesis network g
reads (L = ``stylegan2.num_ws(R)``), x a real batch (B, H, W, C), θ_G / φ the G / D parameters.

One :func:`train_step` is rosinality's iteration i = ``state.step``:

1. D update on L_D = mean softplus(−D(x)) + mean softplus(D(g(ws))), style-mixed fakes, no R1.
2. Lazy R1 if (i + 1) mod k_D = 0: a second D update on (γ/2)·k_D·R1(x) alone, R1 = mean
   ‖∇_x D(x)‖² (γ = ``gan.r1_gamma``; the interval scales it, as rosinality's ``r1 / 2 * r1_loss
   * d_reg_every``).
3. G update on the non-saturating L_G = mean softplus(−D(g(ws))), style-mixed ws.
4. Lazy path length if (i + 1) mod k_G = 0: a second G update on w_pl·k_G·P over
   ⌊B / pl_batch_shrink⌋ style-mixed latents; the running mean ā (``pl_mean`` in
   ``g_batch_stats``) takes its new value.
5. EMA of G: θ_EMA ← β·θ_EMA + (1 − β)·θ_G (β = ``gan.ema_decay``; rosinality 0.5^(32/10⁴)).

A regularizer runs on the last iteration of every block of k (rosinality: on the first, i mod k =
0; the same rate): the training loop logs after step s = i + 1, so with ``log_every`` a multiple
of k_D and k_G every logged step shows both regularizers. The lazy updates run under ``lax.cond``
on the traced step counter: one compiled step, and a regularizer's double backward pass is
executed only on its own steps. Lazy regularization (Karras et al. 2020, App. C) also changes
the optimizer of a network regularized every k steps: lr·c, β1^c, β2^c with c = k/(k + 1)
(:func:`lazy_adam`, applied by :func:`make_train_step`).

Path length (§3.2): y ~ N(0, I)/√(H·W) in the image shape; ℓ_i = √(mean_l ‖(J_ws^T y)_{i,l}‖²)
with J_ws^T y = ∇_ws Σ g(ws)·y; ā' = ā + λ·(mean_i ℓ_i − ā); P = mean_i (ℓ_i − ā')². The gradient
of P flows through ā' as in rosinality and the official code; ā' is stored as a constant.

Style mixing (Karras et al. 2019, §3.1): two latents z1, z2 per sample and one crossover layer k
per batch (as rosinality and the official code): with probability p_mix, k ~ U{1, …, L − 1}, else
k = L (no mixing); layers l < k read w1 = f(z1), layers l ≥ k read w2 = f(z2).

Metrics: d_loss, d_real, d_fake, g_loss; r1, pl_penalty (P) and path_length (mean ℓ), which are
the lazy updates' values on their steps and 0 on the other steps; pl_mean (ā after the step).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import losses
from jaxunlearn.errors import UserInputError
from jaxunlearn.models import stylegan2
from jaxunlearn.train import gan as gan_lib

PyTree = Any
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Regularization:
  """StyleGAN2's training regularizers (``config.stylegan2_reg``; defaults: rosinality's).

  Attributes:
    d_reg_every: k_D, lazy R1 every k_D steps (its weight γ is ``config.r1_gamma``; 0: off).
    g_reg_every: k_G, lazy path-length regularization every k_G steps.
    pl_weight: w_pl (0: no path-length regularization).
    pl_decay: λ, the decay of the path-length running mean ā.
    pl_batch_shrink: the path-length batch is max(1, ⌊B / pl_batch_shrink⌋).
    mixing_prob: p_mix, the probability that a batch is style-mixed (0: off).
  """
  d_reg_every: int = 16
  g_reg_every: int = 4
  pl_weight: float = 2.0
  pl_decay: float = 0.01
  pl_batch_shrink: int = 2
  mixing_prob: float = 0.9

  def __post_init__(self):
    checks = (("d_reg_every", self.d_reg_every >= 1, ">= 1"),
              ("g_reg_every", self.g_reg_every >= 1, ">= 1"),
              ("pl_weight", self.pl_weight >= 0, ">= 0"),
              ("pl_decay", 0 <= self.pl_decay <= 1, "in [0, 1]"),
              ("pl_batch_shrink", self.pl_batch_shrink >= 1, ">= 1"),
              ("mixing_prob", 0 <= self.mixing_prob <= 1, "in [0, 1]"))
    for name, ok, valid in checks:
      if not ok:
        raise UserInputError(f"--config.stylegan2_reg.{name}={getattr(self, name)} must be {valid}")

  @classmethod
  def from_config(cls, cfg) -> Regularization:
    return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls)})


def lazy_adam(opt_cfg, every: int) -> optax.GradientTransformation:
  """Adam for a network regularized every ``every`` = k steps: lr·c, β1^c, β2^c, c = k/(k + 1).

  Its state has the structure of ``optax.adam``'s, so it continues a state made by ``make_gan``.
  """
  c = every / (every + 1)
  return optax.adam(opt_cfg.learning_rate * c, b1=opt_cfg.b1 ** c, b2=opt_cfg.b2 ** c)


def _variables(g_params: PyTree, g_batch_stats: PyTree) -> dict[str, PyTree]:
  return {"params": g_params, "batch_stats": g_batch_stats}


def mapping(g_params: PyTree, g_batch_stats: PyTree, z: jax.Array, *, gan: gan_lib.GAN
            ) -> jax.Array:
  """w = f(z): (N, D) -> (N, D)."""
  return gan.generator.apply(_variables(g_params, g_batch_stats), z,
                             method=lambda m, z: m.mapping(z))


def synthesis(g_params: PyTree, g_batch_stats: PyTree, ws: jax.Array, *, gan: gan_lib.GAN
              ) -> jax.Array:
  """g(ws): per-layer styles (N, L, D) -> images (N, H, W, C)."""
  return gan.generator.apply(_variables(g_params, g_batch_stats), ws,
                             method=lambda m, ws: m.synthesis(ws))


def crossover_layer(key: jax.Array, num_layers: int, mixing_prob: float) -> jax.Array:
  """k (int32 scalar): with probability p_mix uniform in {1, …, L − 1}, else L (no mixing)."""
  k_mix, k_layer = jax.random.split(key)
  layer = jax.random.randint(k_layer, (), 1, num_layers)
  return jnp.where(jax.random.uniform(k_mix) < mixing_prob, layer, num_layers)


def mix_styles(w1: jax.Array, w2: jax.Array, crossover: jax.Array | int, num_layers: int
               ) -> jax.Array:
  """ws (N, L, D) from w1, w2 (N, D): layer l reads w1 for l < k = ``crossover``, else w2."""
  second = (jnp.arange(num_layers) >= crossover)[None, :, None]
  return jnp.where(second, w2[:, None, :], w1[:, None, :])


def sample_styles(g_params: PyTree, g_batch_stats: PyTree, rng: jax.Array, n: int, *,
                  gan: gan_lib.GAN, mixing_prob: float) -> jax.Array:
  """Per-layer styles (n, L, D) of fresh latents z1 (and z2), style-mixed with prob. p_mix."""
  k_z1, k_z2, k_cross = jax.random.split(rng, 3)
  num_layers = stylegan2.num_ws(gan.generator.resolution)
  w1 = mapping(g_params, g_batch_stats, gan.sample_latents(k_z1, n), gan=gan)
  if mixing_prob == 0:
    return jnp.broadcast_to(w1[:, None, :], (n, num_layers, w1.shape[-1]))
  w2 = mapping(g_params, g_batch_stats, gan.sample_latents(k_z2, n), gan=gan)
  return mix_styles(w1, w2, crossover_layer(k_cross, num_layers, mixing_prob), num_layers)


def path_length_noise(key: jax.Array, image_shape: tuple[int, ...]) -> jax.Array:
  """y ~ N(0, I)/√(H·W) of shape (N, H, W, C)."""
  return jax.random.normal(key, image_shape) / math.sqrt(image_shape[1] * image_shape[2])


def path_lengths(synthesize: Callable[[jax.Array], jax.Array], ws: jax.Array, y: jax.Array
                 ) -> jax.Array:
  """ℓ_i = √(mean_l Σ_d (J_ws^T y)²_{i,l,d}): (N,), with ``synthesize``: ws (N, L, D) -> images."""
  _, vjp = jax.vjp(synthesize, ws)
  (grad,) = vjp(y)
  return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grad), axis=2), axis=1))


def path_length_penalty(lengths: jax.Array, pl_mean: jax.Array, decay: float
                        ) -> tuple[jax.Array, jax.Array]:
  """P = mean_i (ℓ_i − ā')² with ā' = ā + λ·(mean ℓ − ā); returns (P, ā' as a constant)."""
  new_mean = pl_mean + decay * (jnp.mean(lengths) - pl_mean)
  return jnp.mean(jnp.square(lengths - new_mean)), jax.lax.stop_gradient(new_mean)


def d_step(state: gan_lib.GANState, real: jax.Array, rng: jax.Array, *, gan: gan_lib.GAN,
           mixing_prob: float) -> tuple[gan_lib.GANState, Metrics]:
  """One D update on L_D against ``len(real)`` style-mixed fakes, without R1 (:func:`r1_step`)."""
  ws = sample_styles(state.g_params, state.g_batch_stats, rng, real.shape[0], gan=gan,
                     mixing_prob=mixing_prob)
  fake = jax.lax.stop_gradient(synthesis(state.g_params, state.g_batch_stats, ws, gan=gan))
  loss_fn = functools.partial(gan_lib.d_adversarial_loss, real=real, fake=fake, gan=gan)
  return gan_lib.d_update(state, loss_fn, gan=dataclasses.replace(gan, r1_gamma=0.0),
                          r1_images=real)


def r1_step(state: gan_lib.GANState, real: jax.Array, *, gan: gan_lib.GAN, every: int
            ) -> tuple[gan_lib.GANState, Metrics]:
  """Lazy R1: one D update on (γ/2)·k·R1(x) alone (γ = ``gan.r1_gamma``, k = ``every``); r1."""
  lazy = dataclasses.replace(gan, r1_gamma=gan.r1_gamma * every)
  return gan_lib.d_update(state, lambda d_params: (jnp.zeros(()), {}), gan=lazy, r1_images=real)


def g_step(state: gan_lib.GANState, batch_size: int, rng: jax.Array, *, gan: gan_lib.GAN,
           mixing_prob: float) -> tuple[gan_lib.GANState, Metrics]:
  """One G update on the non-saturating L_G over style-mixed latents (the EMA is not updated)."""
  def loss_fn(g_params):
    ws = sample_styles(g_params, state.g_batch_stats, rng, batch_size, gan=gan,
                       mixing_prob=mixing_prob)
    fake = synthesis(g_params, state.g_batch_stats, ws, gan=gan)
    loss = losses.generator_loss(gan.d_logits(state.d_params, fake))
    return loss, (state.g_batch_stats, {"g_loss": loss})

  return gan_lib.g_update(state, loss_fn, gan=gan)


def path_length_step(state: gan_lib.GANState, batch_size: int, rng: jax.Array, *,
                     gan: gan_lib.GAN, reg: Regularization) -> tuple[gan_lib.GANState, Metrics]:
  """Lazy path length: one G update on w_pl·k_G·P alone; ā in ``g_batch_stats`` becomes ā'."""
  n = max(1, batch_size // reg.pl_batch_shrink)
  k_styles, k_y = jax.random.split(rng)
  batch_stats = state.g_batch_stats

  def loss_fn(g_params):
    ws = sample_styles(g_params, batch_stats, k_styles, n, gan=gan, mixing_prob=reg.mixing_prob)
    synthesize = lambda ws: synthesis(g_params, batch_stats, ws, gan=gan)
    y = path_length_noise(k_y, jax.eval_shape(synthesize, ws).shape)
    lengths = path_lengths(synthesize, ws, y)
    penalty, new_mean = path_length_penalty(lengths, batch_stats[stylegan2.PL_MEAN],
                                            reg.pl_decay)
    return (reg.pl_weight * reg.g_reg_every * penalty,
            ({**batch_stats, stylegan2.PL_MEAN: new_mean},
             {"pl_penalty": penalty, "path_length": jnp.mean(lengths)}))

  return gan_lib.g_update(state, loss_fn, gan=gan)


def _every(interval: int, step: jax.Array,
           update: Callable[[gan_lib.GANState], tuple[gan_lib.GANState, Metrics]],
           state: gan_lib.GANState) -> tuple[gan_lib.GANState, Metrics]:
  """``update(state)`` when (``step`` + 1) mod ``interval`` = 0; else ``state``, zero metrics."""
  def skip(s):
    _, metrics = jax.eval_shape(update, s)
    return s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics)

  return jax.lax.cond((step + 1) % interval == 0, update, skip, state)


def train_step(state: gan_lib.GANState, real: jax.Array, rng: jax.Array, *, gan: gan_lib.GAN,
               reg: Regularization) -> tuple[gan_lib.GANState, Metrics]:
  """One StyleGAN2 iteration (module docstring, 1–5); step += 1.

  Args:
    state: the GAN state at iteration i = ``state.step``.
    real: (B, H, W, C) real images in [-1, 1].
    rng: a key for this step.
    gan: the collaborator (its optimizers already :func:`lazy_adam`: see :func:`make_train_step`).
    reg: the regularizers' settings.
  """
  step, batch_size = state.step, real.shape[0]
  state, metrics = d_step(state, real, jax.random.fold_in(rng, 0), gan=gan,
                          mixing_prob=reg.mixing_prob)
  if gan.r1_gamma > 0:
    r1 = functools.partial(r1_step, real=real, gan=gan, every=reg.d_reg_every)
    state, r1_metrics = _every(reg.d_reg_every, step, r1, state)
    metrics.update(r1_metrics)
  state, g_metrics = g_step(state, batch_size, jax.random.fold_in(rng, 1), gan=gan,
                            mixing_prob=reg.mixing_prob)
  metrics.update(g_metrics)
  if reg.pl_weight > 0:
    pl = functools.partial(path_length_step, batch_size=batch_size,
                           rng=jax.random.fold_in(rng, 2), gan=gan, reg=reg)
    state, pl_metrics = _every(reg.g_reg_every, step, pl, state)
    metrics.update(pl_metrics, pl_mean=state.g_batch_stats[stylegan2.PL_MEAN])
  state = gan_lib.ema_update(state, gan=gan)
  return state.replace(step=step + 1), metrics


def make_train_step(config, gan: gan_lib.GAN
                    ) -> Callable[[gan_lib.GANState, jax.Array, jax.Array],
                                  tuple[gan_lib.GANState, Metrics]]:
  """:func:`train_step` bound to ``gan`` and ``config.stylegan2_reg``.

  The optimizers become :func:`lazy_adam` of ``config.optimizer`` for each lazily regularized
  network (D when γ > 0, G when w_pl > 0), so ``config.optimizer`` holds the non-lazy settings
  (rosinality's ``--lr``; Adam betas (0, 0.99)).
  """
  reg = Regularization.from_config(config.stylegan2_reg)
  gan = dataclasses.replace(
      gan,
      d_optimizer=(lazy_adam(config.optimizer, reg.d_reg_every) if gan.r1_gamma > 0
                   else gan.d_optimizer),
      g_optimizer=(lazy_adam(config.optimizer, reg.g_reg_every) if reg.pl_weight > 0
                   else gan.g_optimizer))
  return functools.partial(train_step, gan=gan, reg=reg)
