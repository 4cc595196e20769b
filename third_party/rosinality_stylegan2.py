"""Import of rosinality-format StyleGAN2 checkpoints into :mod:`jaxunlearn.models.stylegan2` trees.

Format (rosinality/stylegan2-pytorch, MIT licence, Copyright (c) 2019 Kim Seonghyeon; see
third_party/README.md): a ``.pt`` file holding a dict whose ``g`` / ``g_ema`` entries are state
dicts of its ``Generator`` and ``d`` of its ``Discriminator`` (other entries, e.g. the optimizer
states and ``args``, are ignored). No code of that repository is copied here: this module renames
and transposes arrays.

Layout changes: torch linear weights (out, in) -> (in, out); conv weights (out, in, k, k) and
modulated conv weights (1, out, in, k, k) -> (k, k, in, out); NCHW buffers (the constant input, the
noise maps) -> NHWC; D's first EqualLinear reads the 4x4 features flattened as (H, W, C) instead
of (C, H, W), so its input rows are permuted. Blur/upsample kernel buffers are checked against the
[1, 3, 3, 1] kernel and dropped. Every key must be used exactly once; anything missing, unknown or
of the wrong shape is a :class:`~jaxunlearn.errors.UserInputError`.

Loading uses only ``torch.load(path, map_location="cpu", weights_only=True)`` (no pickled code is
run). torch is an optional dependency (``pip install torch``), imported only when a file is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.errors import UserInputError
from jaxunlearn.models import stylegan2

StateDict = Mapping[str, np.ndarray]
"""A torch state dict converted to NumPy: parameter/buffer name -> array (torch layout)."""

NETWORKS = ("g", "g_ema", "d")


class _Reader:
  """Takes arrays out of a state dict by name; reports missing and unused keys."""

  def __init__(self, state_dict: StateDict, what: str):
    self._arrays = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}
    self._unused = set(self._arrays)
    self._what = what

  def has(self, key: str) -> bool:
    return key in self._arrays

  def take(self, key: str, ndim: int) -> np.ndarray:
    if key not in self._arrays:
      raise UserInputError(f"rosinality {self._what}: missing key {key!r}")
    value = self._arrays[key]
    if value.ndim != ndim:
      raise UserInputError(f"rosinality {self._what}: {key!r} has shape {value.shape}, "
                           f"expected {ndim} dimensions")
    self._unused.discard(key)
    return value

  def check_kernel(self, key: str, expected: np.ndarray) -> None:
    if not np.allclose(self.take(key, 2), expected, atol=1e-6):
      raise UserInputError(f"rosinality {self._what}: {key!r} is not the [1, 3, 3, 1] blur kernel "
                           "this importer supports")

  def finish(self) -> None:
    if self._unused:
      raise UserInputError(f"rosinality {self._what}: unexpected keys {sorted(self._unused)}")


def _linear(r: _Reader, prefix: str) -> dict[str, np.ndarray]:
  return {"weight": r.take(f"{prefix}.weight", 2).T, "bias": r.take(f"{prefix}.bias", 1)}


def _conv(weight: np.ndarray) -> np.ndarray:
  """torch (out, in, k, k) -> (k, k, in, out)."""
  return weight.transpose(2, 3, 1, 0)


def _modulated_conv(r: _Reader, prefix: str) -> dict[str, Any]:
  return {"weight": _conv(r.take(f"{prefix}.weight", 5)[0]),
          "modulation": _linear(r, f"{prefix}.modulation")}


def _styled_conv(r: _Reader, prefix: str, upsample: bool) -> dict[str, Any]:
  if upsample:
    r.check_kernel(f"{prefix}.conv.blur.kernel", stylegan2.make_kernel() * 4)
  return {"conv": _modulated_conv(r, f"{prefix}.conv"),
          "noise": {"weight": r.take(f"{prefix}.noise.weight", 1)},
          "activate": {"bias": r.take(f"{prefix}.activate.bias", 1)}}


def _to_rgb(r: _Reader, prefix: str, upsample: bool) -> dict[str, Any]:
  if upsample:
    r.check_kernel(f"{prefix}.upsample.kernel", stylegan2.make_kernel() * 4)
  return {"conv": _modulated_conv(r, f"{prefix}.conv"),
          "bias": r.take(f"{prefix}.bias", 4).reshape(-1)}


def _count(state_dict: StateDict, pattern: str) -> int:
  return sum(1 for k in state_dict if re.fullmatch(pattern, k))


def _widths_kwargs(widths: dict[int, int], resolution: int, what: str) -> dict[str, int]:
  """(channel_multiplier, channel_max) for which stylegan2.channel_widths gives ``widths``."""
  channel_max = max(widths.values())
  below_cap = [w / stylegan2.channel_widths(r, 1)[r] for r, w in widths.items()
               if r >= 64 and w < channel_max]
  multiplier = int(below_cap[0]) if below_cap else 2
  kwargs = {"channel_multiplier": multiplier, "channel_max": channel_max}
  if stylegan2.channel_widths(resolution, **kwargs) != widths:
    raise UserInputError(f"rosinality {what}: channel widths {widths} are not rosinality's table "
                         "times a channel multiplier with a cap")
  return kwargs


def generator_kwargs(state_dict: StateDict) -> dict[str, int]:
  """Keyword arguments of the :class:`stylegan2.Generator` that a rosinality ``g`` state dict fits.

  Returns resolution, img_channels, style_dim, n_mlp, channel_multiplier and channel_max (the
  mapping's lr multiplier is not stored in a state dict: rosinality's default 0.01 is assumed).
  """
  n_mlp = _count(state_dict, r"style\.\d+\.weight")
  num_to_rgbs = _count(state_dict, r"to_rgbs\.\d+\.conv\.weight")
  if n_mlp == 0 or "conv1.conv.weight" not in state_dict:
    raise UserInputError("rosinality generator: no 'style.*' / 'conv1.*' keys; not a rosinality "
                         "StyleGAN2 generator state dict")
  resolution = 2 ** (num_to_rgbs + 2)
  widths = {4: int(np.shape(state_dict["conv1.conv.weight"])[1])}
  for j in range(num_to_rgbs):
    widths[2 ** (j + 3)] = int(np.shape(state_dict[f"convs.{2 * j}.conv.weight"])[1])
  return {"resolution": resolution,
          "img_channels": int(np.shape(state_dict["to_rgb1.conv.weight"])[1]),
          "style_dim": int(np.shape(state_dict["style.1.weight"])[1]), "n_mlp": n_mlp,
          **_widths_kwargs(widths, resolution, "generator")}


def discriminator_kwargs(state_dict: StateDict) -> dict[str, Any]:
  """Keyword arguments of the :class:`stylegan2.Discriminator` a rosinality ``d`` state dict fits.

  Returns channel_multiplier, channel_max and ``mbstd=True`` (rosinality's D always uses it), plus
  ``resolution`` (the input size it expects; D itself reads it from its input).
  """
  num_blocks = _count(state_dict, r"convs\.\d+\.conv1\.0\.weight")
  if num_blocks == 0 or "final_conv.0.weight" not in state_dict:
    raise UserInputError("rosinality discriminator: no 'convs.*.conv1' / 'final_conv' keys; not a "
                         "rosinality StyleGAN2 discriminator state dict")
  resolution = 2 ** (num_blocks + 2)
  widths = {resolution: int(np.shape(state_dict["convs.0.0.weight"])[0])}
  for k in range(1, num_blocks + 1):
    widths[resolution >> k] = int(np.shape(state_dict[f"convs.{k}.conv2.1.weight"])[0])
  return {"resolution": resolution, "mbstd": True,
          **_widths_kwargs(widths, resolution, "discriminator")}


def convert_generator(state_dict: StateDict) -> dict[str, Any]:
  """A rosinality ``Generator`` state dict -> ``{"params": ..., "batch_stats": ...}``.

  The result is the variables of ``stylegan2.Generator(**generator_kwargs(state_dict))``;
  ``batch_stats`` holds the fixed noise maps (rosinality's ``noises.noise_{i}`` buffers) and
  the path-length running mean ā = 0 (rosinality does not save it and restarts it at 0).
  """
  kwargs = generator_kwargs(state_dict)
  r = _Reader(state_dict, "generator")
  mapping = {f"style_{i}": _linear(r, f"style.{i}") for i in range(1, kwargs["n_mlp"] + 1)}
  synthesis = {"input": {"input": r.take("input.input", 4).transpose(0, 2, 3, 1)},
               "conv1": _styled_conv(r, "conv1", upsample=False),
               "to_rgb1": _to_rgb(r, "to_rgb1", upsample=False)}
  num_blocks = stylegan2.check_resolution(kwargs["resolution"]) - 2
  for j in range(num_blocks):
    synthesis[f"convs_{2 * j}"] = _styled_conv(r, f"convs.{2 * j}", upsample=True)
    synthesis[f"convs_{2 * j + 1}"] = _styled_conv(r, f"convs.{2 * j + 1}", upsample=False)
    synthesis[f"to_rgbs_{j}"] = _to_rgb(r, f"to_rgbs.{j}", upsample=True)
  noises = {f"noise_{i}": r.take(f"noises.noise_{i}", 4).transpose(0, 2, 3, 1)
            for i in range(len(stylegan2.noise_shapes(kwargs["resolution"])))}
  r.finish()
  variables = {"params": {"mapping": mapping, "synthesis": synthesis},
               "batch_stats": {"synthesis": noises, stylegan2.PL_MEAN: np.zeros((), np.float32)}}
  _check_shapes(stylegan2.Generator(**kwargs), variables, (1, kwargs["style_dim"]), "generator")
  return variables


def _check_shapes(module, variables: dict[str, Any], input_shape: tuple[int, ...], what: str
                  ) -> None:
  """Raises UserInputError unless ``variables`` has exactly the tree and shapes ``module`` inits."""
  expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
  shapes = lambda tree: {jax.tree_util.keystr(p, simple=True, separator="/"): tuple(a.shape)
                         for p, a in jax.tree_util.tree_flatten_with_path(dict(tree))[0]}
  got, want = shapes(variables), shapes(expected)
  bad = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
  if bad:
    raise UserInputError(f"rosinality {what}: arrays do not fit the StyleGAN2 they describe: "
                         + ", ".join(f"{k} {got.get(k)} (expected {want.get(k)})" for k in bad[:5]))


def _conv_layer(r: _Reader, prefix: str, downsample: bool, bias: bool = True) -> dict[str, Any]:
  """A rosinality ConvLayer (an nn.Sequential: [Blur], EqualConv2d, [FusedLeakyReLU])."""
  i = 0
  if downsample:
    r.check_kernel(f"{prefix}.0.kernel", stylegan2.make_kernel())
    i = 1
  out = {"weight": _conv(r.take(f"{prefix}.{i}.weight", 4))}
  if bias:
    out["bias"] = r.take(f"{prefix}.{i + 1}.bias", 1)
  return out


def convert_discriminator(state_dict: StateDict) -> dict[str, Any]:
  """A rosinality ``Discriminator`` state dict -> ``{"params": ...}``.

  The result is the variables of ``stylegan2.Discriminator(mbstd=True, channel_multiplier=...,
  channel_max=...)`` (see :func:`discriminator_kwargs`).
  """
  kwargs = discriminator_kwargs(state_dict)
  r = _Reader(state_dict, "discriminator")
  num_blocks = stylegan2.check_resolution(kwargs["resolution"]) - 2
  params = {"convs_0": _conv_layer(r, "convs.0", downsample=False)}
  for k in range(1, num_blocks + 1):
    params[f"convs_{k}"] = {"conv1": _conv_layer(r, f"convs.{k}.conv1", downsample=False),
                            "conv2": _conv_layer(r, f"convs.{k}.conv2", downsample=True),
                            "skip": _conv_layer(r, f"convs.{k}.skip", downsample=True, bias=False)}
  params["final_conv"] = _conv_layer(r, "final_conv", downsample=False)
  first = _linear(r, "final_linear.0")
  rows, out = first["weight"].shape
  # torch flattens (C, 4, 4); we flatten (4, 4, C): permute the input rows accordingly.
  first["weight"] = (first["weight"].reshape(rows // 16, 4, 4, out).transpose(1, 2, 0, 3)
                     .reshape(rows, out))
  params["final_linear_0"] = first
  params["final_linear_1"] = _linear(r, "final_linear.1")
  r.finish()
  variables = {"params": params}
  resolution = kwargs.pop("resolution")
  in_channels = params["convs_0"]["weight"].shape[2]
  _check_shapes(stylegan2.Discriminator(**kwargs), variables,
                (4, resolution, resolution, in_channels), "discriminator")
  return variables


def load_rosinality_checkpoint(path: str) -> dict[str, dict[str, Any]]:
  """Reads a rosinality ``.pt`` checkpoint: ``{"g": ..., "g_ema": ..., "d": ...}``.

  Each value is the variables dict of :func:`convert_generator` / :func:`convert_discriminator`;
  only the networks present in the file are returned (at least one of ``g``, ``g_ema``, ``d``).

  Raises:
    ImportError: torch is not installed.
    UserInputError: the file holds none of the networks, or a state dict does not fit.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading a rosinality StyleGAN2 checkpoint needs PyTorch, an optional "
                      "dependency of jaxunlearn: pip install torch") from e
  checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  present = [k for k in NETWORKS if isinstance(checkpoint, Mapping) and k in checkpoint]
  if not present:
    raise UserInputError(f"{path}: no {', '.join(NETWORKS)} entry; not a rosinality StyleGAN2 "
                         "checkpoint")
  convert = {"g": convert_generator, "g_ema": convert_generator, "d": convert_discriminator}
  return {k: convert[k]({name: t.detach().cpu().numpy() for name, t in checkpoint[k].items()})
          for k in present}
