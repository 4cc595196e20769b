"""Convolutions computed by oneDNN through XLA's FFI (``conv_backend="onednn"``).

In jaxlib 0.10, XLA:CPU runs convolutions with Eigen or YNNPACK; neither flag nor fusion setting
reaches oneDNN's convolution kernels (experiments/benchmarks/NOTES.md, attempt 24), which PyTorch
uses. This module calls them directly: ``onednn_conv.cc`` defines three XLA FFI handlers (forward,
backward-data, backward-weights of one strided convolution C), built with g++ against oneDNN on
first use and registered as custom calls. :func:`conv` and :func:`conv_transpose` are the two
functions the DCGAN needs, and :func:`conv_weight_grad` the third; each has a ``jax.custom_vjp``
made of the other two, so all are differentiable to any order (g: the output cotangent):

  conv:              y = C(x; w)              ∂/∂x = Cᵀ(g; w)      ∂/∂w = W(x, g)
  conv_transpose:    y = Cᵀ(x; w)             ∂/∂x = C(g; w)       ∂/∂w = W(g, x)
  conv_weight_grad:  W(x, dy) = ∂_w <dy, C(x; w)>   ∂/∂x = Cᵀ(dy; g)   ∂/∂dy = C(x; g)

Shapes: x (N, H, W, C) NHWC, w (KH, KW, C_in, C_out) HWIO of C, float32 only.

Requirements (optional; the default ``"xla"`` backend needs none): g++ and oneDNN's CPU build with
GNU OpenMP, ``pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0`` (or
``JAXUNLEARN_ONEDNN_ROOT`` pointing at a folder with ``include/oneapi/dnnl`` and ``lib/libdnnl.so``).
The library is built into ``$JAXUNLEARN_CACHE_DIR`` (default ``~/.cache/jaxunlearn``)/ops, keyed by
the source and jaxlib version. oneDNN's threads are OpenMP's (``OMP_NUM_THREADS``, default: every
core), so use one JAX CPU device per process with this backend: under a multi-device mesh XLA cannot
split a custom call by batch and gathers its operands onto every device (correct, but slow).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.errors import UserInputError
from jaxunlearn.ops import xla_conv
from jaxunlearn.ops.xla_conv import Padding

_SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
_HANDLERS = {"fwd": "JaxunlearnOnednnConvForward",
             "bwd_data": "JaxunlearnOnednnConvBackwardData",
             "bwd_weights": "JaxunlearnOnednnConvBackwardWeights"}
_INSTALL_HINT = ("pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0 (or set "
                 "JAXUNLEARN_ONEDNN_ROOT to a folder with include/oneapi/dnnl and lib/libdnnl.so)")


class OnednnUnavailable(UserInputError):
  """``conv_backend="onednn"`` was asked for where oneDNN or a C++ compiler is missing."""


def onednn_root() -> pathlib.Path:
  """The folder holding oneDNN's ``include/`` and ``lib/``; raises OnednnUnavailable if absent."""
  root = pathlib.Path(os.environ.get("JAXUNLEARN_ONEDNN_ROOT", sys.prefix))
  if not (root / "include/oneapi/dnnl/dnnl.hpp").is_file() or not (root / "lib/libdnnl.so").exists():
    raise OnednnUnavailable(f"conv_backend 'onednn' needs oneDNN's headers and library under "
                            f"{root}: {_INSTALL_HINT}")
  return root


def _cache_dir() -> pathlib.Path:
  base = os.environ.get("JAXUNLEARN_CACHE_DIR") or os.path.expanduser("~/.cache/jaxunlearn")
  return pathlib.Path(base) / "ops"


def build_library() -> pathlib.Path:
  """Compiles ``onednn_conv.cc`` (once per source and jaxlib version) and returns the .so path."""
  root = onednn_root()
  compiler = shutil.which(os.environ.get("CXX", "g++"))
  if compiler is None:
    raise OnednnUnavailable("conv_backend 'onednn' compiles a small C++ library on first use "
                            "and needs g++ (or $CXX) on PATH")
  key = hashlib.sha256(_SOURCE.read_bytes() + jax.__version__.encode() + str(root).encode())
  target = _cache_dir() / f"libjaxunlearn_onednn_conv-{key.hexdigest()[:16]}.so"
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    built = pathlib.Path(tmp) / target.name
    command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{jax.ffi.include_dir()}",
               f"-I{root / 'include'}", str(_SOURCE), f"-L{root / 'lib'}", "-ldnnl",
               f"-Wl,-rpath,{root / 'lib'}", "-o", str(built)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      raise RuntimeError(f"building the oneDNN convolution library failed:\n{' '.join(command)}\n"
                         f"{result.stderr[-4000:]}")
    os.replace(built, target)  # atomic: a concurrent build never leaves a half-written library
  return target


