"""The benchmark run behind experiments.benchmark: step kinds, the PyTorch peer, device scaling.

:func:`run` times, batch size by batch size, every selected kind
(:mod:`experiments.benchmarks.kinds`) on one device together with the PyTorch DCGAN
(:mod:`experiments.benchmarks.torch_dcgan`), all in the same alternating rounds, so PyTorch/JAX
and unlearning/retraining ratios come from one measurement under one load; then
``gan_train_step`` on 1, 2, 4, 8 devices where they exist. ``gan_train_step`` is also timed beside
the peer on every such mesh (and on all devices) that divides the batch, and the comparison names
the fastest JAX mesh. It returns the results.json object;
:func:`markdown` renders it as tables.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import ml_collections

from experiments.benchmarks import kinds as kinds_lib
from jaxunlearn import benchmarking as bm
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn.errors import UserInputError
from jaxunlearn.ops import onednn
from jaxunlearn.train import gan as gan_lib
from jaxunlearn.train import loop

PEER = "torch:gan_train_step"
ONEDNN = "gan_train_step_onednn"  # when selected, also compared with the peer
MULTI_DEVICE = "gan_train_step@{}"  # gan_train_step on a mesh of the first n devices (n > 1)
TIMING_METHOD = (
    "compile_s: lower + compile of the jitted step. Steady state: `warmup` untimed calls, then "
    "`iters` timed calls, each waited on with jax.block_until_ready (donated state threaded from "
    "call to call); median wall time per call (min and IQR also given) and median process CPU "
    "time per call. All steps of one batch size (every kind and the PyTorch peer) are timed "
    "together in `rounds` alternating rounds, each turn opened by one untimed call, so the "
    "ratios between them (PyTorch / JAX, unlearning / retraining) are measured under the same "
    "machine load. images/s = batch size / median. FLOP/s = XLA cost_analysis 'flops' of the "
    "compiled step / median; the PyTorch peer is credited with the same FLOPs (same networks).")


def selected_kinds(config: ml_collections.ConfigDict) -> list[str]:
  """The kinds named by ``config.kinds`` ("all" or a comma-separated list), validated."""
  if config.kinds.strip() == "all":
    return list(kinds_lib.KINDS)
  names = [k.strip() for k in config.kinds.split(",") if k.strip()]
  unknown = [k for k in names if k not in kinds_lib.KINDS]
  if unknown or not names:
    raise UserInputError(f"kinds={config.kinds!r}: unknown {unknown or 'empty list'}; valid: 'all' "
                         f"or a comma-separated list of {', '.join(kinds_lib.KINDS)}")
  return names


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses settings that cannot run, before anything is written."""
  selected_kinds(config)
  for name in ("batch_sizes", "device_counts"):
    values = tuple(config[name])
    if not values or any(int(v) < 1 for v in values):
      raise UserInputError(f"{name}={values}: give one or more positive integers")
  if int(config.cpu_devices) < -1:
    raise UserInputError(f"cpu_devices={config.cpu_devices}: give -1 (one per core), 0 or a count")
  for name in ("iters", "warmup", "rounds", "matmul_size", "scaling_batch_size"):
    if int(config[name]) < (0 if name == "warmup" else 1):
      bound = ">= 0" if name == "warmup" else ">= 1"
      raise UserInputError(f"{name}={config[name]} must be {bound}")


