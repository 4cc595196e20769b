"""Smoke runs shared by the evaluation tests, made once per test session (not a conftest, so
the root ``conftest`` module stays importable by name)."""

from __future__ import annotations

import functools

from conftest import run_module


@functools.cache
def smoke_classifier(tmp_root: str, data_dir: str) -> str:
  """Workdir of the smoke MNIST eval classifier (60 steps, about 94 % test accuracy)."""
  workdir = f"{tmp_root}/smoke_classifier"
  run_module("experiments.train_classifier", f"--workdir={workdir}",
             "--config=experiments/configs/mnist_classifier.py:smoke", f"--data_dir={data_dir}")
  return workdir


@functools.cache
def retrained_items_gan(tmp_root: str, data_dir: str) -> str:
  """A smoke MNIST GAN retrained without the items:16 forget set (the reference G_R)."""
  workdir = f"{tmp_root}/retrained_items16"
  run_module("experiments.train_gan", f"--workdir={workdir}",
             "--config=experiments/configs/mnist_dcgan.py:smoke", "--forget=items:16",
             f"--data_dir={data_dir}")
  return workdir
