"""StyleGAN2 (Karras et al., CVPR 2020) in Flax Linen, laid out as rosinality/stylegan2-pytorch.

The structure, initialisation and parameter names follow rosinality's ``model.py`` (MIT licence;
the importer is ``third_party/rosinality_stylegan2.py``) so a checkpoint maps leaf by leaf.
Images are NHWC; every weight is stored in JAX's layout (linear ``(in, out)``, conv ``(k, k, in,
out)``).

Symbols: z the latent (N, style_dim), w = f(z) the intermediate latent (style), A the learned
affine map ("modulation") w -> s with s the per-input-channel style (N, C_in), W a conv weight,
d the demodulation coefficient (N, C_out), B the noise maps.

Generator G(z):
  mapping    w = f(z): PixelNorm, then ``n_mlp`` EqualLinear + FusedLeakyReLU layers, lr_mul 0.01.
  synthesis  constant 4x4 input -> StyledConv (``conv1``) -> ToRGB (``to_rgb1``); then for each
             resolution 8, 16, ..., R: StyledConv with 2x upsampling (``convs_{2j}``), StyledConv
             (``convs_{2j+1}``), ToRGB (``to_rgbs_{j}``) added to the 2x-upsampled skip image.
             Every layer reads the same w (no style mixing). The output is the ToRGB sum, (N, R, R,
             img_channels), *not* squashed by tanh (as rosinality): roughly in [-1, 1] once trained.
  StyledConv = modulated/demodulated 3x3 conv: s = A(w); W'_{o,i,k} = W_{o,i,k}·s_i;
             d_o = 1/sqrt(Σ_{i,k} W'_{o,i,k}² + 1e-8); y = d ⊙ conv(x, W'); then y + β·B (a
             learned per-layer strength β, zero at init) and FusedLeakyReLU. It is computed in the
             equivalent non-fused form y = d ⊙ conv(x ⊙ s, W) (one shared W per batch, which XLA
             runs faster than rosinality's grouped per-sample convolution; equal up to rounding).
             Upsampling: the transposed 3x3 conv with stride 2 followed by a [1,3,3,1] blur.
  ToRGB    = modulated 1x1 conv without demodulation + bias; the skip image is upsampled with
             upfirdn2d and the [1,3,3,1] kernel.

Discriminator D(x): ConvLayer 1x1 from the image, residual blocks (two 3x3 ConvLayers, the second
  one blur + stride-2 conv; a blur + stride-2 1x1 skip; sum / sqrt(2)) down to 4x4, optional
  minibatch-stddev, a 3x3 ConvLayer, then two EqualLinear layers to one raw logit per image (N,).

Equalized learning rate: every weight is stored ~ N(0, 1) (÷ lr_mul for the mapping network) and
multiplied at run time by lr_mul/sqrt(fan_in); biases by lr_mul. FusedLeakyReLU is
sqrt(2)·leaky_relu(x + b, 0.2).

Variable collections. ``params`` holds every trained parameter. ``batch_stats`` holds the
generator's *non-trained* variables (it is the collection :class:`jaxunlearn.train.gan.GAN` keeps
apart from the parameters: BatchNorm statistics for the DCGAN, here StyleGAN2's fixed noise maps
``synthesis/noise_{i}``, each (1, H, W, 1), drawn N(0, 1) at init like rosinality's ``noises``
buffers), and the path-length running mean ā (``pl_mean``, a float32 scalar, 0 at init;
rosinality's ``mean_path_length``), which only :mod:`jaxunlearn.train.stylegan2`'s path-length
regularizer updates. G always uses the fixed noise maps (rosinality's ``randomize_noise=False``),
never fresh noise, so each sample depends only on its own latent and ``train`` has no effect.

Channel widths: rosinality's table {4..32: 512, 64: 256·m, 128: 128·m, 256: 64·m, 512: 32·m,
1024: 16·m} with m = ``channel_multiplier``, each capped at ``channel_max`` (a cap of 8–64 keeps
32px MNIST models small).

Uncertainty: written from rosinality's ``model.py`` at commit bef283a ("Updated SWAGAN"); older and
forked versions of that file differ (e.g. forks with a 16x16 first layer), and the importer only
accepts the layout described here.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.models.layers import conv_transpose

_DIMS = ("NHWC", "HWIO", "NHWC")
BLUR_KERNEL = (1.0, 3.0, 3.0, 1.0)
_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}

PL_MEAN = "pl_mean"
"""The generator's ``batch_stats`` key of the path-length running mean ā (a float32 scalar)."""

