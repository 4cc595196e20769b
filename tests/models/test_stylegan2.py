"""StyleGAN2: shapes, modulation/demodulation, equalized lr, per-sample outputs, EWC set, importer.

The importer tests build a tiny random rosinality-format checkpoint in torch and compare our
generator/discriminator with a compact torch forward written here from rosinality's model.py (its
fused grouped-convolution form, independent of our non-fused JAX code).
"""

import functools
import math
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxunlearn.errors import UserInputError
from jaxunlearn.methods import ewc
from jaxunlearn.models import stylegan2 as sg
from jaxunlearn.train import gan as gan_lib
from third_party import rosinality_stylegan2 as ros

TINY = {"resolution": 32, "style_dim": 16, "n_mlp": 2, "channel_max": 8}


# Compiling threefry draws for ~80 parameters takes seconds on CPU: the shared models below are
# initialised once, from 'unsafe_rbg' keys (their values only need to be random).
@functools.cache
def _generator(img_channels: int = 1):
  g = sg.Generator(img_channels=img_channels, **TINY)
  return g, g.init(jax.random.key(1, impl="unsafe_rbg"), jnp.zeros((1, TINY["style_dim"])))


@functools.cache
def _discriminator(mbstd: bool):
  d = sg.Discriminator(channel_max=8, mbstd=mbstd)
  return d, d.init(jax.random.key(2, impl="unsafe_rbg"), jnp.zeros((4, 32, 32, 1)))


def _latents(n: int) -> jax.Array:
  return jax.random.normal(jax.random.key(0), (n, TINY["style_dim"]))


@pytest.mark.parametrize("img_channels", [1, 3])
def test_shapes_and_collections(img_channels):
  g, g_vars = _generator(img_channels)
  x = jax.jit(g.apply)(g_vars, _latents(3))
  chex.assert_shape(x, (3, 32, 32, img_channels))
  chex.assert_tree_all_finite(x)
  noises = g_vars["batch_stats"]["synthesis"]
  assert [noises[f"noise_{i}"].shape for i in range(7)] == sg.noise_shapes(32)
  assert [s[1] for s in sg.noise_shapes(32)] == [4, 8, 8, 16, 16, 32, 32]
  flat_params = jax.tree_util.tree_flatten_with_path(g_vars["params"])[0]
  assert not any("noise_" in ewc.leaf_path(p) for p, _ in flat_params)  # noise maps: not trained
  for mbstd in (False, True):
    d = sg.Discriminator(channel_max=8, mbstd=mbstd)
    d_vars = d.init(jax.random.key(2, impl="unsafe_rbg"), x[:2])
    assert set(d_vars) == {"params"}
    chex.assert_shape(jax.jit(d.apply)(d_vars, x), (3,))  # mbstd: group min(3, 4) = 3


def test_channel_widths_follow_rosinality_table():
  assert sg.channel_widths(256, 2) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256,
                                       256: 128}
  assert sg.channel_widths(256, 1, channel_max=300) == {4: 300, 8: 300, 16: 300, 32: 300,
                                                        64: 256, 128: 128, 256: 64}
  assert sg.num_ws(32) == 8 and sg.num_ws(256) == 14
  for bad in (4, 48, 2048):
    with pytest.raises(ValueError, match="power of two"):
      sg.channel_widths(bad)


def test_modulated_conv_matches_hand_computation():
  """y[n,h,w,o] = d[n,o] Σ_{dy,dx,i} x_pad[n,h+dy,w+dx,i] W'[n,dy,dx,i,o], W' = W/√(9·C_in)·s."""
  rng = np.random.default_rng(0)
  n, size, c_in, c_out, style_dim = 2, 4, 3, 2, 5
  x = rng.normal(size=(n, size, size, c_in)).astype(np.float32)
  w = rng.normal(size=(n, style_dim)).astype(np.float32)
  weight = rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32)
  a_weight = rng.normal(size=(style_dim, c_in)).astype(np.float32)
  a_bias = (1.0 + 0.1 * rng.normal(size=c_in)).astype(np.float32)
  params = {"params": {"weight": weight, "modulation": {"weight": a_weight, "bias": a_bias}}}

  s = w @ a_weight / math.sqrt(style_dim) + a_bias                   # (N, C_in)
  mod = weight[None] / math.sqrt(9 * c_in) * s[:, None, None, :, None]  # (N, 3, 3, C_in, C_out)
  demod = 1.0 / np.sqrt(np.sum(mod ** 2, axis=(1, 2, 3)) + 1e-8)    # (N, C_out)
  x_pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  expected = np.zeros((n, size, size, c_out), np.float64)
  for b in range(n):
    for h in range(size):
      for col in range(size):
        expected[b, h, col] = np.einsum("yxi,yxio->o", x_pad[b, h:h + 3, col:col + 3], mod[b])

  for demodulate, scale in ((False, 1.0), (True, demod[:, None, None, :])):
    conv = sg.ModulatedConv2d(c_out, 3, demodulate=demodulate)
    np.testing.assert_allclose(conv.apply(params, x, w), expected * scale, rtol=1e-5, atol=1e-5)


