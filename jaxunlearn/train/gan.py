"""GAN state and the pure, jittable GAN update steps.

Every step has the signature ``step(state, batch, rng) -> (state, metrics)`` once its
collaborator (a :class:`GAN`) is bound with ``functools.partial``; it has no Python side
effects, so it can be jitted, sharded over a mesh and composed in research code.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxunlearn import losses
from jaxunlearn.errors import UserInputError
from jaxunlearn.parallel import constrain_batch

PyTree = Any


class GANState(struct.PyTreeNode):
  """Everything that changes during GAN training (all of it is checkpointed).

  Attributes:
    step: int32 scalar, completed training steps.
    g_params / g_batch_stats: generator parameters θ_G and its non-trained variables (the
      DCGAN's BatchNorm running statistics; StyleGAN2's fixed noise maps and path-length mean ā).
    g_ema_params: exponential moving average of θ_G (equal to g_params when EMA is off).
    d_params: discriminator parameters φ.
    g_opt_state / d_opt_state: optax states.
    rng: uint32 key data of the run's base key; step t uses ``fold_in(key, t)``.
  """
  step: jax.Array
  g_params: PyTree
  g_batch_stats: PyTree
  g_ema_params: PyTree
  d_params: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  rng: jax.Array

  @property
  def key(self) -> jax.Array:
    return jax.random.wrap_key_data(self.rng)


@dataclasses.dataclass(frozen=True)
class GAN:
  """The static collaborators of the GAN steps: modules, optimizers and loss settings."""
  generator: nn.Module
  discriminator: nn.Module
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  latent_dim: int
  r1_gamma: float = 0.0
  ema_decay: float = 0.0

  def init(self, key: jax.Array, image_shape: tuple[int, int, int]) -> GANState:
    """Fresh state: G from ``fold_in(key, 0)``, D from ``fold_in(key, 1)``; base key ``key``."""
    g_vars = self.generator.init(jax.random.fold_in(key, 0), jnp.zeros((1, self.latent_dim)))
    d_vars = self.discriminator.init(jax.random.fold_in(key, 1), jnp.zeros((1, *image_shape)))
    return GANState(step=jnp.zeros((), jnp.int32), g_params=g_vars["params"],
                    g_batch_stats=g_vars.get("batch_stats", {}),
                    g_ema_params=jax.tree.map(jnp.copy, g_vars["params"]),  # no aliasing: donated
                    d_params=d_vars["params"], g_opt_state=self.g_optimizer.init(g_vars["params"]),
                    d_opt_state=self.d_optimizer.init(d_vars["params"]),
                    rng=jax.random.key_data(key))

  def sample_latents(self, key: jax.Array, n: int) -> jax.Array:
    """z ~ N(0, I): (n, latent_dim), sharded along the data axis inside a mesh."""
    return constrain_batch(jax.random.normal(key, (n, self.latent_dim)))

  def generate(self, g_params: PyTree, g_batch_stats: PyTree, z: jax.Array) -> jax.Array:
    """G(z) in inference mode (running statistics): (N, latent_dim) -> (N, H, W, C)."""
    return self.generator.apply({"params": g_params, "batch_stats": g_batch_stats}, z, train=False)

  def generate_train(self, g_params: PyTree, g_batch_stats: PyTree, z: jax.Array
                     ) -> tuple[jax.Array, PyTree]:
    """G(z) with batch statistics; returns the images and the updated running statistics."""
    images, new_vars = self.generator.apply({"params": g_params, "batch_stats": g_batch_stats}, z,
                                            train=True, mutable=["batch_stats"])
    return images, new_vars.get("batch_stats", {})

  def d_logits(self, d_params: PyTree, images: jax.Array) -> jax.Array:
    """D(x): (N, H, W, C) -> (N,) raw logits; per-sample (no batch statistics)."""
    return self.discriminator.apply({"params": d_params}, images)


def generated_constants(state: GANState, rng: jax.Array, n: int, *, gan: GAN) -> jax.Array:
  """(n, H, W, C) images G(z), z ~ N(0, I) from ``rng``, G in training mode, as constants for D."""
  fake, _ = gan.generate_train(state.g_params, state.g_batch_stats, gan.sample_latents(rng, n))
  return jax.lax.stop_gradient(fake)


def d_update(state: GANState, loss_fn: Callable[[PyTree], tuple[jax.Array, dict[str, jax.Array]]],
             *, gan: GAN, r1_images: jax.Array, r1_name: str = "r1"
             ) -> tuple[GANState, dict[str, jax.Array]]:
  """One optimizer update of D on ``loss_fn(d_params) -> (loss, metrics)`` (+ γ/2·R1).

  With ``gan.r1_gamma`` = γ > 0, the R1 penalty on ``r1_images`` (the images D treats as real) is
  added and logged as ``r1_name``. Only D's parameters and optimizer state change.
  """
  def total(d_params):
    loss, metrics = loss_fn(d_params)
    if gan.r1_gamma > 0:
      r1 = losses.r1_penalty(lambda x: gan.d_logits(d_params, x), r1_images)
      loss = loss + 0.5 * gan.r1_gamma * r1
      metrics = {**metrics, r1_name: r1}
    return loss, metrics

  grads, metrics = jax.grad(total, has_aux=True)(state.d_params)
  updates, d_opt_state = gan.d_optimizer.update(grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)
  return state.replace(d_params=d_params, d_opt_state=d_opt_state), metrics


def d_adversarial_loss(d_params: PyTree, *, real: jax.Array, fake: jax.Array, gan: GAN
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_D(φ) on real (B, H, W, C) and fake (B', H, W, C) images, and its metrics d_loss, d_real,
  d_fake (the mean logits)."""
  real_logits = gan.d_logits(d_params, real)
  fake_logits = gan.d_logits(d_params, fake)
  loss = losses.discriminator_loss(real_logits, fake_logits)
  return loss, {"d_loss": loss, "d_real": jnp.mean(real_logits), "d_fake": jnp.mean(fake_logits)}


