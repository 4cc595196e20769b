"""GAN losses on raw discriminator logits l (shared by training and both methods).

ℓ(l, y) = softplus(l) − y·l is binary cross-entropy with logits, so ℓ(l, 1) = softplus(−l)
("real") and ℓ(l, 0) = softplus(l) ("fake").
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def bce_with_logits(logits: jax.Array, target: float | jax.Array) -> jax.Array:
  """Elementwise ℓ(l, y) = softplus(l) − y·l; shape of ``logits``."""
  return jax.nn.softplus(logits) - target * logits


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """L_D = mean ℓ(D(x), 1) + mean ℓ(D(G(z)), 0)."""
  return jnp.mean(bce_with_logits(real_logits, 1.0)) + jnp.mean(bce_with_logits(fake_logits, 0.0))


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating L_G = mean softplus(−D(G(z)))."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def r1_penalty(logit_fn: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """R1 = mean_i ‖∇_x D(x_i)‖² over real images x_i (N, H, W, C); multiply by γ/2."""
  grads = jax.grad(lambda x: jnp.sum(logit_fn(x)))(real)
  return jnp.mean(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))
