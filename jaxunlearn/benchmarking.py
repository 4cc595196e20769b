"""Timing helpers for benchmarks: compile time, steady-state call times, FLOPs, memory, peak FLOP/s.

A benchmark case is a jitted function and its arguments (:class:`Case`). :func:`prepare` lowers
and compiles it once (timing the compilation and reading XLA's cost and memory analyses) and
returns a :class:`Runner`, a zero-argument callable that runs one call and waits for its result.
A step that donates its state (argument 0) is threaded: each call gets the state the previous
call returned. :func:`measure` times runners in rounds, alternating between them, so that on a
shared machine every runner sees the same background load and their ratios stay meaningful even
when absolute times do not.

Each timed call records wall time (``time.perf_counter``) and process CPU time
(``time.process_time``, all threads): on a machine shared with other jobs, CPU time per call is
the steadier measure of the work done, wall time the one a user waits for.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Case:
  """One benchmark case.

  Attributes:
    fn: a jitted function (``jax.jit`` or :class:`jaxunlearn.parallel.MeshJitted`) with ``.lower``.
    args: its arguments.
    items: images processed per call (for images/s).
    carry: ``fn`` returns ``(state, aux)`` and donates ``args[0]``: the next call gets the state.
  """
  fn: Any
  args: tuple
  items: int
  carry: bool = True


@dataclasses.dataclass
class Runner:
  """A compiled case: calling it runs one step and blocks until the result is ready."""
  compiled: Any
  args: list
  carry: bool
  compile_s: float
  flops: float | None
  xla_bytes: int | None

  def __call__(self) -> None:
    out = self.compiled(*self.args)
    jax.block_until_ready(out)
    if self.carry:
      self.args[0] = out[0]


def prepare(case: Case) -> Runner:
  """Lowers and compiles ``case`` (timed) and reads its FLOPs and XLA buffer sizes."""
  start = time.perf_counter()
  compiled = case.fn.lower(*case.args).compile()
  compile_s = time.perf_counter() - start
  return Runner(compiled, list(case.args), case.carry, compile_s, _flops(compiled),
                _xla_bytes(compiled))


def _flops(compiled) -> float | None:
  """'flops' of XLA's cost analysis (a dict, or a list of one dict in older jax), if any."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # some backends raise instead of returning None
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops is not None and flops > 0 else None


def _xla_bytes(compiled) -> int | None:
  """Buffers the executable needs: arguments + outputs + temporaries − donated (aliased) bytes."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


@dataclasses.dataclass
class Timing:
  """Per-call wall and CPU seconds of one runner."""
  wall: list[float] = dataclasses.field(default_factory=list)
  cpu: list[float] = dataclasses.field(default_factory=list)

  def summary(self) -> dict[str, float]:
    wall, cpu = np.asarray(self.wall), np.asarray(self.cpu)
    q1, q3 = np.percentile(wall, [25, 75])
    return {"median_s": float(np.median(wall)), "min_s": float(wall.min()),
            "iqr_s": float(q3 - q1), "cpu_median_s": float(np.median(cpu)), "n": len(wall)}


@dataclasses.dataclass(frozen=True)
class ReportedCpuTime:
  """What a runner whose work runs in another process returns: that process's CPU seconds."""
  seconds: float


def measure(runners: dict[str, Callable[[], Any]], *, warmup: int, iters: int, rounds: int = 1
            ) -> dict[str, Timing]:
  """Times every runner ``iters`` times after ``warmup`` untimed calls.

  CPU time is this process's, unless a runner returns :class:`ReportedCpuTime`.

  The timed calls are split into ``rounds`` rounds; within a round each runner makes its share of
  calls in turn, so runners measured together alternate and share the machine's load. With
  several runners, each turn starts with one untimed call: the first call after a switch pays for
  the other runner's threads winding down and for cold caches.
  """
  for run in runners.values():
    for _ in range(warmup):
      run()
  timings = {name: Timing() for name in runners}
  rounds = max(1, min(rounds, iters))
  for r in range(rounds):
    n = iters // rounds + (1 if r < iters % rounds else 0)
    for name, run in runners.items():
      if len(runners) > 1:
        run()
      for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        timings[name].wall.append(time.perf_counter() - wall)
        timings[name].cpu.append(result.seconds if isinstance(result, ReportedCpuTime)
                                 else time.process_time() - cpu)
  return timings


def matmul_peak(size: int, *, warmup: int = 2, iters: int = 10) -> dict[str, float]:
  """Measured float32 matmul throughput of the default device: (size, size) @ (size, size).

  Returns the FLOP/s at the median and at the fastest call (2·size³ FLOPs per call).
  """
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  compiled = jax.jit(jnp.dot).lower(a, b).compile()
  timing = measure({"matmul": lambda: jax.block_until_ready(compiled(a, b))}, warmup=warmup,
                   iters=iters)["matmul"].summary()
  flops = 2.0 * size ** 3
  return {"size": size, "flops_per_s_median": flops / timing["median_s"],
          "flops_per_s_best": flops / timing["min_s"], "median_s": timing["median_s"]}


def peak_memory() -> tuple[int | None, str]:
  """(bytes, source): the device's peak memory in use, else the process's maximum RSS.

  On CPU there are no device memory statistics; the process max RSS (``getrusage``) is monotone
  over the whole run, so it includes every earlier case and the Python process itself.
  """
  stats = None
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device memory_stats peak_bytes_in_use"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  rss *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
  return int(rss), "process max RSS (resource.getrusage; monotone over the run)"