def test_demodulation_removes_the_style_scale():
  """Scaling s by a (through A's weight and bias) scales y by a, unless demodulated."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(2, 6)), jnp.float32)
  for upsample in (False, True):
    for demodulate, power in ((True, 0), (False, 1)):
      conv = sg.ModulatedConv2d(5, 3, demodulate=demodulate, upsample=upsample)
      params = conv.init(jax.random.key(0), x, w)
      scaled = jax.tree.map_with_path(
          lambda path, a: 3.0 * a if "modulation" in ewc.leaf_path(path) else a, params)
      y, y3 = conv.apply(params, x, w), conv.apply(scaled, x, w)
      chex.assert_shape(y, (2, 16, 16, 5) if upsample else (2, 8, 8, 5))
      np.testing.assert_allclose(y3, 3.0 ** power * y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fan_in", [8, 2048])
def test_equalized_learning_rate_keeps_unit_variance(fan_in):
  """Weights stored N(0,1) (÷ lr_mul) and scaled by lr_mul/√fan_in: Var(y) ≈ 1 for any fan-in."""
  x = jax.random.normal(jax.random.key(0), (256, fan_in))
  for lr_mul in (1.0, 0.01):
    layer = sg.EqualLinear(256, lr_mul=lr_mul)
    params = layer.init(jax.random.key(1), x)
    stored = float(jnp.std(params["params"]["weight"]))
    assert abs(stored * lr_mul - 1.0) < 0.05
    assert 0.8 < float(jnp.var(layer.apply(params, x))) < 1.2
  img = jax.random.normal(jax.random.key(2), (4, 8, 8, fan_in // 8))
  conv = sg.ConvLayer(128, 3, bias=False, activate=False)
  y = conv.apply(conv.init(jax.random.key(3), img), img)[:, 1:-1, 1:-1]  # interior: no zero pad
  assert 0.8 < float(jnp.var(y)) < 1.2


def test_upfirdn2d_filters_keep_constants_and_sizes():
  x = jnp.full((1, 8, 8, 2), 2.5)
  up = sg.upsample_2x(x)
  chex.assert_shape(up, (1, 16, 16, 2))
  np.testing.assert_allclose(up[:, 2:-2, 2:-2], 2.5, rtol=1e-6)
  down = sg.upfirdn2d(x, sg.make_kernel(), down=2, pad=(1, 1))
  chex.assert_shape(down, (1, 4, 4, 2))
  np.testing.assert_allclose(down[:, 1:-1, 1:-1], 2.5, rtol=1e-6)
  impulse = jnp.zeros((1, 5, 5, 1)).at[0, 2, 2, 0].set(1.0)
  blurred = sg.upfirdn2d(impulse, sg.make_kernel(), pad=(2, 1))[0, :, :, 0]
  np.testing.assert_allclose(blurred[1:5, 1:5], sg.make_kernel(), rtol=1e-6)
  # Upsampling: the impulse lands at 2·2 = 4, padded to 6; the 4x4 filter spreads it over 3..6.
  upsampled = sg.upsample_2x(impulse)[0, :, :, 0]
  np.testing.assert_allclose(upsampled[3:7, 3:7], 4 * sg.make_kernel(), rtol=1e-6)
  np.testing.assert_allclose(jnp.sum(upsampled), 4.0, rtol=1e-6)


def test_jit_matches_eager_and_samples_are_independent():
  g, g_vars = _generator()
  z = _latents(4)
  g_vars = jax.tree.map_with_path(  # noise strengths β = 1: the fixed noise maps are in use
      lambda path, a: jnp.ones_like(a) if "noise/weight" in ewc.leaf_path(path) else a, g_vars)
  eager = g.apply(g_vars, z)
  np.testing.assert_allclose(jax.jit(g.apply)(g_vars, z), eager, rtol=1e-5, atol=1e-5)
  alone = jnp.concatenate([g.apply(g_vars, z[i:i + 1], train=True) for i in range(4)])
  np.testing.assert_allclose(alone, eager, rtol=1e-5, atol=1e-5)
  d, d_vars = _discriminator(mbstd=False)
  np.testing.assert_allclose(d.apply(d_vars, eager[:2]), d.apply(d_vars, eager)[:2], rtol=1e-5,
                             atol=1e-6)


def test_minibatch_stddev_makes_scores_batch_dependent():
  x = jax.random.normal(jax.random.key(0), (8, 32, 32, 1))
  d, d_vars = _discriminator(mbstd=True)
  other = x.at[7].set(0.0)  # sample 7 shares its group with samples 1, 3, 5 (N/G = 2)
  changed = np.abs(np.asarray(d.apply(d_vars, x) - d.apply(d_vars, other))) > 1e-6
  np.testing.assert_array_equal(changed, [False, True, False, True, False, True, False, True])
  with pytest.raises(ValueError, match="multiple of 4"):
    d.apply(d_vars, x[:6])


def test_synthesis_convs_regex_is_the_official_ewc_set():
  _, g_vars = _generator()
  keep = ewc.path_filter_from_regex(sg.SYNTHESIS_CONVS_REGEX)
  paths = [ewc.leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(g_vars["params"])[0]]
  selected = [p for p in paths if keep(p)]
  assert len(selected) == 6 * 5  # 6 StyledConvs at 32px x (W, A weight, A bias, β, bias)
  assert {p.split("/")[1] for p in selected} == {f"convs_{i}" for i in range(6)}
  assert {p.split("/")[-2] + "/" + p.split("/")[-1] for p in selected} == {
      "conv/weight", "modulation/weight", "modulation/bias", "noise/weight", "activate/bias"}
  assert not any(keep(p) for p in paths if p.startswith("mapping/") or "to_rgb" in p
                 or "/conv1/" in p or "/input/" in p)


def test_make_gan_builds_a_trainable_stylegan2():
  config = ml_collections.ConfigDict({
      "model": "stylegan2", "dataset": "mnist", "latent_dim": 16, "r1_gamma": 1.0,
      "ema_decay": 0.9,
      "stylegan2": {"n_mlp": 2, "channel_multiplier": 2, "channel_max": 8, "mbstd": False},
      "optimizer": {"learning_rate": 2e-3, "b1": 0.0, "b2": 0.99}})
  gan = gan_lib.make_gan(config)
  g, _ = _generator()
  assert gan.generator == g and gan.discriminator == sg.Discriminator(channel_max=8)
  state = gan.init(jax.random.key(0, impl="unsafe_rbg"), (32, 32, 1))  # state.rng is not used
  assert "synthesis" in state.g_batch_stats  # the fixed noise maps, not trained
  real = jax.random.normal(jax.random.key(1), (4, 32, 32, 1))
  new, metrics = jax.jit(lambda s, r: gan_lib.train_step(s, r, jax.random.key(2), gan=gan))(
      state, real)
  chex.assert_tree_all_finite(metrics)
  assert int(new.step) == 1
  chex.assert_trees_all_equal(new.g_batch_stats, state.g_batch_stats)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.g_params, state.g_params)
  assert all(jax.tree.leaves(moved))


# ---------------------------------------------------------------------------------------------
# Importer: a tiny random rosinality checkpoint and an independent torch forward.

def _torch():
  return pytest.importorskip("torch")


def _t_kernel(torch, scale=1.0):
  k = torch.tensor([1.0, 3.0, 3.0, 1.0])
  k = k[:, None] * k[None, :]
  return k / k.sum() * scale


def _t_upfirdn(torch, x, kernel, up=1, down=1, pad=(0, 0)):
  """NCHW upfirdn2d: zero insertion, zero padding, true convolution, subsampling."""
  n, c, h, w = x.shape
  x = x.reshape(n * c, 1, h, w)
  if up > 1:
    y = x.new_zeros(n * c, 1, h * up, w * up)
    y[:, :, ::up, ::up] = x
    x = y
  x = torch.nn.functional.pad(x, [pad[0], pad[1], pad[0], pad[1]])
  x = torch.nn.functional.conv2d(x, torch.flip(kernel, [0, 1])[None, None])[:, :, ::down, ::down]
  return x.reshape(n, c, x.shape[2], x.shape[3])


def _t_lrelu(torch, x, bias=None):
  if bias is not None:
    x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
  return torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2.0)


def _t_linear(torch, sd, p, x, lr_mul=1.0, act=False):
  w, b = sd[f"{p}.weight"], sd[f"{p}.bias"] * lr_mul
  y = torch.nn.functional.linear(x, w * (lr_mul / math.sqrt(w.shape[1])))
  return _t_lrelu(torch, y, b) if act else y + b


def _t_modconv(torch, sd, p, x, style, demod=True, up=False):
  """rosinality's fused ModulatedConv2d: one grouped conv with per-sample weights."""
  f = torch.nn.functional
  n, c_in, h, w = x.shape
  weight = sd[f"{p}.weight"]
  c_out, k = weight.shape[1], weight.shape[-1]
  s = _t_linear(torch, sd, f"{p}.modulation", style)
  weight = weight / math.sqrt(c_in * k * k) * s.view(n, 1, c_in, 1, 1)
  if demod:
    weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, c_out, 1, 1, 1)
  x = x.reshape(1, n * c_in, h, w)
  if up:
    weight = weight.transpose(1, 2).reshape(n * c_in, c_out, k, k)
    out = f.conv_transpose2d(x, weight, stride=2, groups=n)
    return _t_upfirdn(torch, out.view(n, c_out, *out.shape[2:]), _t_kernel(torch, 4), pad=(1, 1))
  out = f.conv2d(x, weight.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
  return out.view(n, c_out, h, w)


def _t_styled(torch, sd, p, x, style, noise, up=False):
  out = _t_modconv(torch, sd, f"{p}.conv", x, style, up=up) + sd[f"{p}.noise.weight"] * noise
  return _t_lrelu(torch, out, sd[f"{p}.activate.bias"])


def _t_to_rgb(torch, sd, p, x, style, skip=None):
  out = _t_modconv(torch, sd, f"{p}.conv", x, style, demod=False) + sd[f"{p}.bias"]
  if skip is not None:
    out = out + _t_upfirdn(torch, skip, _t_kernel(torch, 4), up=2, pad=(2, 1))
  return out


def _t_generator(torch, sd, z, n_mlp, log_size):
  w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
  for i in range(1, n_mlp + 1):
    w = _t_linear(torch, sd, f"style.{i}", w, lr_mul=0.01, act=True)
  noise = [sd[f"noises.noise_{i}"] for i in range(2 * log_size - 3)]
  x = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
  x = _t_styled(torch, sd, "conv1", x, w, noise[0])
  skip = _t_to_rgb(torch, sd, "to_rgb1", x, w)
  for j in range(log_size - 2):
    x = _t_styled(torch, sd, f"convs.{2 * j}", x, w, noise[2 * j + 1], up=True)
    x = _t_styled(torch, sd, f"convs.{2 * j + 1}", x, w, noise[2 * j + 2])
    skip = _t_to_rgb(torch, sd, f"to_rgbs.{j}", x, w, skip)
  return skip


def _t_conv_layer(torch, sd, p, x, down=False, bias=True, act=True):
  i = 1 if down else 0
  weight = sd[f"{p}.{i}.weight"]
  k = weight.shape[-1]
  if down:
    pad = 2 + (k - 1)
    x = _t_upfirdn(torch, x, _t_kernel(torch), pad=((pad + 1) // 2, pad // 2))
  out = torch.nn.functional.conv2d(x, weight / math.sqrt(weight[0].numel()),
                                   stride=2 if down else 1, padding=0 if down else k // 2)
  return _t_lrelu(torch, out, sd[f"{p}.{i + 1}.bias"] if bias else None) if act else out


def _t_discriminator(torch, sd, x, num_blocks):
  out = _t_conv_layer(torch, sd, "convs.0", x)
  for k in range(1, num_blocks + 1):
    y = _t_conv_layer(torch, sd, f"convs.{k}.conv1", out)
    y = _t_conv_layer(torch, sd, f"convs.{k}.conv2", y, down=True)
    out = (y + _t_conv_layer(torch, sd, f"convs.{k}.skip", out, True, False, False)) / math.sqrt(2)
  n, c, h, w = out.shape
  g = min(n, 4)
  std = torch.sqrt(out.view(g, -1, 1, c, h, w).var(0, unbiased=False) + 1e-8)
  std = std.mean([2, 3, 4], keepdim=True).squeeze(2).repeat(g, 1, h, w)
  out = _t_conv_layer(torch, sd, "final_conv", torch.cat([out, std], 1)).reshape(n, -1)
  out = _t_linear(torch, sd, "final_linear.0", out, act=True)
  return _t_linear(torch, sd, "final_linear.1", out)[:, 0]


def _rosinality_g(torch, style_dim, n_mlp, widths, img_channels):
  """A random state dict with rosinality Generator's keys, shapes and buffers."""
  gen = torch.Generator().manual_seed(0)
  rand = lambda *shape, scale=1.0, mean=0.0: mean + scale * torch.randn(*shape, generator=gen)
  sd = {}

  def linear(p, d_in, d_out, bias_mean=0.0, lr_mul=1.0):
    sd[f"{p}.weight"] = rand(d_out, d_in) / lr_mul
    sd[f"{p}.bias"] = rand(d_out, scale=0.1, mean=bias_mean)

  def modconv(p, c_in, c_out, k):
    sd[f"{p}.weight"] = rand(1, c_out, c_in, k, k)
    linear(f"{p}.modulation", style_dim, c_in, bias_mean=1.0)

  def styled(p, c_in, c_out, up):
    modconv(f"{p}.conv", c_in, c_out, 3)
    if up:
      sd[f"{p}.conv.blur.kernel"] = _t_kernel(torch, 4)
    sd[f"{p}.noise.weight"] = rand(1, scale=0.5)
    sd[f"{p}.activate.bias"] = rand(c_out, scale=0.1)

  def to_rgb(p, c_in, up):
    modconv(f"{p}.conv", c_in, img_channels, 1)
    sd[f"{p}.bias"] = rand(1, img_channels, 1, 1, scale=0.1)
    if up:
      sd[f"{p}.upsample.kernel"] = _t_kernel(torch, 4)

  for i in range(1, n_mlp + 1):
    linear(f"style.{i}", style_dim, style_dim, lr_mul=0.01)
  res = sorted(widths)
  sd["input.input"] = rand(1, widths[4], 4, 4)
  styled("conv1", widths[4], widths[4], False)
  to_rgb("to_rgb1", widths[4], False)
  for j, r in enumerate(res[1:]):
    styled(f"convs.{2 * j}", widths[r // 2], widths[r], True)
    styled(f"convs.{2 * j + 1}", widths[r], widths[r], False)
    to_rgb(f"to_rgbs.{j}", widths[r], True)
  for i, shape in enumerate(sg.noise_shapes(res[-1])):
    sd[f"noises.noise_{i}"] = rand(1, 1, shape[1], shape[2])
  return sd


def _rosinality_d(torch, widths, img_channels):
  """A random state dict with rosinality Discriminator's keys, shapes and buffers."""
  gen = torch.Generator().manual_seed(1)
  rand = lambda *shape, scale=1.0: scale * torch.randn(*shape, generator=gen)
  res = sorted(widths, reverse=True)
  sd = {"convs.0.0.weight": rand(widths[res[0]], img_channels, 1, 1),
        "convs.0.1.bias": rand(widths[res[0]], scale=0.1)}
  for k, r in enumerate(res[:-1], start=1):
    c_in, c_out = widths[r], widths[r // 2]
    sd.update({f"convs.{k}.conv1.0.weight": rand(c_in, c_in, 3, 3),
               f"convs.{k}.conv1.1.bias": rand(c_in, scale=0.1),
               f"convs.{k}.conv2.0.kernel": _t_kernel(torch),
               f"convs.{k}.conv2.1.weight": rand(c_out, c_in, 3, 3),
               f"convs.{k}.conv2.2.bias": rand(c_out, scale=0.1),
               f"convs.{k}.skip.0.kernel": _t_kernel(torch),
               f"convs.{k}.skip.1.weight": rand(c_out, c_in, 1, 1)})
  c4 = widths[4]
  sd.update({"final_conv.0.weight": rand(c4, c4 + 1, 3, 3),
             "final_conv.1.bias": rand(c4, scale=0.1),
             "final_linear.0.weight": rand(c4, c4 * 16), "final_linear.0.bias": rand(c4, scale=0.1),
             "final_linear.1.weight": rand(1, c4), "final_linear.1.bias": rand(1, scale=0.1)})
  return sd


# rosinality's table at 32px (all 512) capped at 8 channels.
G_WIDTHS = {4: 8, 8: 8, 16: 8, 32: 8}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  torch = _torch()
  g, g_ema = (_rosinality_g(torch, 16, 2, G_WIDTHS, 3) for _ in range(2))
  g_ema = {k: v * 0.5 if k.endswith("noise.weight") else v for k, v in g_ema.items()}
  d = _rosinality_d(torch, G_WIDTHS, 3)
  path = str(tmp_path_factory.mktemp("rosinality") / "000100.pt")
  torch.save({"g": g, "g_ema": g_ema, "d": d, "args": {"size": 32}}, path)
  return path, {"g": g, "g_ema": g_ema, "d": d}


def test_importer_generator_reproduces_the_torch_forward(checkpoint):
  torch = _torch()
  path, state_dicts = checkpoint
  loaded = ros.load_rosinality_checkpoint(path)
  assert set(loaded) == {"g", "g_ema", "d"}
  kwargs = ros.generator_kwargs(state_dicts["g"])
  assert kwargs == {"resolution": 32, "img_channels": 3, "style_dim": 16, "n_mlp": 2,
                    "channel_multiplier": 2, "channel_max": 8}
  generator = sg.Generator(**kwargs)
  z = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  for name in ("g", "g_ema"):
    ours = jax.jit(generator.apply)(loaded[name], z)
    with torch.no_grad():
      ref = _t_generator(torch, state_dicts[name], torch.from_numpy(z), 2, 5).numpy()
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_importer_discriminator_reproduces_the_torch_forward(checkpoint):
  torch = _torch()
  path, state_dicts = checkpoint
  loaded = ros.load_rosinality_checkpoint(path)
  kwargs = ros.discriminator_kwargs(state_dicts["d"])
  assert kwargs == {"resolution": 32, "mbstd": True, "channel_multiplier": 2, "channel_max": 8}
  kwargs.pop("resolution")
  x = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype(np.float32)
  ours = sg.Discriminator(**kwargs).apply(loaded["d"], x)
  with torch.no_grad():
    ref = _t_discriminator(torch, state_dicts["d"], torch.from_numpy(x.transpose(0, 3, 1, 2)), 3)
  np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_importer_rejects_bad_state_dicts(checkpoint, tmp_path, monkeypatch):
  torch = _torch()
  _, state_dicts = checkpoint
  g = {k: v.numpy() for k, v in state_dicts["g"].items()}
  missing = {k: v for k, v in g.items() if k != "convs.3.noise.weight"}
  with pytest.raises(UserInputError, match="convs.3.noise.weight"):
    ros.convert_generator(missing)
  with pytest.raises(UserInputError, match="unexpected keys.*extra"):
    ros.convert_generator({**g, "extra": np.zeros(1)})
  wrong = {**g, "convs.1.activate.bias": np.zeros(5, np.float32)}
  with pytest.raises(UserInputError, match="convs_1/activate/bias"):
    ros.convert_generator(wrong)
  blur = {**g, "convs.0.conv.blur.kernel": np.ones((4, 4), np.float32)}
  with pytest.raises(UserInputError, match="blur kernel"):
    ros.convert_generator(blur)
  other = str(tmp_path / "other.pt")
  torch.save({"model": {}}, other)
  with pytest.raises(UserInputError, match="not a rosinality"):
    ros.load_rosinality_checkpoint(other)
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ImportError, match="pip install torch"):
    ros.load_rosinality_checkpoint(other)
