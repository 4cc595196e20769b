"""train_gan and sample end to end: outputs, resume after a kill, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from conftest import REPO, run_module
from jaxunlearn import parallel
from jaxunlearn.train import pretrained

SMOKE = "--config=experiments/configs/mnist_dcgan.py:smoke"


def test_smoke_run_writes_every_file_and_samples(smoke_gan, tmp_path):
  files = set(os.listdir(smoke_gan))
  assert {"config.json", "metrics.jsonl", "results.json", "grid_final.png", "checkpoints"} <= files
  results = json.load(open(os.path.join(smoke_gan, "results.json")))
  assert results["steps"] == 6 and results["method"] == "train_gan"
  assert results["timing"]["train_s"] > 0 and results["timing"]["compile_s"] > 0
  logged = [json.loads(line)["step"] for line in open(os.path.join(smoke_gan, "metrics.jsonl"))]
  assert logged == [2, 4, 6]
  out = tmp_path / "samples.npz"
  run_module("experiments.sample", f"--checkpoint={smoke_gan}", "--num_samples=37",
             f"--output={out}", "--batch_size=16")
  with np.load(out) as f:
    assert f["images"].shape == (37, 32, 32, 1) and f["images"].dtype == np.uint8
    assert f["latents"].shape == (37, 100)
    assert 0 <= f["images"].min() and f["images"].max() <= 255 and f["images"].std() > 0


def _train_cmd(workdir, steps):
  return [sys.executable, "-m", "experiments.train_gan", f"--workdir={workdir}", SMOKE,
          f"--config.num_steps={steps}", "--config.checkpoint_every=5", "--config.log_every=5",
          "--config.grid_every=1000"]


def _final_state(workdir):
  return pretrained.load_gan(str(workdir), parallel.make_mesh(1)).state


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, data_dir):
  steps = 200
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": data_dir}
  run_module("experiments.train_gan", *_train_cmd(tmp_path / "straight", steps)[3:])
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_train_cmd(killed, steps), cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    metrics = killed / "metrics.jsonl"
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 6:  # past step 30
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.05)
  assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (killed / "results.json").exists()
  run_module("experiments.train_gan", *_train_cmd(killed, steps)[3:])
  chex.assert_trees_all_close(_final_state(killed), _final_state(tmp_path / "straight"),
                              rtol=1e-5, atol=1e-6)
  straight_log = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
  resumed_log = (killed / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in resumed_log] == [json.loads(l)["step"] for l in straight_log]


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, data_dir):
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": data_dir}
  workdir = tmp_path / "term"
  proc = subprocess.Popen(_train_cmd(workdir, 100000), cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode != 0 and "checkpoint saved" in err
  step = _final_state(workdir).step
  assert int(step) >= 5 and not (workdir / "results.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--config.dataset=svhn"], "unknown dataset 'svhn'"),
    (["--forget=class:11"], "unknown class 11; valid classes: 0..9"),
    (["--forget=items:0"], "out of range"),
    (["--forget=items:999999"], "out of range"),
    (["--config.batch_size=0"], "batch_size=0 does not divide"),
    (["--config.no_such_key=1"], "no_such_key"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, args, message, data_dir):
  workdir = tmp_path / "w"
  proc = run_module("experiments.train_gan", f"--workdir={workdir}", SMOKE, *args, check=False)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert not workdir.exists() or not any(workdir.iterdir())


def test_unwritable_workdir(tmp_path, data_dir):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")  # unwritable as a parent even for root
  proc = run_module("experiments.train_gan", f"--workdir={blocker / 'w'}", SMOKE, check=False)
  assert proc.returncode == 2 and "not writable" in proc.stderr
  assert proc.stderr.strip().count("\n") == 0


def test_nan_stops_with_the_step_and_quantity_and_keeps_the_checkpoint(tmp_path, data_dir):
  args = [f"--workdir={tmp_path}", SMOKE, "--config.optimizer.learning_rate=1e20"]
  proc = run_module("experiments.train_gan", *args, check=False)
  assert proc.returncode == 3
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("error: non-finite") and "at step" in line and "loss" in line
  assert not (tmp_path / "results.json").exists()


def test_nan_steps_can_be_skipped_and_counted(tmp_path, data_dir):
  args = [f"--workdir={tmp_path}", SMOKE, "--config.optimizer.learning_rate=1e20",
          "--config.nonfinite_policy=skip"]
  run_module("experiments.train_gan", *args)
  results = json.load(open(tmp_path / "results.json"))
  assert 1 <= results["skipped_nonfinite_steps"] <= results["steps"]
