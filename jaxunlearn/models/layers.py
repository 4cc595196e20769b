"""Layers with a faster formulation on XLA:CPU.

A transposed convolution is the adjoint (VJP) of a strided convolution. XLA differentiates
the plain lhs-dilated form very slowly on CPU, so :func:`conv_transpose` is written with a
``jax.custom_vjp`` whose backward pass uses only *ordinary strided convolutions*:

  y = Cᵀ(x; w)                       (forward: transpose of y' -> conv(y', w, stride))
  ∂L/∂x = C(g; w)                    (a strided conv of the output cotangent g)
  ∂L/∂w = ∂_w <x, C(g; w)>           (the weight gradient of that strided conv)

The second line holds because <Cᵀ(x; w), g> = <x, C(g; w)> for every x and g.

On a 1 x 1 input without padding (the DCGAN generator's first layer, z -> 4 x 4) the transposed
convolution is an outer product, y[n, h, w, o] = Σ_c x[n, c]·w[h, w, o, c], and is computed as that
einsum: XLA:CPU would otherwise run a 4 x 4 convolution over an input padded from 1 x 1 to 7 x 7
(benchmarks/NOTES.md, attempt 20: the train step 5-14 % faster in a same-process A/B).

``form="plain"`` computes the same function the way ``flax.linen.ConvTranspose`` does: one
lhs-dilated convolution, differentiated by XLA's own rules. It exists so that the benchmark can time
both formulations in one run (kind ``gan_train_step_plain_convtranspose``); models default to
``"custom_vjp"``.

``backend="onednn"`` computes the same custom-VJP formulation, and the discriminator's strided
convolutions (:func:`conv_general_dilated`), with oneDNN's kernels through XLA's FFI
(:mod:`jaxunlearn.ops.onednn`); the default ``"xla"`` leaves them to XLA:CPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.errors import UserInputError
from jaxunlearn.ops import onednn, xla_conv

FORMS = ("custom_vjp", "plain")
BACKENDS = ("xla", "onednn")


def check_backend(form: str, backend: str) -> None:
  """Raises UserInputError unless ``form`` and ``backend`` name a valid combination."""
  if form not in FORMS:
    raise UserInputError(f"unknown transposed-convolution form {form!r}; valid: {', '.join(FORMS)}")
  if backend not in BACKENDS:
    raise UserInputError(f"unknown convolution backend {backend!r}; valid: {', '.join(BACKENDS)}")
  if backend == "onednn" and form != "custom_vjp":
    raise UserInputError("conv_backend 'onednn' computes the 'custom_vjp' form only; "
                         f"got conv_transpose {form!r}")


def conv_transpose(x: jax.Array, w: jax.Array, stride: int, padding,
                   form: str = "custom_vjp", backend: str = "xla") -> jax.Array:
  """Transposed convolution Cᵀ(x; w).

  Args:
    x: (N, H, W, C_in).
    w: (k, k, C_out, C_in), the kernel of the strided convolution being transposed.
    stride: upsampling factor.
    padding: ((top, bottom), (left, right)) padding of that strided convolution.
    form: one of :data:`FORMS`: ``"custom_vjp"`` (fast on XLA:CPU) or ``"plain"`` (autodiff
      of the lhs-dilated convolution); same values up to float32 rounding.
    backend: one of :data:`BACKENDS`; ``"onednn"`` (custom_vjp form only) runs the convolutions
      with oneDNN.
  Returns:
    (N, (H-1)·stride + k - pads, ..., C_out).
  """
  check_backend(form, backend)
  if form == "plain":
    return xla_conv.transpose_of_strided_conv(x, w, stride, padding)
  padding = tuple(map(tuple, padding))
  if x.shape[1:3] == (1, 1) and padding == ((0, 0), (0, 0)):
    return jnp.einsum("nc,hwoc->nhwo", x[:, 0, 0, :], w)
  if backend == "onednn":
    return onednn.conv_transpose(x, w, stride, padding)
  return _conv_transpose_by_vjp(x, w, stride, padding)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding, *,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, precision=None) -> jax.Array:
  """``lax.conv_general_dilated`` for ``flax.linen.Conv`` computed by oneDNN.

  Takes the NHWC / HWIO convolutions of the DCGAN discriminator: equal strides, explicit or
  ``"VALID"`` padding, no dilation, no groups; anything else raises UserInputError.
  """
  del precision  # oneDNN computes in float32
  strides = tuple(window_strides)
  expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, xla_conv.DIMS)
  if dimension_numbers is not None and dimension_numbers != expected:
    raise UserInputError(f"conv_backend 'onednn' takes NHWC/HWIO convolutions; got {dimension_numbers}")
  if (len(strides) != 2 or strides[0] != strides[1] or feature_group_count != 1
      or any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))):
    raise UserInputError("conv_backend 'onednn' takes 2-D convolutions with equal strides, no "
                         f"dilation and no groups; got strides {strides}, "
                         f"groups {feature_group_count}")
  if isinstance(padding, str):
    if padding != "VALID":
      raise UserInputError(f"conv_backend 'onednn' takes explicit or 'VALID' padding; got {padding!r}")
    padding = ((0, 0), (0, 0))
  return onednn.conv(lhs, rhs, strides[0], tuple(map(tuple, padding)))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_transpose_by_vjp(x: jax.Array, w: jax.Array, stride: int, padding) -> jax.Array:
  """:func:`conv_transpose` as the linear transpose of a strided conv, with its own VJP."""
  return xla_conv.transpose_of_strided_conv(x, w, stride, padding)


def _conv_transpose_fwd(x, w, stride, padding):
  return _conv_transpose_by_vjp(x, w, stride, padding), (x, w)


def _conv_transpose_bwd(stride, padding, residuals, g):
  x, w = residuals
  grad_x = xla_conv.strided_conv(g, w, stride, padding)
  _, weight_vjp = jax.vjp(lambda w_: xla_conv.strided_conv(g, w_, stride, padding), w)
  (grad_w,) = weight_vjp(x)
  return grad_x, grad_w


_conv_transpose_by_vjp.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


class ConvTranspose(nn.Module):
  """A k x k transposed convolution by ``stride`` built on :func:`conv_transpose`.

  ``padding`` is the padding of the strided convolution it transposes; ``k=4, stride=2,
  padding=1`` doubles the resolution, ``k=4, stride=1, padding=0`` maps 1x1 -> 4x4. ``form``
  picks the formulation (:data:`FORMS`) and ``backend`` the kernels (:data:`BACKENDS`); the
  parameters are the same for all.
  """
  features: int
  kernel_size: int = 4
  stride: int = 2
  padding: int = 1
  use_bias: bool = True
  kernel_init: Any = nn.initializers.normal(0.02)
  form: str = "custom_vjp"
  backend: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, p = self.kernel_size, self.padding
    w = self.param("kernel", self.kernel_init, (k, k, self.features, x.shape[-1]), jnp.float32)
    y = conv_transpose(x, w.astype(x.dtype), self.stride, ((p, p), (p, p)), self.form,
                       self.backend)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(x.dtype)
    return y
