"""train_gan and sample end to end: outputs and bad input (kills and pre-emption: test_faults.py)."""

import json
import os

import numpy as np

from conftest import run_module

SMOKE = "--config=experiments/configs/mnist_dcgan.py:smoke"


def test_smoke_run_writes_every_file_and_samples(smoke_gan, tmp_path):
  files = set(os.listdir(smoke_gan))
  assert {"config.json", "metrics.jsonl", "results.json", "grid_final.png", "checkpoints"} <= files
  results = json.load(open(os.path.join(smoke_gan, "results.json")))
  assert results["steps"] == 6 and results["method"] == "train_gan"
  assert results["timing"]["train_s"] > 0 and results["timing"]["compile_s"] > 0
  env = json.load(open(os.path.join(smoke_gan, "config.json")))["environment"]
  assert env["xla_flags"] == os.environ.get("XLA_FLAGS", "") and env["cpu_count"] >= 1
  assert env["devices"] and env["cpu"] and len(env["load_average"]) == 3
  assert len(results["environment"]["load_average"]) == 3  # at the end of the run
  logged = [json.loads(line)["step"] for line in open(os.path.join(smoke_gan, "metrics.jsonl"))]
  assert logged == [2, 4, 6]
  out = tmp_path / "samples.npz"
  run_module("experiments.sample", f"--checkpoint={smoke_gan}", "--num_samples=37",
             f"--output={out}", "--batch_size=16")
  with np.load(out) as f:
    assert f["images"].shape == (37, 32, 32, 1) and f["images"].dtype == np.uint8
    assert f["latents"].shape == (37, 100)
    assert 0 <= f["images"].min() and f["images"].max() <= 255 and f["images"].std() > 0


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
