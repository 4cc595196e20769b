"""Damaged checkpoints: detected, reported, and skipped for the previous intact one."""

import glob
import os
import shutil

import pytest

from conftest import run_module

SMOKE = "--config=experiments/configs/mnist_dcgan.py:smoke"


def _largest_data_file(workdir, step):
  files = glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"),
                    recursive=True)
  return max(files, key=os.path.getsize)


def _unfinished_copy(gan_workdir, tmp_path) -> str:
  """A copy of the session's smoke GAN run (``SMOKE``, checkpoints at steps 2, 4, 6) without its
  results.json, so that running it again resumes from a checkpoint."""
  workdir = str(tmp_path / "run")
  shutil.copytree(gan_workdir, workdir)
  os.remove(os.path.join(workdir, "results.json"))
  return workdir


def _flip_bytes(path):
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0x5A for b in data[mid:mid + 64])
    f.seek(0)
    f.write(data)


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_flip_bytes, _truncate])
def test_damaged_latest_checkpoint_falls_back_to_previous(tmp_path, smoke_gan, damage):
  workdir = _unfinished_copy(smoke_gan, tmp_path)
  damage(_largest_data_file(workdir, 6))
  proc = run_module("experiments.train_gan", f"--workdir={workdir}", SMOKE, "--config.num_steps=8")
  assert "checkpoint 6" in proc.stderr and "trying an older one" in proc.stderr
  assert "resuming from the checkpoint at step 4" in proc.stderr
  assert os.path.exists(os.path.join(workdir, "results.json"))


@pytest.mark.slow
def test_all_checkpoints_damaged_is_refused(tmp_path, smoke_gan):
  workdir = _unfinished_copy(smoke_gan, tmp_path)
  for step in (2, 4, 6):
    _truncate(_largest_data_file(workdir, step))
  proc = run_module("experiments.train_gan", f"--workdir={workdir}", SMOKE, check=False)
  assert proc.returncode == 2
  assert "error: no intact checkpoint" in proc.stderr and "[2, 4, 6]" in proc.stderr
  assert not os.path.exists(os.path.join(workdir, "results.json"))
