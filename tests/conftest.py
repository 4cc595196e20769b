"""Shared fixtures: the local data folder and a runner for entry points in subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def local_data_dir() -> str | None:
  path = os.environ.get("JAXUNLEARN_DATA_DIR") or _DEFAULT_DATA
  return path if os.path.isdir(os.path.join(path, "mnist")) else None


_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config):
  """Gives the whole test session XLA's optimization level 1 and one fresh JAX compilation cache.

  The controller sets ``JAX_COMPILATION_CACHE_DIR`` (unless the user set it) before pytest-xdist
  spawns its workers, so the workers and every entry point they start in a subprocess inherit it:
  a step that many end-to-end runs compile alike (the smoke DCGAN's, the classifier's) compiles
  once per session. Compilations down to 0.2 s are cached (JAX's default floor is 1 s). The folder
  is removed when the session ends; nothing outlives a run, so a test never sees a stale entry.
  """
  if hasattr(config, "workerinput"):
    return
  _compile_at_level_1()
  if _CACHE_ENV in os.environ:
    return
  config._jaxunlearn_cache_dir = tempfile.mkdtemp(prefix="jaxunlearn-jit-cache-")  # pylint: disable=protected-access
  os.environ[_CACHE_ENV] = config._jaxunlearn_cache_dir  # pylint: disable=protected-access
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


_LEVEL_1 = "--xla_backend_optimization_level=1"


def _compile_at_level_1() -> None:
  """Compiles the session's programs at XLA's backend optimization level 1 (the default is 2).

  The suite's time is mostly compilation of tiny programs. Measured on the session-14 Intel Xeon
  host: level 1 compiled a smoke DCGAN train step in 2.6–3.0 s instead of 3.7 s and a small
  ResNet's jitted ``init`` in 1.7 s instead of 6.5 s, and ran the step as fast (15–16 ms); level 0
  compiles little faster still but ran the step 6x slower (106 ms). A user's own XLA_FLAGS come
  first; an optimization level set there wins.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_backend_optimization_level" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_LEVEL_1}".strip()


def pytest_unconfigure(config):
  path = getattr(config, "_jaxunlearn_cache_dir", None)
  if path is not None:
    shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  """Runs the ``slow`` end-to-end tests first (stable order otherwise), so that with ``-n 2`` the
  long ones start early and the short ones fill the end on both workers."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def data_dir() -> str:
  path = local_data_dir()
  if path is None:
    pytest.skip("local data folder not found (set JAXUNLEARN_DATA_DIR)")
  return path


def run_module(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs ``python -m module args`` from the repo root; returns the completed process.

  XLA_FLAGS in ``env`` are appended to the session's (:func:`_compile_at_level_1`).
  """
  full_env = {**os.environ, **(env or {})}
  if env and "XLA_FLAGS" in env:
    full_env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {env['XLA_FLAGS']}".strip()
  data = local_data_dir()
  if data is not None:
    full_env.setdefault("JAXUNLEARN_DATA_DIR", data)
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return proc


@pytest.fixture(scope="session")
def smoke_gan(tmp_path_factory, data_dir) -> str:  # pylint: disable=redefined-outer-name
  """Workdir of a smoke MNIST GAN, trained once per test session."""
  workdir = str(tmp_path_factory.mktemp("smoke_gan"))
  run_module("experiments.train_gan", f"--workdir={workdir}",
             "--config=experiments/configs/mnist_dcgan.py:smoke", f"--data_dir={data_dir}")
  return workdir


@pytest.fixture(scope="session")
def stub_classifier(tmp_path_factory, smoke_gan) -> str:
  """A classifier workdir whose argmax spreads the smoke GAN's samples over all ten classes."""
  return write_stub_classifier(str(tmp_path_factory.mktemp("stub_classifier")), smoke_gan)


def write_stub_classifier(path: str, gan_workdir: str) -> str:
  """Writes to ``path`` a feedback classifier that spreads the samples of the GAN in
  ``gan_workdir`` (an MNIST train_gan workdir) over all ten classes; returns ``path``.

  A smoke-trained classifier puts every sample of a 6-step GAN into one class; this one is a
  random LeNet with a centred random readout of its features, saved in the train_classifier
  format, so the experiment loads it through ``load_classifier`` like any classifier.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments.configs import mnist_classifier  # pylint: disable=g-import-not-at-top
  from jaxunlearn import checkpoint as ckpt_lib, parallel, runs, sampling  # pylint: disable=g-import-not-at-top
  from jaxunlearn.eval import classifiers  # pylint: disable=g-import-not-at-top
  from jaxunlearn.train import pretrained as pretrained_lib  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  config = mnist_classifier.get_config("smoke")
  config.role = "feedback"
  cfg = config.to_dict()
  arch = classifiers.architecture(cfg)
  module = classifiers.make_classifier(arch)
  state = classifiers.create_state(module, classifiers.make_optimizer(cfg["optimizer"], 1),
                                   jax.random.key(0), (32, 32, 1))
  gan = pretrained_lib.load_gan(gan_workdir, mesh)
  z = np.random.default_rng(0).standard_normal((512, gan.gan.latent_dim)).astype(np.float32)
  images = sampling.make_generate_fn(gan.gan.generate, mesh)(
      gan.state.g_ema_params, gan.state.g_batch_stats, z, 64)
  _, features = module.apply({"params": state.params}, images)
  features = np.asarray(features, np.float64)
  w = (np.random.default_rng(1).standard_normal((features.shape[1], arch["num_classes"]))
       / (features.std(0)[:, None] + 1e-6))
  params = {**state.params, "Dense_1": {"kernel": jnp.asarray(w, jnp.float32),
                                        "bias": jnp.asarray(-features.mean(0) @ w, jnp.float32)}}
  meta = {"kind": "classifier", "architecture": arch, "dataset": "mnist", "role": "feedback",
          "seed": 1, "test_accuracy": 0.0, "feature_dim": arch["widths"][-1], "smoke": True,
          "id": "mnist_lenet_feedback_stub", "params_hash": classifiers.params_hash(params)}
  runs.write_json_atomic(os.path.join(path, "config.json"), {"config": cfg})
  checkpointer = ckpt_lib.Checkpointer(path)
  checkpointer.save(1, state.replace(params=params), meta)
  checkpointer.close()
  return path
