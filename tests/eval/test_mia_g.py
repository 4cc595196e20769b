"""MIA-G, membership by generator reconstruction (evaluation.md §8): the search and its wiring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import evaluate as evaluate_config
from experiments.configs import mnist_classifier, mnist_dcgan
from jaxunlearn import parallel
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifiers, membership, reconstruction, report
from jaxunlearn.train import gan as gan_lib
from jaxunlearn.train.loop import TrainingData, prepare_data
from jaxunlearn.train.pretrained import TrainedGAN

DIM, SHAPE = 4, (4, 4, 1)
W = 0.7 * jax.random.normal(jax.random.key(0), (DIM, 16))


def linear_generator(w: jax.Array, z: jax.Array) -> jax.Array:
  """A tiny G: z (N, 4) -> tanh(z·W) as (N, 4, 4, 1) images in [-1, 1]."""
  return jnp.tanh(z @ w).reshape(-1, *SHAPE)


def _noise(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1, 1, (n, *SHAPE)).astype(np.float32)


def test_generated_images_reconstruct_far_better_than_noise():
  run = reconstruction.make_reconstruction_fn(linear_generator, parallel.make_mesh(),
                                              latent_dim=DIM, restarts=5, steps=300,
                                              learning_rate=0.1)
  fake = np.asarray(linear_generator(W, jax.random.normal(jax.random.key(1), (6, DIM))))
  errors = run(W, np.concatenate([fake, _noise(6, 0)]), np.arange(12), jax.random.key(2), 12)
  assert errors.shape == (12,) and np.all(errors >= 0)
  assert errors[:6].max() < 1e-4
  assert errors[6:].min() > 100 * errors[:6].max()


def _reference_search(x: np.ndarray, z0: np.ndarray, steps: int, lr: float) -> float:
  """One image, one start: Adam written out by hand, lowest error over z_0 … z_S."""
  z, m, v, best = jnp.asarray(z0), 0.0, 0.0, np.inf
  for t in range(1, steps + 1):
    e, g = _error_and_grad(z, x)
    best = min(best, float(e))
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    z = z - lr * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8)
  return min(best, float(_error_and_grad(z, x)[0]))


@jax.jit
def _error_and_grad(z: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """‖G(z) − x‖²/16 of one latent (4,) and image (4, 4, 1), and its gradient in z."""
  return jax.value_and_grad(lambda z: jnp.mean(jnp.square(linear_generator(W, z[None])[0] - x)))(z)


def test_joint_restarts_equal_the_min_of_separate_searches():
  steps, lr = 25, 0.1
  reconstruct = reconstruction.make_reconstruct(linear_generator, parallel.make_mesh(),
                                                steps=steps, learning_rate=lr)
  x = _noise(3, 1)
  z0 = np.asarray(jax.random.normal(jax.random.key(3), (3, 2, DIM)))
  joint = np.asarray(reconstruct(W, x, z0))
  alone = np.array([[_reference_search(x[i], z0[i, r], steps, lr) for r in range(2)]
                    for i in range(3)])
  assert not np.allclose(alone[:, 0], alone[:, 1], rtol=1e-3)  # the starts do differ
  np.testing.assert_allclose(joint, alone.min(axis=1), rtol=1e-4)


def test_result_is_independent_of_batching_and_seeded_by_ids():
  run = reconstruction.make_reconstruction_fn(linear_generator, parallel.make_mesh(),
                                              latent_dim=DIM, restarts=2, steps=5,
                                              learning_rate=0.1)
  x, ids, key = _noise(7, 2), np.arange(10, 17), jax.random.key(4)
  whole = run(W, x, ids, key, 8)
  np.testing.assert_allclose(run(W, x, ids, key, 3), whole, rtol=1e-6)  # padded last batch
  order = np.random.default_rng(0).permutation(7)
  np.testing.assert_allclose(run(W, x[order], ids[order], key, 8), whole[order], rtol=1e-6)
  assert not np.allclose(run(W, x, ids + 100, key, 8), whole, rtol=1e-3)


@pytest.fixture(scope="module")
def smoke_gan_and_data(data_dir) -> tuple[TrainedGAN, TrainingData]:
  """A randomly initialised smoke DCGAN (width 8), its data with the forget set items:4 and an
  H_eval of 64 images."""
  config = mnist_dcgan.get_config("smoke")
  config.holdout_size = 128
  gan = gan_lib.make_gan(config)
  # Jitted, with the rbg generator: an eager threefry init compiles op by op (seconds).
  state = jax.jit(lambda key: gan.init(key, (32, 32, 1)))(jax.random.key(0, impl="unsafe_rbg"))
  trained = TrainedGAN(gan, state, config, {"method": "train_gan"}, 0, "smoke")
  return trained, prepare_data(config, data_dir, 0, "items:4")


def test_mia_g_config_is_checked():
  mesh = parallel.make_mesh()
  config = evaluate_config.get_config().mia_g
  membership.check_mia_g_config(config, mesh)
  config.update(enabled=True, restarts=0)
  with pytest.raises(UserInputError, match="restarts"):
    membership.check_mia_g_config(config, mesh)
  config.update(restarts=5, batch_size=0)
  with pytest.raises(UserInputError, match="mia_g.batch_size"):
    membership.check_mia_g_config(config, mesh)


def test_report_card_and_membership_carry_mia_g(smoke_gan_and_data):
  mesh = parallel.make_mesh()
  trained, data = smoke_gan_and_data
  arch = classifiers.architecture(mnist_classifier.get_config("smoke").to_dict())
  module = classifiers.make_classifier(arch)
  variables = jax.jit(lambda key: module.init(key, jnp.zeros((1, 32, 32, 1)), train=False))(
      jax.random.key(1, impl="unsafe_rbg"))
  classifier = classifiers.TrainedClassifier(
      module, dict(variables), {"id": "random_lenet", "test_accuracy": 0.1,
                                "feature_dim": arch["widths"][-1]})
  # Few batch shapes (64; 4 for MIA-G): each new shape is a compilation.
  config = evaluate_config.get_config("smoke")
  config.update(num_samples=64, num_real=64, num_real_floor=64, cs_splits=2, batch_size=64)
  config.downstream.enabled = False
  config.mia.num_threshold = 64
  config.mia_g.update(enabled=True, restarts=2, steps=2, batch_size=4)
  card = report.evaluate_gan(trained, eval_classifier=classifier, data=data, forget=data.forget,
                             config=config, mesh=mesh)
  (row,) = card["effectiveness"]["rows"]
  mia = card["details"]["original"]["mia"]
  assert mia["mia_g"]["n_member"] == 4 and mia["mia_g"]["n_nonmember"] == 64
  assert row["mia_g_auc"] == mia["mia_g"]["auc"] and 0.0 <= row["mia_g_auc"] <= 1.0
  assert row["mia_g_auc"] != row["mia_d_auc"]  # its own scores, not D's
  assert card["notes"][0].startswith("MIA-G: score −L_rec") and "2 steps" in card["notes"][0]
  assert "| MIA-G AUC |" in report.render_markdown(card)

  sets = membership.membership_sets(data.splits, data.forget, num_threshold=64)
  scores = membership.reconstruction_scores(
      trained, data.dataset.model_images("train", sets.member), sets.member, mesh, config.mia_g)
  assert np.all(scores < 0)  # −L_rec
  assert mia["mia_g"]["mean_score_member"] == pytest.approx(float(scores.mean()), rel=1e-6)
  assert "mia_g" not in membership.membership_inference(trained, sets, data.dataset, mesh,
                                                        batch_size=64)
