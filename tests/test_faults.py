"""Fault injection on every training entry point: SIGTERM pre-emption, SIGKILL at random moments.

For each of train_gan, train_classifier, cascaded_unlearning and adapt_then_unlearn (smoke configs,
lengthened so that a signal lands inside the loop), the harness first runs the command to the end
and times it (T). Then each trial, on a fresh workdir:

1. starts the command and sends SIGTERM once its loop has logged a step: the run must save a
   checkpoint, say so, and exit non-zero without results;
2. reruns it (it resumes) and SIGKILLs it at a random moment, ``u · T`` seconds after the start
   with ``u ~ U(0.1, 0.9)`` from a seeded generator, so kills land in start-up, restoring,
   compilation, the loop or a checkpoint save (or after the end: then the run had finished);
3. reruns it to the end.

After every interruption ``results.json`` is absent or complete (it parses and has the
uninterrupted run's keys); at the end the parameters equal the uninterrupted run's and
metrics.jsonl logs the same steps.

CI runs one trial per entry point; ``JAXUNLEARN_FAULT_TRIALS=N`` runs N, and
``JAXUNLEARN_FAULT_SEED`` picks the kill moments. Each trial prints its outcome (``pytest -s``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

import chex
import numpy as np
import pytest

from conftest import REPO
from jaxunlearn import parallel
from jaxunlearn.eval import classifiers
from jaxunlearn.train import pretrained

TRIALS = int(os.environ.get("JAXUNLEARN_FAULT_TRIALS", "1"))
SEED = int(os.environ.get("JAXUNLEARN_FAULT_SEED", "0"))
TIMEOUT_S = 300


def _gan_params(workdir: str) -> Any:
  state = pretrained.load_gan(workdir, parallel.make_mesh(1)).state
  return {"g_params": state.g_params, "g_batch_stats": state.g_batch_stats,
          "g_ema_params": state.g_ema_params, "d_params": state.d_params}


def _classifier_params(workdir: str) -> Any:
  return classifiers.load_classifier(workdir).variables


@dataclasses.dataclass(frozen=True)
class EntryPoint:
  module: str
  args: Callable[[dict[str, str]], list[str]]  # fixtures -> flags other than --workdir
  final_params: Callable[[str], Any]


ENTRY_POINTS = {
    "train_gan": EntryPoint(
        "experiments.train_gan",
        lambda f: ["--config=experiments/configs/mnist_dcgan.py:smoke", "--config.num_steps=60",
                   "--config.checkpoint_every=10", "--config.log_every=5",
                   "--config.grid_every=1000"],
        _gan_params),
    "train_classifier": EntryPoint(
        "experiments.train_classifier",
        lambda f: ["--config=experiments/configs/mnist_classifier.py:smoke",
                   "--config.num_steps=60", "--config.checkpoint_every=10",
                   "--config.log_every=5"],
        _classifier_params),
    "cascaded_unlearning": EntryPoint(
        "experiments.cascaded_unlearning",
        lambda f: [f"--pretrained={f['smoke_gan']}", "--forget=items:7",
                   "--config=experiments/configs/cascaded_unlearning.py:smoke",
                   "--config.substitution.selection=random", "--config.schedule.max_rounds=5",
                   "--config.stop.min_rounds=5"],
        _gan_params),
    "adapt_then_unlearn": EntryPoint(
        "experiments.adapt_then_unlearn",
        lambda f: [f"--pretrained={f['smoke_gan']}", f"--feedback_classifier={f['stub']}",
                   "--forget=class:8", "--repulsion=el2", "--num_adapted=2",
                   "--config=experiments/configs/adapt_then_unlearn.py:smoke",
                   "--config.adapt.num_steps=8", "--config.unlearn.num_steps=24",
                   "--config.unlearn.eval_every=8"],
        _gan_params),
}


def _start(entry: EntryPoint, workdir: str, fixtures: dict[str, str]) -> subprocess.Popen:
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": fixtures["data_dir"]}
  return subprocess.Popen([sys.executable, "-m", entry.module, f"--workdir={workdir}",
                           *entry.args(fixtures)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
  _, err = proc.communicate(timeout=TIMEOUT_S)
  return err


def _check_results_absent_or_complete(workdir: str, keys: set[str]) -> bool:
  """True when results.json exists (then it must be complete); False when absent."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    results = json.load(f)  # a partial file would not parse
  assert set(results) == keys, f"results.json has keys {sorted(results)}, expected {sorted(keys)}"
  return True


def _logged_steps(workdir: str) -> list[int]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f]


def _loop_has_logged(workdir: str) -> bool:
  path = os.path.join(workdir, "metrics.jsonl")
  return os.path.exists(path) and os.path.getsize(path) > 0


@pytest.fixture(scope="module")
def fixtures(smoke_gan, stub_classifier, data_dir) -> dict[str, str]:
  return {"smoke_gan": smoke_gan, "stub": stub_classifier, "data_dir": data_dir}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_killed_and_preempted_runs_resume_to_the_uninterrupted_result(name, fixtures, tmp_path):
  entry = ENTRY_POINTS[name]
  straight = str(tmp_path / "straight")
  t0 = time.perf_counter()
  proc = _start(entry, straight, fixtures)
  err = _finish(proc)
  wall_s = time.perf_counter() - t0
  assert proc.returncode == 0, err[-3000:]
  with open(os.path.join(straight, "results.json")) as f:
    keys = set(json.load(f))
  expected = entry.final_params(straight)

  rng = np.random.default_rng([SEED, list(ENTRY_POINTS).index(name)])
  for trial in range(TRIALS):
    workdir = str(tmp_path / f"trial{trial}")
    # 1. SIGTERM once the loop runs: a checkpoint is saved and the exit says so.
    proc = _start(entry, workdir, fixtures)
    deadline = time.perf_counter() + TIMEOUT_S
    while proc.poll() is None and not _loop_has_logged(workdir) and time.perf_counter() < deadline:
      time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    assert proc.returncode == 1 and "stopped by SIGTERM" in err, f"exit {proc.returncode}:\n{err[-3000:]}"
    assert "checkpoint saved, rerun the same command to resume" in err
    assert not _check_results_absent_or_complete(workdir, keys)

    # 2. The resumed run, SIGKILLed at a random moment.
    delay = float(rng.uniform(0.1, 0.9)) * wall_s
    proc = _start(entry, workdir, fixtures)
    try:
      proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
    err = _finish(proc)
    killed = proc.returncode == -signal.SIGKILL
    finished = _check_results_absent_or_complete(workdir, keys)
    assert killed or (proc.returncode == 0 and finished), f"exit {proc.returncode}:\n{err[-3000:]}"

    # 3. To the end: the same parameters as the uninterrupted run.
    proc = _start(entry, workdir, fixtures)
    err = _finish(proc)
    assert proc.returncode == 0, err[-3000:]
    assert _check_results_absent_or_complete(workdir, keys)
    chex.assert_trees_all_close(entry.final_params(workdir), expected, rtol=1e-5, atol=1e-6)
    assert _logged_steps(workdir) == _logged_steps(straight)  # metrics.jsonl reads as one run
    print(f"{name} trial {trial}: SIGTERM saved and stopped; SIGKILL {delay:.1f} s into the "
          f"resumed run ({'killed it' if killed else 'it had finished'}, T = {wall_s:.1f} s); "
          "resumed to equal parameters")