def configure_backend(config: ml_collections.ConfigDict) -> None:
  """Applies ``xla_flags`` and ``cpu_devices``; both need a JAX that has not started a backend."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if not config.xla_flags and not config.cpu_devices:
    return
  if xla_bridge.backends_are_initialized():
    raise RuntimeError("xla_flags and cpu_devices must be applied before JAX starts its backend")
  if config.xla_flags:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {config.xla_flags}".strip()
  if config.cpu_devices:
    n = os.cpu_count() if config.cpu_devices == -1 else int(config.cpu_devices)
    jax.config.update("jax_num_cpu_devices", n)


def _ms(seconds: float | None) -> float | None:
  return None if seconds is None else 1000.0 * seconds


def _row(kind: str, framework: str, batch_size: int, timing: bm.Timing, *, devices: int = 1,
         compile_s: float | None, flops: float | None, xla_bytes: int | None) -> dict[str, Any]:
  s = timing.summary()
  memory, source = bm.peak_memory()
  flops = flops * devices if flops else None  # cost_analysis counts one device's partition
  flops_per_s = flops / s["median_s"] if flops else None
  return {"kind": kind, "framework": framework, "batch_size": batch_size, "devices": devices,
          "compile_s": compile_s, "median_ms": _ms(s["median_s"]), "min_ms": _ms(s["min_s"]),
          "iqr_ms": _ms(s["iqr_s"]), "cpu_median_ms": _ms(s["cpu_median_s"]), "n": s["n"],
          "images_per_s": batch_size / s["median_s"], "flops_per_step": flops,
          "flops_per_s": flops_per_s,
          "xla_buffer_bytes": xla_bytes, "peak_memory_bytes": memory, "peak_memory_source": source}


class _Peer:
  """The PyTorch peer, served by a process of its own (torch_dcgan.serve), or why it is absent.

  In its own process PyTorch's OpenMP threads never share a runtime with XLA's threads or with
  oneDNN's (conv_backend="onednn"): in one process the two slowed each other (NOTES.md, attempt 25).
  """

  def __init__(self, config: ml_collections.ConfigDict, jax_state):
    self.process, self.reason, self.info = None, None, {"available": False}
    if not config.torch_peer:
      self.reason = "disabled (config.torch_peer=False)"
      return
    if config.gan.r1_gamma > 0 or config.gan.ema_decay > 0:
      self.reason = "the peer has neither R1 nor EMA; set gan.r1_gamma = gan.ema_decay = 0"
      return
    if importlib.util.find_spec("torch") is None:
      self.reason = "PyTorch is not installed; the peer was skipped"
      return
    c = config.gan
    self.channels = 1 if c.dataset == "mnist" else 3
    gan = {"channels": self.channels, "g_width": c.dcgan.g_width, "d_width": c.dcgan.d_width,
           "latent_dim": c.latent_dim, "learning_rate": c.optimizer.learning_rate,
           "b1": c.optimizer.b1, "b2": c.optimizer.b2}
    threads = os.cpu_count() if config.torch_threads == -1 else int(config.torch_threads)
    self.process = subprocess.Popen(
        [sys.executable, "-m", "experiments.benchmarks.torch_dcgan"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
    info = self._ask({"cmd": "info", "threads": threads, "gan": gan})
    count = lambda tree: sum(int(x.size) for x in jax.tree.leaves(tree))
    params = {"jax": {"generator": count(jax_state.g_params),
                      "discriminator": count(jax_state.d_params)},
              "torch": info.pop("parameters")}
    if params["jax"] != params["torch"]:
      raise AssertionError(f"the PyTorch peer differs from the JAX DCGAN: parameters {params}")
    self.info = {"available": True, **info, "parameters": params, "process": "separate"}

  def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
    self.process.stdin.write(json.dumps(request) + "\n")
    self.process.stdin.flush()
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f"the PyTorch peer process ended (exit code {self.process.wait()})")
    return json.loads(line)

  def runner(self, batch_size: int) -> Callable[[], bm.ReportedCpuTime]:
    """A fresh peer at this batch size; each call runs one of its train steps."""
    self._ask({"cmd": "make", "batch_size": batch_size, "channels": self.channels})
    return lambda: bm.ReportedCpuTime(self._ask({"cmd": "step"})["cpu_s"])

  def close(self) -> None:
    if self.process is not None:
      self.process.stdin.close()
      self.process.wait()


def run(config: ml_collections.ConfigDict, notice=print) -> dict[str, Any]:
  """Runs the benchmark described by ``config``; returns the results.json object."""
  check_config(config)
  started = time.time()
  load_start = os.getloadavg()
  gan = gan_lib.make_gan(config.gan)
  setup = kinds_lib.Setup(config, gan)
  peaks = {"start": bm.matmul_peak(config.matmul_size, iters=config.iters)}
  notice(f"float32 matmul {config.matmul_size}³: "
         f"{peaks['start']['flops_per_s_median'] / 1e9:.0f} GFLOP/s (median)")
  mesh = parallel.make_mesh(1)
  peer = _Peer(config, setup.gan_state(mesh))
  if peer.reason:
    notice(f"PyTorch peer: {peer.reason}")
  rows, skipped, comparison = [], [], []
  compiled_train = {}  # gan_train_step runners by (devices, batch size), reused for the scaling
  for batch_size in config.batch_sizes:
    runners = {}
    for kind in selected_kinds(config):
      try:
        runners[kind] = bm.prepare(kinds_lib.KINDS[kind].builder(setup, batch_size, mesh))
      # A method module missing or changed, or an optional backend not installed:
      except (ImportError, AttributeError, TypeError, onednn.OnednnUnavailable) as e:
        skipped.append({"kind": kind, "batch_size": batch_size,
                        "reason": f"{type(e).__name__}: {e}"})
        notice(f"{kind}: skipped ({type(e).__name__}: {e})")
    meshes = _peer_device_counts(config, batch_size) if "gan_train_step" in runners else []
    for n in meshes:
      runners[MULTI_DEVICE.format(n)] = bm.prepare(kinds_lib.KINDS["gan_train_step"].builder(
          setup, batch_size, parallel.make_mesh(n)))
    if "gan_train_step" in runners and peer.process is not None:
      runners[PEER] = peer.runner(batch_size)
    notice(f"B={batch_size}: timing {len(runners)} steps in {config.rounds} alternating rounds")
    timings = bm.measure(runners, warmup=config.warmup, iters=config.iters, rounds=config.rounds)
    group = {}
    on_devices = {MULTI_DEVICE.format(n): n for n in meshes}
    for kind, run_ in runners.items():
      jitted = kind != PEER
      group[kind] = _row(kind if kind in kinds_lib.KINDS else "gan_train_step",
                         "jax" if jitted else "torch", batch_size, timings[kind],
                         devices=on_devices.get(kind, 1),
                         compile_s=run_.compile_s if jitted else None,
                         flops=(run_ if jitted else runners["gan_train_step"]).flops,
                         xla_bytes=run_.xla_bytes if jitted else None)
      notice(f"  {group[kind]['kind']} ({group[kind]['framework']}, "
             f"{group[kind]['devices']} device(s)): "
             f"{group[kind]['median_ms']:.1f} ms/step, {group[kind]['images_per_s']:.0f} images/s"
             + (f" (compile {run_.compile_s:.1f} s)" if jitted else ""))
    rows += group.values()
    if PEER in group:
      j, t = group["gan_train_step"], group[PEER]
      comparison.append({"batch_size": batch_size, "jax_median_ms": j["median_ms"],
                         "torch_median_ms": t["median_ms"],
                         "torch_over_jax": t["median_ms"] / j["median_ms"],
                         "torch_over_jax_cpu_time": t["cpu_median_ms"] / j["cpu_median_ms"]})
      by_devices = {1: j["median_ms"], **{n: group[MULTI_DEVICE.format(n)]["median_ms"]
                                          for n in meshes}}
      best = min(by_devices, key=by_devices.get)
      comparison[-1].update(jax_median_ms_by_devices=by_devices, jax_best_devices=best,
                            torch_over_jax_best=t["median_ms"] / by_devices[best])
      if ONEDNN in group:
        comparison[-1].update(jax_onednn_median_ms=group[ONEDNN]["median_ms"],
                              torch_over_jax_onednn=t["median_ms"] / group[ONEDNN]["median_ms"])
      notice(f"  PyTorch / JAX = {comparison[-1]['torch_over_jax']:.2f} (1 device), "
             f"{comparison[-1]['torch_over_jax_best']:.2f} (best: {best} device(s))"
             + (f", {comparison[-1]['torch_over_jax_onednn']:.2f} (oneDNN convolutions)"
                if ONEDNN in group else ""))
    if "gan_train_step" in runners:
      compiled_train[(1, batch_size)] = runners["gan_train_step"]
    for n in meshes:
      compiled_train[(n, batch_size)] = runners[MULTI_DEVICE.format(n)]
    del runners
  peer.close()
  scaling = _scaling(config, setup, compiled_train, notice)
  peaks["end"] = bm.matmul_peak(config.matmul_size, iters=config.iters)
  # The machine's peak: the better of the two measurements (both medians, like the step times).
  peak = max(p["flops_per_s_median"] for p in peaks.values())
  for row in rows + [s for s in scaling if "flops_per_s" in s]:
    row["fraction_of_matmul_peak"] = row["flops_per_s"] / peak if row["flops_per_s"] else None
  return {
      "rows": rows, "skipped": skipped,
      "peer": {**peer.info, "reason": peer.reason, "comparison": comparison},
      "unlearn_vs_retrain": _unlearn_vs_retrain(rows),
      "scaling": scaling,
      "matmul_peak": {**peaks, "reference_flops_per_s": peak},
      "machine": _machine(load_start),
      "parameters": {"generator_width": config.gan.dcgan.g_width,
                     "discriminator_width": config.gan.dcgan.d_width,
                     "latent_dim": config.gan.latent_dim, "dataset": config.gan.dataset,
                     "stylegan2": loop.architecture(config.stylegan2)},
      "kinds": {k: kinds_lib.KINDS[k].description for k in selected_kinds(config)},
      "timing_method": TIMING_METHOD, "wall_s": time.time() - started}


def _machine(load_start: tuple[float, float, float]) -> dict[str, Any]:
  """runs.environment() (versions, CPU model, devices, XLA flags), the device count and the load
  average (1, 5, 15 min) at the run's start and end."""
  machine = runs.environment()
  del machine["load_average"]  # at this call: the end, given below with the start
  return {**machine, "device_count": jax.device_count(), "load_average_start": list(load_start),
          "load_average_end": list(os.getloadavg())}


