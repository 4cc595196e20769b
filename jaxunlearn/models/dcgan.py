"""DCGAN generator and discriminator at 32x32 (cascaded_unlearning.md §7).

Both are Flax Linen modules: parameters are pytrees passed to ``apply``.

  G: z (N, latent_dim) -> ConvT 1->4 (8w), BN, ReLU -> ConvT 4->8 (4w) -> 8->16 (2w) -> 16->32 (C),
     tanh; images (N, 32, 32, C) in [-1, 1]. ``w = width`` (64 gives the spec's 512/256/128).
  D: x (N, 32, 32, C) -> Conv 32->16 (2w), LReLU -> 16->8 (4w) -> 8->4 (8w) -> Conv 4x4 VALID -> 1;
     one raw logit per image (N,). D has no batch statistics: its score for an image never
     depends on the rest of the batch, which membership inference relies on.

G's BatchNorm state lives in the ``batch_stats`` collection: ``train=True`` uses batch
statistics and returns updated running averages (momentum 0.9); ``train=False`` uses the
running statistics, so each sample depends only on its own latent.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models import layers
from jaxunlearn.models.layers import ConvTranspose

_normal = nn.initializers.normal(0.02)


def _bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class Generator(nn.Module):
  """DCGAN generator G_θ: (N, latent_dim) -> (N, 32, 32, channels) in [-1, 1]."""
  channels: int = 1
  width: int = 64
  dtype: jnp.dtype = jnp.float32
  conv_transpose: str = "custom_vjp"  # layers.FORMS; "plain" only to benchmark the other form
  conv_backend: str = "xla"  # layers.BACKENDS; "onednn": oneDNN kernels (same function, same params)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    x = z.astype(self.dtype)[:, None, None, :]
    for i, (mult, stride, pad) in enumerate(((8, 1, 0), (4, 2, 1), (2, 2, 1))):
      x = ConvTranspose(self.width * mult, stride=stride, padding=pad, use_bias=False,
                        form=self.conv_transpose, backend=self.conv_backend,
                        name=f"ConvTranspose_{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       scale_init=_bn_scale_init, dtype=self.dtype, name=f"BatchNorm_{i}")(x)
      x = nn.relu(x)
    x = ConvTranspose(self.channels, stride=2, padding=1, form=self.conv_transpose,
                      backend=self.conv_backend, name="ConvTranspose_3")(x)
    return jnp.tanh(x).astype(jnp.float32)


class Discriminator(nn.Module):
  """DCGAN discriminator D_φ: (N, 32, 32, C) -> (N,) raw logits, no batch statistics."""
  width: int = 64
  dtype: jnp.dtype = jnp.float32
  conv_backend: str = "xla"  # layers.BACKENDS

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    layers.check_backend("custom_vjp", self.conv_backend)
    onednn = self.conv_backend == "onednn"
    conv = {"conv_general_dilated": layers.conv_general_dilated} if onednn else {}
    x = x.astype(self.dtype)
    for i, mult in enumerate((2, 4, 8)):
      x = nn.Conv(self.width * mult, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                  kernel_init=_normal, dtype=self.dtype, name=f"Conv_{i}", **conv)(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(1, (4, 4), padding="VALID", kernel_init=_normal, dtype=self.dtype, name="Conv_3",
                **conv)(x)
    return x.reshape(x.shape[0]).astype(jnp.float32)