def d_step(state: GANState, real: jax.Array, rng: jax.Array, *, gan: GAN
           ) -> tuple[GANState, dict[str, jax.Array]]:
  """One discriminator update on L_D (+ γ/2·R1) with a fresh fake batch of ``len(real)``.

  Args:
    state: the GAN state; only D's parameters and optimizer state change.
    real: (B, H, W, C) real images in [-1, 1].
    rng: a key for this step.
  """
  fake = generated_constants(state, rng, real.shape[0], gan=gan)
  return d_update(state, functools.partial(d_adversarial_loss, real=real, fake=fake, gan=gan),
                  gan=gan, r1_images=real)


def g_update(state: GANState,
             loss_fn: Callable[[PyTree], tuple[jax.Array, tuple[PyTree, dict[str, jax.Array]]]],
             *, gan: GAN) -> tuple[GANState, dict[str, jax.Array]]:
  """One optimizer update of G on ``loss_fn(g_params) -> (loss, (g_batch_stats, metrics))``.

  G's parameters, optimizer state and ``g_batch_stats`` (those ``loss_fn`` returns) change; the
  EMA does not (:func:`ema_update`).
  """
  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(state.g_params)
  updates, g_opt_state = gan.g_optimizer.update(grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  return state.replace(g_params=g_params, g_batch_stats=batch_stats,
                       g_opt_state=g_opt_state), metrics


def ema_update(state: GANState, *, gan: GAN) -> GANState:
  """θ_EMA ← β·θ_EMA + (1 − β)·θ_G with β = ``gan.ema_decay``; with β = 0, θ_EMA = θ_G."""
  if gan.ema_decay > 0:
    ema = jax.tree.map(lambda e, p: gan.ema_decay * e + (1.0 - gan.ema_decay) * p,
                       state.g_ema_params, state.g_params)
  else:
    ema = state.g_params
  return state.replace(g_ema_params=ema)


def g_step(state: GANState, batch_size: int, rng: jax.Array, *, gan: GAN,
           regularizer: Callable[[PyTree], tuple[jax.Array, dict[str, jax.Array]]] | None = None
           ) -> tuple[GANState, dict[str, jax.Array]]:
  """One generator update on the non-saturating L_G; updates BatchNorm statistics and EMA.

  ``regularizer(g_params) -> (R, metrics)``, if given, is added to the loss: the update minimises
  L_G + R (e.g. an EWC penalty or a repulsion term). ``g_loss`` stays the adversarial part L_G;
  the metrics then also hold ``g_total`` = L_G + R and the regularizer's own metrics.

  The running BatchNorm statistics serve inference-mode sampling, which uses θ_EMA: with the EMA on
  they are updated from a forward pass of the *EMA* generator on the same z (training-mode passes
  normalise by batch statistics and never read them). Statistics of θ_G paired with the weights
  θ_EMA gave blurred, collapsed samples (classifier-feature FID 358 against 151 without EMA).
  """
  z = gan.sample_latents(rng, batch_size)
  stats_before = state.g_batch_stats

  def loss_fn(g_params):
    fake, batch_stats = gan.generate_train(g_params, state.g_batch_stats, z)
    adversarial = losses.generator_loss(gan.d_logits(state.d_params, fake))
    if regularizer is None:
      return adversarial, (batch_stats, {"g_loss": adversarial})
    reg, reg_metrics = regularizer(g_params)
    total = adversarial + reg
    return total, (batch_stats, {**reg_metrics, "g_loss": adversarial, "g_total": total})

  state, metrics = g_update(state, loss_fn, gan=gan)
  state = ema_update(state, gan=gan)
  if gan.ema_decay > 0:
    _, ema_stats = gan.generate_train(state.g_ema_params, stats_before, z)
    state = state.replace(g_batch_stats=ema_stats)
  return state, metrics


def train_step(state: GANState, real: jax.Array, rng: jax.Array, *, gan: GAN
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """One GAN training step: a D update, then a G update against the new D; step += 1."""
  state, d_metrics = d_step(state, real, jax.random.fold_in(rng, 0), gan=gan)
  state, g_metrics = g_step(state, real.shape[0], jax.random.fold_in(rng, 1), gan=gan)
  return state.replace(step=state.step + 1), {**d_metrics, **g_metrics}


def make_train_step(config, gan: GAN
                    ) -> Callable[[GANState, jax.Array, jax.Array], tuple[GANState, dict]]:
  """The training step of ``config.model``: ``step(state, real, rng) -> (state, metrics)``.

  'stylegan2': :func:`jaxunlearn.train.stylegan2.train_step` (lazy R1, path length, style
  mixing; settings from ``config.stylegan2_reg``); any other model: :func:`train_step`.
  """
  if config.model == "stylegan2":
    from jaxunlearn.train import stylegan2  # pylint: disable=g-import-not-at-top
    return stylegan2.make_train_step(config, gan)
  return functools.partial(train_step, gan=gan)


def make_gan(config) -> GAN:
  """Builds the :class:`GAN` collaborator from a config (see experiments/configs).

  ``config.model``: 'dcgan' (widths, G's transposed-convolution form and the convolution backend
  from ``config.dcgan``; configs saved before these existed mean "custom_vjp" and "xla") or 'stylegan2' (at the model
  resolution, style_dim = ``config.latent_dim``; ``config.stylegan2`` gives n_mlp,
  channel_multiplier, channel_max and mbstd).
  """
  from jaxunlearn.images import MODEL_RESOLUTION  # pylint: disable=g-import-not-at-top
  from jaxunlearn.models import dcgan, layers, stylegan2  # pylint: disable=g-import-not-at-top
  channels = 1 if config.dataset == "mnist" else 3
  if config.model == "dcgan":
    form = config.dcgan.get("conv_transpose", "custom_vjp")
    backend = config.dcgan.get("conv_backend", "xla")
    layers.check_backend(form, backend)
    generator = dcgan.Generator(channels=channels, width=config.dcgan.g_width, conv_transpose=form,
                                conv_backend=backend)
    discriminator = dcgan.Discriminator(width=config.dcgan.d_width, conv_backend=backend)
  elif config.model == "stylegan2":
    sg = config.stylegan2
    widths = {"channel_multiplier": sg.channel_multiplier, "channel_max": sg.channel_max}
    generator = stylegan2.Generator(resolution=MODEL_RESOLUTION, img_channels=channels,
                                    style_dim=config.latent_dim, n_mlp=sg.n_mlp, **widths)
    discriminator = stylegan2.Discriminator(mbstd=sg.mbstd, **widths)
  else:
    raise UserInputError(f"unknown model {config.model!r}; valid: 'dcgan', 'stylegan2'")
  opt = config.optimizer
  make_tx = lambda: optax.adam(opt.learning_rate, b1=opt.b1, b2=opt.b2)
  return GAN(generator=generator, discriminator=discriminator,
             g_optimizer=make_tx(), d_optimizer=make_tx(), latent_dim=config.latent_dim,
             r1_gamma=config.r1_gamma, ema_decay=config.ema_decay)