def _unlearn_vs_retrain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Step time of each unlearning kind over that of its retraining kind at the same batch size."""
  jax_rows = {(r["kind"], r["batch_size"]): r for r in rows
              if r["framework"] == "jax" and r["devices"] == 1}
  out = []
  for (kind, batch_size), row in jax_rows.items():
    spec = kinds_lib.KINDS[kind]
    base = jax_rows.get((spec.retrain_kind, batch_size))
    if spec.unlearning and base is not None:
      out.append({"kind": kind, "retrain_kind": spec.retrain_kind, "batch_size": batch_size,
                  "unlearn_step_ms": row["median_ms"], "retrain_step_ms": base["median_ms"],
                  "step_time_ratio": row["median_ms"] / base["median_ms"],
                  "cpu_time_ratio": row["cpu_median_ms"] / base["cpu_median_ms"]})
  return out


def _scaling(config: ml_collections.ConfigDict, setup: kinds_lib.Setup,
             compiled: dict[tuple[int, int], bm.Runner], notice) -> list[dict[str, Any]]:
  """gan_train_step images/s on each device count of ``config.device_counts`` that exists.

  ``compiled`` holds runners already compiled, by (devices, batch size): reused, not recompiled.
  """
  batch_size, available = config.scaling_batch_size, jax.device_count()
  out, runners = [], {}
  for n in config.device_counts:
    if n > available:
      out.append({"devices": n, "skipped": f"only {available} device(s) present"})
    elif batch_size % n:
      out.append({"devices": n, "skipped": f"scaling_batch_size={batch_size} does not divide "
                                           f"by {n}"})
    elif (n, batch_size) in compiled:
      runners[n] = compiled[(n, batch_size)]
    else:
      mesh = parallel.make_mesh(n)
      runners[n] = bm.prepare(kinds_lib.KINDS["gan_train_step"].builder(setup, batch_size, mesh))
  if runners:
    timings = bm.measure(runners, warmup=config.warmup, iters=config.iters, rounds=config.rounds)
    rows = {n: _row("gan_train_step", "jax", batch_size, timings[n], devices=n,
                    compile_s=runner.compile_s, flops=runner.flops, xla_bytes=runner.xla_bytes)
            for n, runner in runners.items()}
    for n, row in rows.items():
      out.append({**row, "speedup": row["images_per_s"] / rows[1]["images_per_s"] if 1 in rows
                  else None})
      notice(f"{n} device(s), B={batch_size}: {row['images_per_s']:.0f} images/s")
  if jax.default_backend() == "cpu" and available > (os.cpu_count() or 1):
    out.append({"note": f"{available} virtual CPU devices share {os.cpu_count()} cores: "
                        "speedups here measure overhead, not hardware scaling"})
  return sorted(out, key=lambda r: r.get("devices", 1 << 30))


def _peer_device_counts(config: ml_collections.ConfigDict, batch_size: int) -> list[int]:
  """The device counts n > 1 of ``config.device_counts`` (and the count of all devices) on which
  gan_train_step is also timed beside the peer: present, and dividing the batch."""
  available = jax.device_count()
  counts = {int(n) for n in config.device_counts} | {available}
  return sorted(n for n in counts if 1 < n <= available and batch_size % n == 0)


def _fmt(value: Any, spec: str) -> str:
  return "–" if value is None else format(value, spec)


def markdown(results: dict[str, Any]) -> str:
  """benchmark.md: the step table, the PyTorch comparison, unlearn/retrain ratios, scaling."""
  p, m = results["parameters"], results["machine"]
  lines = [f"# Step benchmark: {p['dataset']} DCGAN, G width {p['generator_width']}, "
           f"D width {p['discriminator_width']}", "",
           f"Machine: {m['cpu_count']} CPU cores ({m.get('cpu', 'model not recorded')}), "
           f"{m['device_count']} {m['backend']} device(s) "
           f"({m['device_kind']}); load average {m['load_average_start'][0]:.1f} at the start, "
           f"{m['load_average_end'][0]:.1f} at the end. float32 matmul peak measured in this run: "
           f"{results['matmul_peak']['reference_flops_per_s'] / 1e9:.0f} GFLOP/s.", "",
           "| kind | framework | devices | batch | compile s | median ms | CPU ms | images/s "
           "| GFLOP/step | GFLOP/s | % of matmul peak | XLA buffers MiB | peak memory MiB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in sorted(results["rows"],
                  key=lambda r: (r["kind"], r["batch_size"], r["framework"], r["devices"])):
    lines.append(
        f"| {r['kind']} | {r['framework']} | {r['devices']} | {r['batch_size']} | "
        f"{_fmt(r['compile_s'], '.1f')} | "
        f"{r['median_ms']:.1f} | {r['cpu_median_ms']:.1f} | {r['images_per_s']:.0f} | "
        f"{_fmt(r['flops_per_step'] and r['flops_per_step'] / 1e9, '.2f')} | "
        f"{_fmt(r['flops_per_s'] and r['flops_per_s'] / 1e9, '.1f')} | "
        f"{_fmt(r['fraction_of_matmul_peak'] and 100 * r['fraction_of_matmul_peak'], '.0f')} | "
        f"{_fmt(r['xla_buffer_bytes'] and r['xla_buffer_bytes'] / 2**20, '.1f')} | "
        f"{r['peak_memory_bytes'] / 2**20:.0f} |")
  source = results["rows"][0]["peak_memory_source"] if results["rows"] else "–"
  lines += ["", f"Peak memory: {source}. XLA buffers: arguments + outputs + temporaries − donated "
            "bytes of the compiled step, per device (XLA memory_analysis). GFLOP/step: XLA "
            "cost_analysis, summed over devices.", ""]
  for s in results["skipped"]:
    lines.append(f"- skipped {s['kind']} (B={s['batch_size']}): {s['reason']}")
  peer = results["peer"]
  lines += ["", "## JAX vs the PyTorch peer (gan_train_step)", ""]
  if not peer["available"]:
    lines.append(f"PyTorch peer skipped: {peer['reason']}")
  else:
    where = " in a process of its own" if peer.get("process") == "separate" else ""
    lines += [f"PyTorch {peer['torch_version']}, {peer['torch_threads']} threads{where}; parameters "
              f"JAX {peer['parameters']['jax']}, PyTorch {peer['parameters']['torch']}.", "",
              "| batch | JAX ms | PyTorch ms | PyTorch / JAX (wall) | PyTorch / JAX (CPU time) "
              "| JAX ms by devices | PyTorch / JAX, best JAX mesh |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    with_onednn = any("torch_over_jax_onednn" in c for c in peer["comparison"])
    if with_onednn:
      lines[-2] += " JAX ms, oneDNN convolutions | PyTorch / JAX, oneDNN convolutions |"
      lines[-1] += "---:|---:|"
    for c in peer["comparison"]:
      by_devices = ", ".join(f"{n}: {ms:.1f}" for n, ms in c["jax_median_ms_by_devices"].items())
      lines.append(f"| {c['batch_size']} | {c['jax_median_ms']:.1f} | {c['torch_median_ms']:.1f} | "
                   f"{c['torch_over_jax']:.2f} | {c['torch_over_jax_cpu_time']:.2f} | "
                   f"{by_devices} | {c['torch_over_jax_best']:.2f} ({c['jax_best_devices']}) |")
      if with_onednn:
        lines[-1] += (f" {c['jax_onednn_median_ms']:.1f} | {c['torch_over_jax_onednn']:.2f} |"
                      if "jax_onednn_median_ms" in c else " – | – |")
  if results["unlearn_vs_retrain"]:
    lines += ["", "## Unlearning step vs retraining step (same run, same batch size)", "",
              "| kind | batch | step ms | retrain kind | retrain step ms | ratio (wall) | "
              "ratio (CPU time) |", "|---|---:|---:|---|---:|---:|---:|"]
    for u in results["unlearn_vs_retrain"]:
      lines.append(f"| {u['kind']} | {u['batch_size']} | {u['unlearn_step_ms']:.1f} | "
                   f"{u['retrain_kind']} | {u['retrain_step_ms']:.1f} | "
                   f"{u['step_time_ratio']:.2f} | {u['cpu_time_ratio']:.2f} |")
  lines += ["", "## gan_train_step on several devices", "",
            "| devices | batch | median ms | images/s | speedup |", "|---:|---:|---:|---:|---:|"]
  notes = []
  for s in results["scaling"]:
    if "note" in s:
      notes.append(s["note"])
    elif "skipped" in s:
      lines.append(f"| {s['devices']} | – | – | – | skipped: {s['skipped']} |")
    else:
      lines.append(f"| {s['devices']} | {s['batch_size']} | {s['median_ms']:.1f} | "
                   f"{s['images_per_s']:.0f} | {_fmt(s['speedup'], '.2f')} |")
  lines += [""] + notes + ["", f"Method: {results['timing_method']}", ""]
  return "\n".join(lines)