SYNTHESIS_CONVS_REGEX = r"^synthesis/convs_\d+/"
"""The EWC parameter set S of the official Adapt-then-Unlearn code (spec §3.2), as a regex for
``jaxunlearn.methods.ewc.path_filter_from_regex`` / ``config.ewc.param_filter``: every leaf of the
synthesis StyledConvs ``convs_*`` (modulation affine A, conv weight W, noise strength β, activation
bias). The mapping network, the 4x4 ``conv1``, the constant input and the ToRGB layers are left
out."""


def check_resolution(resolution: int) -> int:
  """Returns log2(resolution); raises ValueError unless it is a power of two in [8, 1024]."""
  if resolution not in _BASE_CHANNELS or resolution < 8:
    raise ValueError(f"StyleGAN2 resolution must be a power of two in [8, 1024], got {resolution}")
  return resolution.bit_length() - 1


def channel_widths(resolution: int, channel_multiplier: int = 2, channel_max: int = 512
                   ) -> dict[int, int]:
  """{r: channels} for r = 4, 8, ..., resolution (rosinality's table, capped at ``channel_max``)."""
  log_size = check_resolution(resolution)
  widths = {}
  for i in range(2, log_size + 1):
    r = 2 ** i
    widths[r] = min(_BASE_CHANNELS[r] * (channel_multiplier if r >= 64 else 1), channel_max)
  return widths


def num_ws(resolution: int) -> int:
  """Number of per-layer styles the synthesis network reads: 2·log2(R) − 2 (rosinality n_latent)."""
  return 2 * check_resolution(resolution) - 2


def noise_shapes(resolution: int) -> list[tuple[int, int, int, int]]:
  """Shapes (1, r, r, 1) of the fixed noise maps, one per StyledConv: 4, 8, 8, 16, 16, ..., R, R."""
  return [(1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), 1)
          for i in range(2 * check_resolution(resolution) - 3)]


def make_kernel(taps: tuple[float, ...] = BLUR_KERNEL) -> np.ndarray:
  """The separable FIR kernel outer(k, k) / sum: (len(k), len(k)), summing to 1."""
  k = np.asarray(taps, np.float32)
  k = np.outer(k, k)
  return k / k.sum()


