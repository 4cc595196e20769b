"""The FID Inception-v3 of pytorch-fid, up to pool3, in Flax Linen (evaluation.md §3).

The network is the TensorFlow FID Inception graph (``inception-2015-12-05``, Szegedy et al., CVPR
2016) as pytorch-fid (https://github.com/mseitzer/pytorch-fid) ports it: torchvision's
``Inception3`` with the blocks patched as its ``FIDInceptionA/C/E_1/E_2``. Re-implemented here
(no code copied); the weights come from a local file through
``third_party/fid_inception.py``. The differences from torchvision's Inception-v3:

* the 3×3 stride-1 average pools in the A, C and E blocks exclude the zero padding from the
  mean (``count_include_pad=False``, TensorFlow's behaviour);
* the pool branch of the last E block (``Mixed_7c``) is a 3×3 stride-1 *max* pool (padding 1).

Every convolution is ``BasicConv``: convolution without bias, BatchNorm (ε = 1e-3) in inference
mode (running statistics), ReLU. The output is pool3, the global average of ``Mixed_7c``:
features of shape (N, 2048).

Module names follow torchvision's (``Conv2d_1a_3x3``, ``Mixed_5b/branch1x1/{conv,bn}``, ...),
so a torch state-dict key maps to a Flax path by replacing dots with tree levels.

Input convention (documented here because the metric code never rescales on its own):
images float32 NHWC in [-1, 1] with 1 or 3 channels, the project's single image convention.

1. Bilinear resize to ``resolution`` × ``resolution`` (299 for FID) with ``jax.image.resize``,
   ``antialias=False``: half-pixel centres and edge clamping, the same map as
   ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` that pytorch-fid
   uses (the tests check this against torch).
2. Grayscale is replicated to 3 channels (as pytorch-fid's loader converts images to RGB).
3. No rescaling: pytorch-fid resizes images in [0, 1] and then maps them by x ↦ 2x − 1 to the
   [-1, 1] the network was trained on. Bilinear weights sum to 1, so resizing commutes with that
   affine map, and images already in [-1, 1] go in unchanged.

Convolutions run at ``Precision.HIGHEST`` (no TF32/bf16 passes on accelerators), so features
agree with the float32 reference on every device.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

FEATURE_DIM = 2048  # pool3
FID_RESOLUTION = 299  # pytorch-fid's input size
MIN_RESOLUTION = 75  # smallest input the stride-2 stages accept (Mixed_7a gives 1×1)
BN_EPSILON = 1e-3


class BasicConv(nn.Module):
  """Conv (no bias) → BatchNorm (ε = 1e-3, running statistics) → ReLU; torch BasicConv2d.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: stride of both spatial axes.
    padding: zero padding (ph, pw) on both sides of each axis.
  """
  features: int
  kernel_size: tuple[int, int] = (1, 1)
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=((ph, ph), (pw, pw)),
                use_bias=False, precision=jax.lax.Precision.HIGHEST, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  """3×3 stride-1 average, padding 1 excluded from the count (TensorFlow's average pool)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
  """3×3 max pool: stride 1 with padding 1 (−∞), or stride 2 without padding."""
  padding = ((1, 1), (1, 1)) if stride == 1 else "VALID"
  return nn.max_pool(x, (3, 3), (stride, stride), padding)


def _conv(name: str, features: int, kernel: int | tuple[int, int] = 1, strides: int = 1,
          padding: int | tuple[int, int] = 0) -> BasicConv:
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = (padding, padding) if isinstance(padding, int) else padding
  return BasicConv(features, kernel, strides, padding, name=name)


class InceptionA(nn.Module):
  """35×35 block (Mixed_5b-d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg-pool→1×1 (pool_features)."""
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = _conv("branch1x1", 64)(x)
    b5 = _conv("branch5x5_2", 64, 5, padding=2)(_conv("branch5x5_1", 48)(x))
    b3 = _conv("branch3x3dbl_1", 64)(x)
    b3 = _conv("branch3x3dbl_3", 96, 3, padding=1)(_conv("branch3x3dbl_2", 96, 3, padding=1)(b3))
    bp = _conv("branch_pool", self.pool_features)(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35→17 (Mixed_6a): 3×3/2 | 1×1→3×3→3×3/2 | max-pool 3×3/2."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = _conv("branch3x3", 384, 3, strides=2)(x)
    bd = _conv("branch3x3dbl_1", 64)(x)
    bd = _conv("branch3x3dbl_3", 96, 3, strides=2)(_conv("branch3x3dbl_2", 96, 3, padding=1)(bd))
    return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class InceptionC(nn.Module):
  """17×17 block (Mixed_6b-e) with factorised 7×7 convolutions of width ``channels_7x7``."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    row, col = {"kernel": (1, 7), "padding": (0, 3)}, {"kernel": (7, 1), "padding": (3, 0)}
    b1 = _conv("branch1x1", 192)(x)
    b7 = _conv("branch7x7_1", c7)(x)
    b7 = _conv("branch7x7_3", 192, **col)(_conv("branch7x7_2", c7, **row)(b7))
    bd = _conv("branch7x7dbl_1", c7)(x)
    for i, (width, shape) in enumerate([(c7, col), (c7, row), (c7, col), (192, row)], start=2):
      bd = _conv(f"branch7x7dbl_{i}", width, **shape)(bd)
    bp = _conv("branch_pool", 192)(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17→8 (Mixed_7a): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max-pool 3×3/2."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = _conv("branch3x3_2", 320, 3, strides=2)(_conv("branch3x3_1", 192)(x))
    b7 = _conv("branch7x7x3_1", 192)(x)
    b7 = _conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7)
    b7 = _conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7)
    b7 = _conv("branch7x7x3_4", 192, 3, strides=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class InceptionE(nn.Module):
  """8×8 block (Mixed_7b/c) with split 1×3/3×1 outputs; ``max_pool`` selects FIDInceptionE_2.

  Attributes:
    max_pool: the pool branch uses a 3×3 stride-1 max pool (Mixed_7c of the FID graph) instead
      of the padding-excluding average pool (Mixed_7b).
  """
  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = _conv("branch1x1", 320)(x)
    b3 = _conv("branch3x3_1", 384)(x)
    b3 = jnp.concatenate([_conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3),
                          _conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3)], axis=-1)
    bd = _conv("branch3x3dbl_2", 384, 3, padding=1)(_conv("branch3x3dbl_1", 448)(x))
    bd = jnp.concatenate([_conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd),
                          _conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd)], axis=-1)
    pooled = _max_pool_3x3(x, 1) if self.max_pool else _avg_pool_3x3(x)
    bp = _conv("branch_pool", 192)(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def preprocess(images: jax.Array, resolution: int = FID_RESOLUTION) -> jax.Array:
  """Images (N, H, W, 1 | 3) in [-1, 1] -> (N, resolution, resolution, 3) network input.

  Bilinear resize without antialiasing (= torch ``F.interpolate(bilinear, align_corners=False)``),
  then grayscale replicated to RGB; values are not rescaled (see the module docstring).
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must have shape (N, H, W, 1 or 3); got {images.shape}")
  n, _, _, c = images.shape
  x = jax.image.resize(images.astype(jnp.float32), (n, resolution, resolution, c), "bilinear",
                       antialias=False)
  return jnp.broadcast_to(x, (n, resolution, resolution, 3)) if c == 1 else x


class FIDInceptionV3(nn.Module):
  """pytorch-fid's FID Inception-v3: images (N, H, W, 1 | 3) in [-1, 1] -> pool3 (N, 2048).

  Attributes:
    resolution: the side the inputs are resized to; 299 for FID (pytorch-fid), smaller values
      (≥ 75) only to test the network cheaply.
  """
  resolution: int = FID_RESOLUTION

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    if self.resolution < MIN_RESOLUTION:
      raise ValueError(f"resolution {self.resolution} is below {MIN_RESOLUTION}")
    x = preprocess(images, self.resolution)           # 299×299×3
    x = _conv("Conv2d_1a_3x3", 32, 3, strides=2)(x)   # 149×149×32
    x = _conv("Conv2d_2a_3x3", 32, 3)(x)              # 147×147×32
    x = _conv("Conv2d_2b_3x3", 64, 3, padding=1)(x)   # 147×147×64
    x = _max_pool_3x3(x, 2)                           # 73×73×64
    x = _conv("Conv2d_3b_1x1", 80)(x)                 # 73×73×80
    x = _conv("Conv2d_4a_3x3", 192, 3)(x)             # 71×71×192
    x = _max_pool_3x3(x, 2)                           # 35×35×192
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(pool_features, name=name)(x)     # 35×35×256, ×288, ×288
    x = InceptionB(name="Mixed_6a")(x)                # 17×17×768
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)                # 17×17×768
    x = InceptionD(name="Mixed_7a")(x)                # 8×8×1280
    x = InceptionE(name="Mixed_7b")(x)                # 8×8×2048
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)  # 8×8×2048
    return jnp.mean(x, axis=(1, 2))                   # pool3: 2048


@functools.cache
def variable_shapes() -> dict:
  """The variables tree {'params', 'batch_stats'} of :class:`FIDInceptionV3` as ShapeDtypeStructs.

  Shapes do not depend on the input size; the smallest valid one keeps the trace cheap.
  """
  model = FIDInceptionV3(MIN_RESOLUTION)
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, MIN_RESOLUTION, MIN_RESOLUTION, 3), jnp.float32))
