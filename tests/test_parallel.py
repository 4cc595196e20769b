"""Data parallelism on 8 fake CPU devices (each check runs in a fresh process)."""

import json
import os

from conftest import run_module

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}


def test_equivalence_suite_on_8_devices():
  proc = run_module("pytest", "-q", "-p", "no:cacheprovider", "tests/multidevice",
                    env=EIGHT_DEVICES, check=False, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
  assert "3 passed" in proc.stdout


def test_train_gan_smoke_on_8_devices(tmp_path, data_dir):
  run_module("experiments.train_gan", f"--workdir={tmp_path}",
             "--config=experiments/configs/mnist_dcgan.py:smoke", env=EIGHT_DEVICES)
  results = json.load(open(os.path.join(tmp_path, "results.json")))
  assert len(results["devices"]) == 8 and results["steps"] == 6
