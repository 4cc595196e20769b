"""The files every run leaves in its workdir (interface.md): config.json, metrics.jsonl,
results.json (written once, atomically) and a progress bar.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Iterable

import jax

from jaxunlearn.errors import UserInputError

RESULTS_FILE = "results.json"


def prepare_workdir(workdir: str) -> str:
  """Creates the workdir and proves it is writable; UserInputError otherwise."""
  if not workdir:
    raise UserInputError("--workdir is required: the folder where the run writes its files")
  path = os.path.abspath(workdir)
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test"):
      pass
  except OSError as e:
    raise UserInputError(f"workdir {path} is not writable ({e.strerror}); choose a folder you "
                         "can write to") from None
  return path


def finished_results(workdir: str) -> dict[str, Any] | None:
  """The results of a run that has finished in ``workdir`` (saying so), else None.

  A finished run is never redone: rerunning its command returns its results.json.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return None
  notice(f"{path} exists: this run has finished; nothing to do")
  return read_json(path)


def write_results(workdir: str, results: dict[str, Any]) -> None:
  """results.json, written once and atomically: it is either complete or absent."""
  write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)


def environment() -> dict[str, Any]:
  """Software versions, devices, CPU and XLA flags, for config.json and report cards.

  ``xla_flags`` is ``$XLA_FLAGS`` as this process saw it: on XLA:CPU the flags change step times
  by tens of percent (experiments/benchmarks/NOTES.md), so a run's timings are read with them, and
  with ``load_average`` (1, 5, 15 min, at the call: a run's latest start in config.json, its end in
  results.json), which says whether the run shared the machine.
  """
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return {"python": sys.version.split()[0], "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__, "optax": optax.__version__, "platform": platform.platform(),
          "cpu": cpu_model(), "cpu_count": os.cpu_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_average": _load_average(),
          "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "device_kind": jax.devices()[0].device_kind, "process_count": jax.process_count()}


def _load_average() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:  # not available on this platform
    return None


def cpu_model() -> str:
  """The host CPU's model name (Linux ``/proc/cpuinfo``), else ``platform.processor()``."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to a temp file in the same folder and renames it: never a partial file."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _json_default(x: Any) -> Any:
  import numpy as np  # pylint: disable=g-import-not-at-top
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x)}")


def write_config(workdir: str, config: Any, flags: dict[str, Any]) -> None:
  """config.json: the resolved config, the flags, the seed, versions and devices."""
  cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  write_json_atomic(os.path.join(workdir, "config.json"),
                    {"config": cfg, "flags": flags, "environment": environment()})


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


class MetricsLog:
  """Appends one JSON object per logged step to metrics.jsonl.

  On resume, :meth:`truncate_after` drops lines written after the restored checkpoint, so the
  file reads as one uninterrupted run.
  """

  def __init__(self, path: str):
    self.path = path

  def truncate_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    kept = [line for line in self._lines() if json.loads(line).get("step", 0) <= step]
    with open(self.path, "w") as f:
      f.writelines(kept)

  def _lines(self) -> Iterable[str]:
    with open(self.path) as f:
      for line in f:
        try:
          json.loads(line)
        except json.JSONDecodeError:  # A line cut by a kill.
          continue
        yield line

  def write(self, record: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(record, default=_json_default) + "\n")

  def read(self) -> list[dict[str, Any]]:
    return [json.loads(line) for line in self._lines()] if os.path.exists(self.path) else []


def notice(message: str) -> None:
  """A one-line status message for the user (stderr, process 0 only)."""
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def progress(total: int, initial: int, desc: str):
  """A tqdm progress bar with ETA on process 0 (disabled elsewhere)."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, desc=desc, disable=jax.process_index() != 0,
              dynamic_ncols=True, mininterval=2.0)


class StopSignal:
  """Pre-emption: turns SIGTERM/SIGINT into a flag that a loop checks at its safe points.

  A loop calls :meth:`stop_if_received` right after a step (or round) has finished; on a received
  signal it saves a checkpoint through ``save`` and exits with a message that says how to resume.
  The handlers are installed only when ``enabled`` and in the main thread (signal handlers cannot
  be installed elsewhere); the previous handlers come back on exit.

  Usage::

    with runs.StopSignal() as stop:
      while step < total:
        state = step_fn(state, ...)
        stop.stop_if_received(f"step {step}", save)
  """

  def __init__(self, enabled: bool = True):
    self.enabled = enabled and threading.current_thread() is threading.main_thread()
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> "StopSignal":
    if self.enabled:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame) -> None:  # pylint: disable=unused-argument
    self.received = signum

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def stop_if_received(self, where: str, save: Callable[[], None]) -> None:
    """After a signal: ``save()``, then SystemExit naming the signal and ``where`` it stopped."""
    if self.received is None:
      return
    save()
    name = signal.Signals(self.received).name
    raise SystemExit(f"stopped by {name} at {where}; checkpoint saved, rerun the same command to "
                     "resume")