def upfirdn2d(x: jax.Array, kernel: np.ndarray, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> jax.Array:
  """Upsample, pad, FIR-filter and downsample each channel (rosinality's ``upfirdn2d``).

  Inserts ``up - 1`` zeros after every pixel, pads (pad0, pad1) on both spatial axes (negative
  values crop), convolves every channel with ``kernel`` (a true convolution: the kernel is
  flipped) and keeps every ``down``-th pixel.

  Args:
    x: (N, H, W, C).
    kernel: (kh, kw) filter.
  Returns:
    (N, (H·up + pad0 + pad1 − kh) // down + 1, ..., C).
  """
  c = x.shape[-1]
  p0, p1 = pad
  spatial = (p0, p1 + up - 1, up - 1)
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), spatial, spatial, (0, 0, 0)))
  k = jnp.asarray(kernel[::-1, ::-1], x.dtype)
  w = jnp.tile(k[:, :, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(x, w, (down, down), "VALID", dimension_numbers=_DIMS,
                                      feature_group_count=c)


def _blur_down_pad(kernel_size: int, taps: int = len(BLUR_KERNEL), factor: int = 2
                   ) -> tuple[int, int]:
  """Blur padding before a stride-``factor`` k x k conv (rosinality's downsample branch)."""
  p = (taps - factor) + (kernel_size - 1)
  return (p + 1) // 2, p // 2


def _blur_up_pad(kernel_size: int, taps: int = len(BLUR_KERNEL), factor: int = 2
                 ) -> tuple[int, int]:
  """Blur padding after a stride-``factor`` transposed k x k conv (rosinality's upsample branch)."""
  p = (taps - factor) - (kernel_size - 1)
  return (p + 1) // 2 + factor - 1, p // 2 + 1


def upsample_2x(x: jax.Array) -> jax.Array:
  """ToRGB skip upsampling: (N, H, W, C) -> (N, 2H, 2W, C), upfirdn2d with 4·[1,3,3,1] kernel."""
  p = len(BLUR_KERNEL) - 2
  return upfirdn2d(x, make_kernel() * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))


def fused_leaky_relu(x: jax.Array, bias: jax.Array | None = None) -> jax.Array:
  """FusedLeakyReLU: sqrt(2)·leaky_relu(x + b, 0.2) (b broadcast over the last axis)."""
  if bias is not None:
    x = x + bias
  return nn.leaky_relu(x, 0.2) * math.sqrt(2.0)


def pixel_norm(z: jax.Array) -> jax.Array:
  """z / sqrt(mean(z², last axis) + 1e-8): (N, D) -> (N, D)."""
  return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_features: int = 1) -> jax.Array:
  """Appends the minibatch standard deviation feature maps: (N, H, W, C) -> (N, H, W, C + F).

  As rosinality: G = min(N, group_size) and N must be a multiple of G; sample n is grouped with
  samples n ± k·N/G; per group and feature, the std over the group (biased, + 1e-8 inside the
  root) is averaged over H, W and the channel slice, and broadcast to every member.
  """
  n, h, w, c = x.shape
  g = min(n, group_size)
  if n % g:
    raise ValueError(f"minibatch-stddev needs a batch that is a multiple of {g}, got {n}")
  y = x.reshape(g, n // g, h, w, num_features, c // num_features)
  y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)            # (N/G, H, W, F, C/F)
  y = jnp.tile(jnp.mean(y, axis=(1, 2, 4)), (g, 1))  # (N, F): row n is group n mod N/G
  return jnp.concatenate([x, jnp.broadcast_to(y[:, None, None, :], (n, h, w, num_features))], -1)


def _standard_normal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  return jax.random.normal(key, shape, dtype)


class EqualLinear(nn.Module):
  """y = x · (W·lr_mul/sqrt(in)) + b·lr_mul, optionally through FusedLeakyReLU: (N, in) -> (N, out).

  W (in, out) is stored ~ N(0, 1)/lr_mul; b is initialised to ``bias_init``.
  """
  features: int
  lr_mul: float = 1.0
  bias_init: float = 0.0
  activation: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    weight = self.param("weight", lambda k, s: _standard_normal(k, s) / self.lr_mul,
                        (fan_in, self.features))
    bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
    y = x @ (weight * (self.lr_mul / math.sqrt(fan_in)))
    bias = bias * self.lr_mul
    return fused_leaky_relu(y, bias) if self.activation else y + bias


