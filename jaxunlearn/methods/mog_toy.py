"""The 2-D mixture-of-Gaussians toy of Adapt-then-Unlearn (spec §9, §11): 8 modes on a ring.

A small MLP GAN learns the ring; Adapt-then-Unlearn then removes some modes using a mode-assignment
predicate as the "classifier". Points are shaped (N, 1, 1, 2) so that they travel through the same
image-shaped code as real images (GAN steps, R1, sampling, feedback, selection): the toy runs the
library's Stage 1 and Stage 2 unchanged.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxunlearn import parallel
from jaxunlearn.train import gan as gan_lib

POINT_SHAPE = (1, 1, 2)


def ring_modes(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
  """(num_modes, 2) mode centres, mode k at angle 2πk/num_modes."""
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample_ring(key: jax.Array, n: int, num_modes: int = 8, radius: float = 2.0,
                std: float = 0.05) -> np.ndarray:
  """n points of the equal-weight mixture, float32 (n, 1, 1, 2)."""
  k_mode, k_noise = jax.random.split(key)
  modes = jnp.asarray(ring_modes(num_modes, radius), jnp.float32)
  centres = modes[jax.random.randint(k_mode, (n,), 0, num_modes)]
  points = centres + std * jax.random.normal(k_noise, (n, 2))
  return np.asarray(points, np.float32).reshape(n, *POINT_SHAPE)


def assign_modes(points: np.ndarray, num_modes: int = 8, radius: float = 2.0,
                 max_distance: float = 0.5) -> np.ndarray:
  """int (N,) index of the nearest mode; -1 when farther than ``max_distance`` from every mode."""
  xy = np.reshape(points, (len(points), 2))
  dist = np.linalg.norm(xy[:, None, :] - ring_modes(num_modes, radius)[None], axis=-1)
  nearest = dist.argmin(axis=1)
  return np.where(dist.min(axis=1) <= max_distance, nearest, -1)


def mode_shares(points: np.ndarray, num_modes: int = 8, **kwargs) -> np.ndarray:
  """(num_modes,) share of all points assigned to each mode (off-mode points count in none)."""
  modes = assign_modes(points, num_modes, **kwargs)
  return np.array([np.mean(modes == k) for k in range(num_modes)])


class MLPGenerator(nn.Module):
  """G_θ: z (N, latent_dim) -> points (N, 1, 1, 2); no batch statistics."""
  hidden: int = 128

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    del train  # no batch statistics: training and inference compute the same map
    x = nn.relu(nn.Dense(self.hidden)(z))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(2)(x).reshape(z.shape[0], *POINT_SHAPE)


class MLPDiscriminator(nn.Module):
  """D_φ: points (N, 1, 1, 2) -> (N,) raw logits."""
  hidden: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    return nn.Dense(1)(x)[:, 0]


def make_toy_gan(latent_dim: int = 8, hidden: int = 128, learning_rate: float = 1e-3,
                 r1_gamma: float = 0.1) -> gan_lib.GAN:
  """The toy's :class:`GAN` collaborator (Adam, betas (0.5, 0.999), R1 for stable ring coverage)."""
  tx = lambda: optax.adam(learning_rate, b1=0.5, b2=0.999)
  return gan_lib.GAN(generator=MLPGenerator(hidden), discriminator=MLPDiscriminator(hidden),
                     g_optimizer=tx(), d_optimizer=tx(), latent_dim=latent_dim, r1_gamma=r1_gamma)


def pretrain(gan: gan_lib.GAN, key: jax.Array, mesh: Mesh, num_steps: int = 2000,
             batch_size: int = 256) -> gan_lib.GANState:
  """Trains the toy GAN on fresh ring samples each step (``gan_lib.train_step``, data-parallel)."""
  init = jax.jit(functools.partial(gan.init, image_shape=POINT_SHAPE),
                 out_shardings=parallel.replicated(mesh))
  state = init(jax.random.fold_in(key, 0))
  step = parallel.jit_step(functools.partial(gan_lib.train_step, gan=gan), mesh)
  data_key, noise_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
  for t in range(num_steps):
    real = parallel.shard_batch(mesh, sample_ring(jax.random.fold_in(data_key, t), batch_size))
    state, _ = parallel.run_step(step, state, real, jax.random.fold_in(noise_key, t))
  return state
