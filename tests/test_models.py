"""Models: shapes, the fast transposed convolution, per-sample (batch-independent) outputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import mnist_dcgan
from jaxunlearn.errors import UserInputError
from jaxunlearn.models import Discriminator, Generator, conv_transpose
from jaxunlearn.train import gan as gan_lib

PAD = ((1, 1), (1, 1))


def _reference_conv_transpose(x, w, stride, padding):
  """The transpose of a strided conv, differentiated by plain autodiff."""
  n, h, wd, _ = x.shape
  k = w.shape[0]
  size = lambda s, pads: (s - 1) * stride + k - sum(pads)
  spec = jax.ShapeDtypeStruct((n, size(h, padding[0]), size(wd, padding[1]), w.shape[2]), x.dtype)
  conv = lambda y: jax.lax.conv_general_dilated(y, w, (stride, stride), padding,
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.linear_transpose(conv, spec)(x)[0]


# (input size, stride, padding, output size): the upsampling layers (custom VJP) and the 1 x 1 ->
# 4 x 4 first layer of the generator (an einsum); each also in the "plain" form (the benchmark's A/B).
@pytest.mark.parametrize("form", ["custom_vjp", "plain"])
@pytest.mark.parametrize("size,stride,padding,out", [(4, 2, PAD, 8), (1, 1, ((0, 0), (0, 0)), 4)])
def test_conv_transpose_value_and_gradients_match_autodiff(size, stride, padding, out, form):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
  w = jax.random.normal(jax.random.key(1), (4, 4, 3, 6))
  y = conv_transpose(x, w, stride, padding, form)
  chex.assert_shape(y, (2, out, out, 3))
  reference = lambda a, b: _reference_conv_transpose(a, b, stride, padding)
  np.testing.assert_allclose(y, reference(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda fn: lambda x_, w_: jnp.sum(jnp.sin(fn(x_, w_)) * jnp.arange(3.0))
  fast = jax.grad(loss(lambda a, b: conv_transpose(a, b, stride, padding, form)),
                  argnums=(0, 1))(x, w)
  ref = jax.grad(loss(reference), argnums=(0, 1))(x, w)
  for a, b in zip(fast, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_generator_forms_share_parameters_and_agree():
  """The plain form runs on the custom-VJP generator's parameters, to float32 rounding."""
  z = jax.random.normal(jax.random.key(2), (3, 100))
  fast, plain = Generator(width=4), Generator(width=4, conv_transpose="plain")
  variables = fast.init(jax.random.key(3), z)
  chex.assert_trees_all_equal_shapes(variables, plain.init(jax.random.key(3), z))
  np.testing.assert_allclose(fast.apply(variables, z), plain.apply(variables, z), atol=1e-6)
  with pytest.raises(ValueError, match="valid"):
    Generator(width=4, conv_transpose="nope").init(jax.random.key(3), z)
  config = mnist_dcgan.get_config("smoke")
  config.dcgan.conv_transpose = "nope"
  with pytest.raises(UserInputError, match="valid: custom_vjp, plain"):
    gan_lib.make_gan(config)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(channels):
  g, d = Generator(channels=channels, width=8), Discriminator(width=8)
  z = jax.random.normal(jax.random.key(0), (5, 100))
  g_vars = g.init(jax.random.key(1), z)
  x = g.apply(g_vars, z)
  chex.assert_shape(x, (5, 32, 32, channels))
  assert float(jnp.max(jnp.abs(x))) <= 1.0
  d_vars = d.init(jax.random.key(2), x)
  chex.assert_shape(d.apply(d_vars, x), (5,))
  assert "batch_stats" in g_vars and "batch_stats" not in d_vars


def test_outputs_are_per_sample_in_inference_mode():
  g, d = Generator(channels=1, width=8), Discriminator(width=8)
  z = jax.random.normal(jax.random.key(0), (6, 100))
  g_vars = g.init(jax.random.key(1), z)
  # Give the running statistics non-trivial values first.
  _, updated = g.apply(g_vars, 3 * z + 1, train=True, mutable=["batch_stats"])
  g_vars = {"params": g_vars["params"], **updated}
  batch = g.apply(g_vars, z)
  alone = jnp.concatenate([g.apply(g_vars, z[i:i + 1]) for i in range(6)])
  np.testing.assert_allclose(batch, alone, rtol=1e-5, atol=1e-6)
  d_vars = d.init(jax.random.key(2), batch)
  np.testing.assert_allclose(d.apply(d_vars, batch)[:2], d.apply(d_vars, batch[:2]), rtol=1e-5,
                             atol=1e-6)
  # In training mode the generator does use batch statistics (so the check above is not vacuous).
  train_out, _ = g.apply(g_vars, z[:2], train=True, mutable=["batch_stats"])
  assert not np.allclose(train_out, batch[:2], atol=1e-3)