@functools.cache
def register() -> None:
  """Builds and loads the library and registers its handlers as XLA:CPU custom-call targets."""
  library = ctypes.cdll.LoadLibrary(str(build_library()))
  for name, symbol in _HANDLERS.items():
    jax.ffi.register_ffi_target(_target(name), jax.ffi.pycapsule(getattr(library, symbol)),
                                platform="cpu")


def _target(name: str) -> str:
  return f"jaxunlearn_onednn_conv_{name}"


def _call(name: str, out_shape: tuple[int, ...], a: jax.Array, b: jax.Array, stride: int,
          padding: Padding) -> jax.Array:
  register()
  (top, bottom), (left, right) = padding
  attrs = {"stride_h": stride, "stride_w": stride, "pad_top": top, "pad_bottom": bottom,
           "pad_left": left, "pad_right": right}
  call = jax.ffi.ffi_call(_target(name), jax.ShapeDtypeStruct(out_shape, jnp.float32),
                          vmap_method="sequential")
  return call(a, b, **{k: np.int64(v) for k, v in attrs.items()})


def _check(x: jax.Array, w: jax.Array) -> None:
  if x.dtype != jnp.float32 or w.dtype != jnp.float32:
    raise UserInputError(f"conv_backend 'onednn' computes in float32 only; got {x.dtype}, {w.dtype}")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x: jax.Array, w: jax.Array, stride: int, padding: Padding) -> jax.Array:
  """C(x; w): x (N, H, W, C_in), w (KH, KW, C_in, C_out) -> (N, H', W', C_out)."""
  _check(x, w)
  out_shape = xla_conv.conv_output_shape(x.shape, w.shape, stride, padding)
  return _call("fwd", out_shape, x, w, stride, padding)


def _conv_fwd(x, w, stride, padding):
  return conv(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, residuals, g):
  x, w = residuals
  return (conv_transpose(g, w, stride, padding),
          conv_weight_grad(x, g, stride, padding, w.shape[:2]))


conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose(x: jax.Array, w: jax.Array, stride: int, padding: Padding) -> jax.Array:
  """Cᵀ(x; w): x (N, H, W, C_out), w (KH, KW, C_in, C_out) of C -> (N, H', W', C_in).

  With a single result channel (C_in = 1: the generator's image layer) oneDNN 3.2's backward-data
  kernel is 2-3x slower than XLA's (benchmarks/NOTES.md, attempt 25), so that forward is left to
  XLA (:func:`xla_conv.transpose_of_strided_conv`); its VJP still runs on oneDNN.
  """
  _check(x, w)
  if w.shape[2] == 1:
    return xla_conv.transpose_of_strided_conv(x, w, stride, padding)
  out_shape = xla_conv.transpose_output_shape(x.shape, w.shape, stride, padding)
  return _call("bwd_data", out_shape, x, w, stride, padding)


def _conv_transpose_fwd(x, w, stride, padding):
  return conv_transpose(x, w, stride, padding), (x, w)


def _conv_transpose_bwd(stride, padding, residuals, g):
  x, w = residuals
  return conv(g, w, stride, padding), conv_weight_grad(g, x, stride, padding, w.shape[:2])


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_weight_grad(x: jax.Array, dy: jax.Array, stride: int, padding: Padding,
                     kernel_size: tuple[int, int]) -> jax.Array:
  """∂_w <dy, C(x; w)>: x (N, H, W, C_in), dy (N, H', W', C_out) -> (KH, KW, C_in, C_out).

  Bilinear in (x, dy), so its own VJP is two convolutions: <ĝ, ∂_w <dy, C(x; w)>> = <dy, C(x; ĝ)>
  gives ∂/∂dy = C(x; ĝ) and ∂/∂x = Cᵀ(dy; ĝ). With it, every op of this module is differentiable
  to any order (R1 penalties take the gradient of an input gradient).
  """
  _check(x, dy)
  w_shape = (*kernel_size, x.shape[-1], dy.shape[-1])
  return _call("bwd_weights", w_shape, x, dy, stride, padding)


def _conv_weight_grad_fwd(x, dy, stride, padding, kernel_size):
  return conv_weight_grad(x, dy, stride, padding, kernel_size), (x, dy)


def _conv_weight_grad_bwd(stride, padding, kernel_size, residuals, g):
  del kernel_size
  x, dy = residuals
  return conv_transpose(dy, g, stride, padding), conv(x, g, stride, padding)


conv_weight_grad.defvjp(_conv_weight_grad_fwd, _conv_weight_grad_bwd)