class ModulatedConv2d(nn.Module):
  """Modulated (and optionally demodulated) k x k conv: x (N, H, W, C_in), w (N, style_dim).

  Returns (N, H, W, features), or (N, 2H, 2W, features) with ``upsample``. The weight W (k, k,
  C_in, C_out) is stored ~ N(0, 1) and scaled by 1/sqrt(C_in·k²); s = A(w) with A an EqualLinear
  whose bias starts at 1 (``modulation``).
  """
  features: int
  kernel_size: int = 3
  demodulate: bool = True
  upsample: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    c_in, k = x.shape[-1], self.kernel_size
    weight = self.param("weight", _standard_normal, (k, k, c_in, self.features))
    weight = weight * (1.0 / math.sqrt(c_in * k * k))
    s = EqualLinear(c_in, bias_init=1.0, name="modulation")(w)     # (N, C_in)
    x = x * s[:, None, None, :]
    if self.upsample:
      # Transposed conv, stride 2, no padding: (H - 1)·2 + k, then the blur back to 2H.
      x = conv_transpose(x, jnp.swapaxes(weight, 2, 3), 2, ((0, 0), (0, 0)))
      x = upfirdn2d(x, make_kernel() * 4, pad=_blur_up_pad(k))
    else:
      x = jax.lax.conv_general_dilated(x, weight, (1, 1), ((k // 2, k // 2),) * 2,
                                       dimension_numbers=_DIMS)
    if self.demodulate:
      d = jax.lax.rsqrt(jnp.square(s) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + 1e-8)
      x = x * d[:, None, None, :]                                 # d: (N, C_out)
    return x


class NoiseInjection(nn.Module):
  """x + β·B with a learned scalar strength β (``weight``, shape (1,), zero at init)."""

  @nn.compact
  def __call__(self, x: jax.Array, noise: jax.Array) -> jax.Array:
    return x + self.param("weight", nn.initializers.zeros, (1,)) * noise


class FusedLeakyReLU(nn.Module):
  """sqrt(2)·leaky_relu(x + b, 0.2) with a learned per-channel bias b (``bias``)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return fused_leaky_relu(x, self.param("bias", nn.initializers.zeros, (x.shape[-1],)))


class StyledConv(nn.Module):
  """Modulated/demodulated 3x3 conv, noise injection, FusedLeakyReLU (rosinality's StyledConv)."""
  features: int
  upsample: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array) -> jax.Array:
    """x (N, H, W, C_in), w (N, style_dim), noise (1, H', W', 1) -> (N, H', W', features)."""
    x = ModulatedConv2d(self.features, 3, upsample=self.upsample, name="conv")(x, w)
    x = NoiseInjection(name="noise")(x, noise)
    return FusedLeakyReLU(name="activate")(x)


class ToRGB(nn.Module):
  """Modulated 1x1 conv (no demodulation) + bias, plus the 2x-upsampled skip image."""
  img_channels: int

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, skip: jax.Array | None = None) -> jax.Array:
    """x (N, H, W, C), w (N, style_dim), skip (N, H/2, W/2, C_img) -> (N, H, W, C_img)."""
    y = ModulatedConv2d(self.img_channels, 1, demodulate=False, name="conv")(x, w)
    y = y + self.param("bias", nn.initializers.zeros, (self.img_channels,))
    return y if skip is None else y + upsample_2x(skip)


class ConstantInput(nn.Module):
  """The learned constant input, (1, 4, 4, C) ~ N(0, 1) at init, repeated over the batch."""
  channels: int

  @nn.compact
  def __call__(self, batch: int) -> jax.Array:
    const = self.param("input", _standard_normal, (1, 4, 4, self.channels))
    return jnp.broadcast_to(const, (batch, 4, 4, self.channels))


class MappingNetwork(nn.Module):
  """w = f(z): PixelNorm, then ``n_mlp`` EqualLinear layers ``style_1..`` with FusedLeakyReLU."""
  style_dim: int = 128
  n_mlp: int = 8
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """z (N, style_dim) -> w (N, style_dim)."""
    x = pixel_norm(z)
    for i in range(1, self.n_mlp + 1):
      x = EqualLinear(self.style_dim, lr_mul=self.lr_mul, activation=True, name=f"style_{i}")(x)
    return x


class SynthesisNetwork(nn.Module):
  """The synthesis network g(w): per-layer styles (N, num_ws(R), style_dim) -> (N, R, R, C).

  The fixed noise maps live in the ``batch_stats`` collection as ``noise_{i}`` (see the module
  docstring); they are drawn from the ``params`` RNG at init.
  """
  resolution: int = 32
  img_channels: int = 1
  channel_multiplier: int = 2
  channel_max: int = 512

  @nn.compact
  def __call__(self, ws: jax.Array) -> jax.Array:
    widths = channel_widths(self.resolution, self.channel_multiplier, self.channel_max)
    noises = [self.variable("batch_stats", f"noise_{i}",
                            lambda s: _standard_normal(self.make_rng("params"), s), shape).value
              for i, shape in enumerate(noise_shapes(self.resolution))]
    x = ConstantInput(widths[4], name="input")(ws.shape[0])
    x = StyledConv(widths[4], name="conv1")(x, ws[:, 0], noises[0])
    skip = ToRGB(self.img_channels, name="to_rgb1")(x, ws[:, 1])
    for j, r in enumerate(sorted(widths)[1:]):
      i = 2 * j + 1
      x = StyledConv(widths[r], upsample=True, name=f"convs_{i - 1}")(x, ws[:, i], noises[i])
      x = StyledConv(widths[r], name=f"convs_{i}")(x, ws[:, i + 1], noises[i + 1])
      skip = ToRGB(self.img_channels, name=f"to_rgbs_{j}")(x, ws[:, i + 2], skip)
    return skip


class Generator(nn.Module):
  """StyleGAN2 generator G: z (N, style_dim) -> images (N, resolution, resolution, img_channels).

  ``mapping`` (f) and ``synthesis`` (g) are submodules, reachable with
  ``apply(..., method=lambda m, z: m.mapping(z))`` (e.g. for path-length regularisation and
  style mixing). ``pl_mean`` (``batch_stats``) is the path-length running mean ā; G's output does
  not depend on it.
  """
  resolution: int = 32
  img_channels: int = 1
  style_dim: int = 128
  n_mlp: int = 8
  channel_multiplier: int = 2
  channel_max: int = 512
  lr_mlp: float = 0.01

  def setup(self):
    self.mapping = MappingNetwork(self.style_dim, self.n_mlp, self.lr_mlp)
    self.synthesis = SynthesisNetwork(self.resolution, self.img_channels, self.channel_multiplier,
                                      self.channel_max)
    self.pl_mean = self.variable("batch_stats", PL_MEAN, jnp.zeros, (), jnp.float32)

  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    """G(z) = g(f(z)) with the same w at every layer; ``train`` has no effect (interface only)."""
    del train
    w = self.mapping(z)
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws(self.resolution), w.shape[-1]))
    return self.synthesis(ws)


