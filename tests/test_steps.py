"""Losses against hand-derived values; GAN steps jit == no-jit; the step actually learns."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import losses
from jaxunlearn.train import gan as gan_lib


def test_loss_values_and_gradients_by_hand():
  real, fake = jnp.array([0.5, -1.0]), jnp.array([2.0])
  # L_D = mean softplus(-real) + mean softplus(fake)
  expected = (np.log1p(np.exp(-0.5)) + np.log1p(np.exp(1.0))) / 2 + np.log1p(np.exp(2.0))
  np.testing.assert_allclose(losses.discriminator_loss(real, fake), expected, rtol=1e-6)
  # dL_D/dreal_i = -sigmoid(-real_i)/n ; dL_D/dfake = sigmoid(fake)
  g_real, g_fake = jax.grad(losses.discriminator_loss, argnums=(0, 1))(real, fake)
  sig = lambda v: 1 / (1 + np.exp(-v))
  np.testing.assert_allclose(g_real, -sig(-np.array([0.5, -1.0])) / 2, rtol=1e-6)
  np.testing.assert_allclose(g_fake, [sig(2.0)], rtol=1e-6)
  # Non-saturating L_G: d/dl softplus(-l) = -sigmoid(-l)
  np.testing.assert_allclose(jax.grad(losses.generator_loss)(jnp.array([1.5])), [-sig(-1.5)], rtol=1e-6)
  np.testing.assert_allclose(losses.bce_with_logits(jnp.array(0.3), 0.1),
                             np.log1p(np.exp(0.3)) - 0.03, rtol=1e-6)


def test_r1_penalty_of_a_linear_discriminator():
  w = jnp.arange(12.0).reshape(1, 2, 2, 3) / 10
  logit_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3))  # ∇_x D = w for every image
  x = jnp.ones((4, 2, 2, 3))
  np.testing.assert_allclose(losses.r1_penalty(logit_fn, x), jnp.sum(w ** 2), rtol=1e-6)


def _tiny_gan(r1_gamma=0.0, ema_decay=0.0):
  config = ml_collections.ConfigDict(dict(
      model="dcgan", dataset="mnist", latent_dim=16, r1_gamma=r1_gamma, ema_decay=ema_decay,
      optimizer=dict(learning_rate=1e-3, b1=0.5, b2=0.999), dcgan=dict(g_width=4, d_width=4)))
  gan = gan_lib.make_gan(config)
  return gan, gan.init(jax.random.key(0), (32, 32, 1))


class StepsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_train_step_jit_equals_no_jit(self):
    gan, state = _tiny_gan(r1_gamma=1.0, ema_decay=0.9)
    real = jax.random.uniform(jax.random.key(1), (8, 32, 32, 1), minval=-1, maxval=1)
    step = self.variant(functools.partial(gan_lib.train_step, gan=gan))
    new_state, metrics = step(state, real, jax.random.key(2))
    reference, ref_metrics = jax.jit(functools.partial(gan_lib.train_step, gan=gan))(
        state, real, jax.random.key(2))
    chex.assert_trees_all_close(new_state, reference, rtol=2e-5, atol=2e-6)
    chex.assert_trees_all_close(metrics, ref_metrics, rtol=2e-5, atol=2e-6)
    assert int(new_state.step) == 1
    chex.assert_tree_all_finite(new_state)


def test_ema_follows_parameters():
  gan, state = _tiny_gan(ema_decay=0.5)
  new, _ = gan_lib.g_step(state, 4, jax.random.key(3), gan=gan)
  expected = jax.tree.map(lambda old, p: 0.5 * old + 0.5 * p, state.g_ema_params, new.g_params)
  chex.assert_trees_all_close(new.g_ema_params, expected, rtol=1e-6)
  assert not np.allclose(jax.tree.leaves(new.g_params)[0], jax.tree.leaves(state.g_params)[0])


def test_running_statistics_follow_the_ema_generator():
  """Inference samples pair θ_EMA with the running BatchNorm statistics: those must be G_EMA's."""
  gan, state = _tiny_gan(ema_decay=0.5)
  new, _ = gan_lib.g_step(state, 4, jax.random.key(3), gan=gan)
  z = gan.sample_latents(jax.random.key(3), 4)  # the step's z
  _, of_ema = gan.generate_train(new.g_ema_params, state.g_batch_stats, z)
  _, of_raw = gan.generate_train(new.g_params, state.g_batch_stats, z)
  chex.assert_trees_all_close(new.g_batch_stats, of_ema, rtol=1e-5, atol=1e-7)
  assert not np.allclose(jax.tree.leaves(of_raw)[0], jax.tree.leaves(of_ema)[0])
  no_ema, plain = _tiny_gan(ema_decay=0.0)
  new, _ = gan_lib.g_step(plain, 4, jax.random.key(3), gan=no_ema)
  _, of_g = no_ema.generate_train(plain.g_params, plain.g_batch_stats, z)  # without EMA: G's own
  chex.assert_trees_all_close(new.g_batch_stats, of_g, rtol=1e-5, atol=1e-7)


def test_d_step_lowers_the_discriminator_loss_on_a_fixed_batch():
  gan, state = _tiny_gan()
  real = jnp.ones((16, 32, 32, 1)) * 0.8
  step = jax.jit(functools.partial(gan_lib.d_step, gan=gan))
  first = None
  for _ in range(10):
    state, m = step(state, real, jax.random.key(0))
    first = first if first is not None else float(m["d_loss"])
  assert float(m["d_loss"]) < first - 0.1
