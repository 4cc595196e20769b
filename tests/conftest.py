"""Shared fixtures: the local data folder and a runner for entry points in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def local_data_dir() -> str | None:
  path = os.environ.get("JAXUNLEARN_DATA_DIR") or _DEFAULT_DATA
  return path if os.path.isdir(os.path.join(path, "mnist")) else None


@pytest.fixture(scope="session")
def data_dir() -> str:
  path = local_data_dir()
  if path is None:
    pytest.skip("local data folder not found (set JAXUNLEARN_DATA_DIR)")
  return path


def run_module(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs ``python -m module args`` from the repo root; returns the completed process."""
  full_env = {**os.environ, **(env or {})}
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