class ConvLayer(nn.Module):
  """Equalized k x k conv (+ bias) (+ FusedLeakyReLU); ``downsample``: blur then stride 2.

  (N, H, W, C_in) -> (N, H, W, features), or (N, H/2, W/2, features) with ``downsample``.
  """
  features: int
  kernel_size: int
  downsample: bool = False
  bias: bool = True
  activate: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c_in, k = x.shape[-1], self.kernel_size
    weight = self.param("weight", _standard_normal, (k, k, c_in, self.features))
    weight = weight * (1.0 / math.sqrt(c_in * k * k))
    if self.downsample:
      x = upfirdn2d(x, make_kernel(), pad=_blur_down_pad(k))
      stride, pad = 2, 0
    else:
      stride, pad = 1, k // 2
    x = jax.lax.conv_general_dilated(x, weight, (stride, stride), ((pad, pad),) * 2,
                                     dimension_numbers=_DIMS)
    b = self.param("bias", nn.initializers.zeros, (self.features,)) if self.bias else None
    if self.activate:
      return fused_leaky_relu(x, b)
    return x if b is None else x + b


class ResBlock(nn.Module):
  """(conv1 3x3 -> conv2 3x3 down) + skip (1x1 down, no bias, linear), divided by sqrt(2)."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C_in) -> (N, H/2, W/2, features)."""
    out = ConvLayer(x.shape[-1], 3, name="conv1")(x)
    out = ConvLayer(self.features, 3, downsample=True, name="conv2")(out)
    skip = ConvLayer(self.features, 1, downsample=True, bias=False, activate=False, name="skip")(x)
    return (out + skip) / math.sqrt(2.0)


class Discriminator(nn.Module):
  """StyleGAN2 residual discriminator D: (N, R, R, C) -> (N,) raw logits (R from the input).

  ``mbstd``: append the minibatch-stddev feature before the final conv (rosinality always does;
  off by default here). With it, D's score for an image depends on the other images of its
  group (the batch must be a multiple of min(N, ``mbstd_group_size``)): membership inference and
  any per-sample score must know this. Off, each logit depends on its own image only. A
  rosinality checkpoint's D needs ``mbstd=True`` (its final conv has one extra input channel).
  """
  channel_multiplier: int = 2
  channel_max: int = 512
  mbstd: bool = False
  mbstd_group_size: int = 4
  mbstd_num_features: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, resolution = x.shape[0], x.shape[1]
    widths = channel_widths(resolution, self.channel_multiplier, self.channel_max)
    x = ConvLayer(widths[resolution], 1, name="convs_0")(x)
    for i, r in enumerate(sorted(widths, reverse=True)[:-1]):
      x = ResBlock(widths[r // 2], name=f"convs_{i + 1}")(x)
    if self.mbstd:
      x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_features)
    x = ConvLayer(widths[4], 3, name="final_conv")(x)
    x = EqualLinear(widths[4], activation=True, name="final_linear_0")(x.reshape(n, -1))
    return EqualLinear(1, name="final_linear_1")(x)[:, 0]
