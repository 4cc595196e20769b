"""The project's classifiers: inference-mode batch independence, saving/loading, FID on real
features, refusals, role seeds and resume."""

import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eval_smoke_runs
from conftest import run_module
from experiments.configs import mnist_classifier
from jaxunlearn import parallel
from jaxunlearn.data import load_dataset
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifier_training, fid_classifier
from jaxunlearn.eval import classifiers as clf


@pytest.fixture(scope="session")
def smoke_classifier(tmp_path_factory, data_dir):
  return eval_smoke_runs.smoke_classifier(str(tmp_path_factory.getbasetemp()), data_dir)


def _images(n, channels=1, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, channels)).astype(np.float32)


@pytest.mark.parametrize("module, channels", [
    (clf.LeNet(widths=(32, 64, 128)), 1),
    (clf.ResNet20(widths=(4, 8, 16), blocks_per_stage=1), 3),  # one block per stage: fast compile
])
def test_inference_mode_is_batch_independent(module, channels):
  variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, channels)))
  x = _images(9, channels)
  if "batch_stats" in variables:  # Non-trivial running statistics, as after training.
    update = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[1])
    variables = {**variables, **update(variables, x * 3 + 1)}
  trained = clf.TrainedClassifier(module, variables, {})
  mesh = parallel.make_mesh()
  batch = trained.predict(x, mesh, batch_size=4)
  chex.assert_shape([batch["logits"], batch["probs"]], (9, 10))
  chex.assert_shape(batch["features"], (9, module.widths[-1]))
  for i in (0, 8):
    alone = trained.predict(x[i:i + 1], mesh, batch_size=4)
    chex.assert_trees_all_close({k: v[0] for k, v in alone.items()},
                                {k: v[i] for k, v in batch.items()}, rtol=1e-5, atol=1e-5)
  logits, features = jax.jit(trained.apply)(x)
  np.testing.assert_allclose(logits, batch["logits"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(features, batch["features"], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(batch["labels"], batch["logits"].argmax(1))


def test_saved_smoke_classifier_loads_and_predicts_deterministically(smoke_classifier):
  results = json.load(open(os.path.join(smoke_classifier, "results.json")))
  logged = [json.loads(l)["step"] for l in open(os.path.join(smoke_classifier, "metrics.jsonl"))]
  assert logged == [20, 40, 60] and results["steps"] == 60
  a = clf.load_classifier(smoke_classifier, dataset="mnist", role="eval")
  b = clf.load_classifier(smoke_classifier)
  assert a.meta["id"] == "mnist_lenet_eval_s0_smoke" and a.meta["seed"] == 0
  assert a.meta["feature_dim"] == 128 and a.meta["test_accuracy"] == results["test_accuracy"]
  assert a.meta["test_accuracy"] > 0.8  # 60 steps learn most of MNIST
  assert a.meta["params_hash"] == clf.params_hash(b.variables) == results["params_hash"]
  assert a.meta["dataset_fingerprint"] == results["dataset_fingerprint"]
  mesh = parallel.make_mesh()
  x = _images(20, seed=1)
  first, second = a.predict(x, mesh, batch_size=8), b.predict(x, mesh, batch_size=8)
  chex.assert_trees_all_equal(first, second)
  np.testing.assert_allclose(first["probs"].sum(1), 1.0, rtol=1e-5)


def test_fid_on_real_features_small_for_real_large_for_noise(smoke_classifier, data_dir):
  classifier = clf.load_classifier(smoke_classifier)
  dataset = load_dataset("mnist", data_dir)
  rng = np.random.default_rng(0)
  mesh = parallel.make_mesh()
  features = lambda x: classifier.predict(x, mesh)["features"]
  test = features(dataset.model_images("test", rng.choice(10_000, 1000, replace=False)))
  train = features(dataset.model_images("train", rng.choice(60_000, 1000, replace=False)))
  noise = features(_images(1000, seed=2))
  real_vs_real = fid_classifier(test, train)["fid_classifier"]
  real_vs_noise = fid_classifier(noise, test)["fid_classifier"]
  assert real_vs_real < 10.0
  assert real_vs_noise > 30 * real_vs_real


def test_load_classifier_refuses_clearly(smoke_classifier, smoke_gan, tmp_path):
  cases = [
      (dict(workdir=str(tmp_path)), "is not a train_classifier workdir"),
      (dict(workdir=smoke_gan), "holds no classifier"),
      (dict(workdir=smoke_classifier, role="feedback"), "is the 'eval' classifier"),
      (dict(workdir=smoke_classifier, dataset="cifar10"), "is a mnist classifier"),
  ]
  for kwargs, message in cases:
    with pytest.raises(UserInputError, match=message):
      clf.load_classifier(**kwargs, flag="--eval_classifier")
  unfinished = tmp_path / "unfinished"
  shutil.copytree(smoke_classifier, unfinished)
  shutil.rmtree(unfinished / "checkpoints" / "60")
  with pytest.raises(UserInputError, match="before it finished"):
    clf.load_classifier(str(unfinished))


def test_feedback_role_uses_seed_1_and_bad_role_is_refused(tmp_path, data_dir):
  workdir = tmp_path / "feedback"
  run_module("experiments.train_classifier", f"--workdir={workdir}",
             "--config=experiments/configs/mnist_classifier.py:smoke", "--config.role=feedback",
             "--config.num_steps=2", f"--data_dir={data_dir}")
  meta = clf.load_classifier(str(workdir), role="feedback").meta
  assert meta["seed"] == 1 and meta["id"] == "mnist_lenet_feedback_s1_smoke"
  config = mnist_classifier.get_config("smoke")
  config.role = "judge"
  with pytest.raises(UserInputError, match="unknown role 'judge'"):
    classifier_training.train_and_evaluate(config, str(tmp_path / "bad"), data_dir=data_dir)
  assert not (tmp_path / "bad").exists()


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, data_dir):
  config = mnist_classifier.get_config("smoke")
  config.num_steps, config.checkpoint_every, config.log_every = 6, 3, 3
  straight = classifier_training.train_and_evaluate(config, str(tmp_path / "a"), data_dir=data_dir)
  interrupted = tmp_path / "b"
  classifier_training.train_and_evaluate(config, str(interrupted), data_dir=data_dir)
  os.remove(interrupted / "results.json")  # As if killed after the checkpoint of step 3.
  shutil.rmtree(interrupted / "checkpoints" / "6")
  resumed = classifier_training.train_and_evaluate(config, str(interrupted), data_dir=data_dir)
  assert resumed["params_hash"] == straight["params_hash"]
  assert resumed["test_accuracy"] == straight["test_accuracy"]
  steps = [json.loads(l)["step"] for l in open(interrupted / "metrics.jsonl")]
  assert steps == [3, 6]
