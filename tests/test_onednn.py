"""conv_backend="onednn": oneDNN's convolutions through XLA's FFI equal XLA's, values and gradients.

Skipped where oneDNN's CPU build or g++ is missing (requirements.txt installs oneDNN, so CI runs it).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import mnist_dcgan
from jaxunlearn.errors import UserInputError
from jaxunlearn.models import Discriminator, Generator, conv_transpose, layers
from jaxunlearn.ops import onednn, xla_conv
from jaxunlearn.train import gan as gan_lib

try:
  onednn.register()
except onednn.OnednnUnavailable as e:
  pytest.skip(f"oneDNN backend unavailable: {e}", allow_module_level=True)

PAD = ((1, 1), (1, 1))
VALID = ((0, 0), (0, 0))


def _assert_value_and_grads_match(fn, reference, *args, atol=1e-4):
  """fn equals reference in value and in the gradients of a loss that weights every output."""
  np.testing.assert_allclose(fn(*args), reference(*args), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)) * jnp.arange(f(*a).shape[-1], dtype=jnp.float32))
  got = jax.jit(jax.grad(loss(fn), argnums=(0, 1)))(*args)
  want = jax.grad(loss(reference), argnums=(0, 1))(*args)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


# (input size, C_in, C_out, stride, padding): the discriminator's first layer (one input channel,
# whose input gradient XLA computes), its 4 x 4 VALID head (one output channel), and a stride-2 conv
# with an asymmetric padding (the general oneDNN path).
@pytest.mark.parametrize("size,c_in,c_out,stride,padding", [
    (16, 1, 8, 2, PAD), (4, 16, 1, 1, VALID), (9, 3, 5, 2, ((0, 1), (2, 1)))])
def test_conv_matches_xla(size, c_in, c_out, stride, padding):
  x = jax.random.normal(jax.random.key(0), (3, size, size, c_in))
  w = 0.3 * jax.random.normal(jax.random.key(1), (4, 4, c_in, c_out))
  chex.assert_shape(onednn.conv(x, w, stride, padding),
                    xla_conv.conv_output_shape(x.shape, w.shape, stride, padding))
  _assert_value_and_grads_match(lambda a, b: onednn.conv(a, b, stride, padding),
                                lambda a, b: xla_conv.strided_conv(a, b, stride, padding), x, w)


# The generator's upsampling layers: many result channels (oneDNN's backward-data kernel) and one
# (the image layer, whose forward XLA computes). The 1 x 1 first layer is the same einsum for both
# backends (tests/test_models.py).
@pytest.mark.parametrize("size,c_result,stride,padding", [(4, 6, 2, PAD), (4, 1, 2, PAD)])
def test_conv_transpose_matches_xla(size, c_result, stride, padding):
  x = jax.random.normal(jax.random.key(2), (2, size, size, 8))
  w = 0.3 * jax.random.normal(jax.random.key(3), (4, 4, c_result, 8))
  _assert_value_and_grads_match(
      lambda a, b: conv_transpose(a, b, stride, padding, backend="onednn"),
      lambda a, b: conv_transpose(a, b, stride, padding, form="plain"), x, w)


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_second_derivatives_match_xla(op):
  """An R1-style penalty, |∂L/∂x|², differentiated again: conv_weight_grad's own VJP at work."""
  if op == "conv":
    x, w = jax.random.normal(jax.random.key(0), (2, 8, 8, 3)), jax.random.normal(jax.random.key(1), (4, 4, 3, 5))
    fns = (lambda a, b: onednn.conv(a, b, 2, PAD), lambda a, b: xla_conv.strided_conv(a, b, 2, PAD))
  else:
    x, w = jax.random.normal(jax.random.key(0), (2, 4, 4, 5)), jax.random.normal(jax.random.key(1), (4, 4, 3, 5))
    fns = (lambda a, b: conv_transpose(a, b, 2, PAD, backend="onednn"),
           lambda a, b: conv_transpose(a, b, 2, PAD, form="plain"))
  def penalty(fn):
    input_grad = jax.grad(lambda a, b: jnp.sum(jnp.sin(fn(a, b))))
    return lambda a, b: jnp.sum(input_grad(a, b) ** 2)
  got, want = (jax.grad(penalty(fn), argnums=(0, 1))(x, 0.3 * w) for fn in fns)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_models_and_train_step_match_xla_backend():
  """Same parameters, same outputs and the same GAN train step (to float32 rounding)."""
  z = jax.random.normal(jax.random.key(4), (4, 100))
  g_xla, g_dnn = Generator(width=4), Generator(width=4, conv_backend="onednn")
  d_xla, d_dnn = Discriminator(width=4), Discriminator(width=4, conv_backend="onednn")
  g_vars = g_xla.init(jax.random.key(5), z)
  images = g_xla.apply(g_vars, z)
  d_vars = d_xla.init(jax.random.key(6), images)
  chex.assert_trees_all_equal_shapes(g_vars, g_dnn.init(jax.random.key(5), z))
  np.testing.assert_allclose(g_dnn.apply(g_vars, z), images, atol=1e-5)
  np.testing.assert_allclose(d_dnn.apply(d_vars, images), d_xla.apply(d_vars, images), atol=1e-5)
  # Per-sample gradients (jax.vmap of jax.grad, as the EWC Fisher takes them) run and agree.
  per_sample = lambda d: jax.vmap(jax.grad(lambda p, x: d.apply({"params": p}, x[None])[0]),
                                  in_axes=(None, 0))(d_vars["params"], images)
  chex.assert_trees_all_close(per_sample(d_dnn), per_sample(d_xla), atol=1e-5)

  steps = {}
  for backend in layers.BACKENDS:
    config = mnist_dcgan.get_config("smoke")
    config.dcgan.conv_backend = backend
    gan = gan_lib.make_gan(config)
    state = gan.init(jax.random.key(7), image_shape=(32, 32, 1))
    real = jax.random.uniform(jax.random.key(8), (8, 32, 32, 1), minval=-1, maxval=1)
    steps[backend] = jax.jit(functools.partial(gan_lib.train_step, gan=gan))(
        state, real, jax.random.key(9))
  chex.assert_trees_all_close(steps["onednn"], steps["xla"], atol=2e-5)


def test_bad_requests_say_what_is_valid(tmp_path, monkeypatch):
  x = jnp.zeros((1, 8, 8, 2), jnp.bfloat16)
  with pytest.raises(UserInputError, match="float32 only"):
    onednn.conv(x, jnp.zeros((4, 4, 2, 3), jnp.bfloat16), 2, PAD)
  with pytest.raises(UserInputError, match="'custom_vjp' form only"):
    conv_transpose(jnp.zeros((1, 4, 4, 2)), jnp.zeros((4, 4, 3, 2)), 2, PAD, "plain", "onednn")
  with pytest.raises(UserInputError, match="valid: xla, onednn"):
    Discriminator(width=4, conv_backend="cudnn").init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  with pytest.raises(UserInputError, match="no dilation"):
    layers.conv_general_dilated(jnp.zeros((1, 8, 8, 2)), jnp.zeros((4, 4, 2, 3)), (1, 1), PAD,
                                rhs_dilation=(2, 2))
  monkeypatch.setenv("JAXUNLEARN_ONEDNN_ROOT", str(tmp_path))
  with pytest.raises(onednn.OnednnUnavailable, match="pip install onednn-cpu-gomp"):
    onednn.onednn_root()
