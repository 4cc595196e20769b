"""XLA's strided convolution C(y; w) and its transpose Cᵀ, shared by both convolution backends.

Shapes: y (N, H, W, C_in) NHWC, w (KH, KW, C_in, C_out) HWIO, padding ((top, bottom), (left,
right)); C maps (N, H, W, C_in) -> (N, H', W', C_out) and Cᵀ maps back.
"""

from __future__ import annotations

import jax

DIMS = ("NHWC", "HWIO", "NHWC")

Padding = tuple[tuple[int, int], tuple[int, int]]


def strided_conv(y: jax.Array, w: jax.Array, stride: int, padding: Padding) -> jax.Array:
  """C(y; w): (N, H, W, C_in) x (KH, KW, C_in, C_out) -> (N, H', W', C_out)."""
  return jax.lax.conv_general_dilated(y, w, (stride, stride), padding, dimension_numbers=DIMS)


def conv_output_shape(x_shape, w_shape, stride: int, padding: Padding) -> tuple[int, int, int, int]:
  """Shape of C(x; w): (N, (H + pads - KH) // stride + 1, ..., C_out)."""
  n, h, wd, _ = x_shape
  kh, kw, _, c_out = w_shape
  (top, bottom), (left, right) = padding
  return n, (h + top + bottom - kh) // stride + 1, (wd + left + right - kw) // stride + 1, c_out


def transpose_output_shape(x_shape, w_shape, stride: int,
                           padding: Padding) -> tuple[int, int, int, int]:
  """Shape of Cᵀ(x; w) for x (N, H, W, C_out): (N, (H - 1)·stride + KH - pads, ..., C_in)."""
  n, h, wd, _ = x_shape
  kh, kw, c_in, _ = w_shape
  (top, bottom), (left, right) = padding
  return n, (h - 1) * stride + kh - top - bottom, (wd - 1) * stride + kw - left - right, c_in


def transpose_of_strided_conv(x: jax.Array, w: jax.Array, stride: int,
                              padding: Padding) -> jax.Array:
  """Cᵀ(x; w) as the linear transpose of C: an lhs-dilated convolution (JAX differentiates it)."""
  spec = jax.ShapeDtypeStruct(transpose_output_shape(x.shape, w.shape, stride, padding), x.dtype)
  (y,) = jax.linear_transpose(lambda y_: strided_conv(y_, w, stride, padding), spec)(x)
  return y
