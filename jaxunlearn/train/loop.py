"""The GAN training loop: data, mesh, resume, logging, grids, checkpoints, timing.

``train_and_evaluate(config, workdir, ...)`` is what ``experiments.train_gan`` calls; it is
importable so tests and notebooks run the same code. Order of work:

1. Validate everything (dataset, splits, forget SPEC, mesh, batch size, workdir) before
   writing anything.
2. Resume from the newest intact checkpoint in ``workdir/checkpoints`` (else start fresh).
3. Compile the step ahead of time (timed apart), then train; every step waits for its result.
4. Log to metrics.jsonl, write fixed-latent grids, checkpoint periodically and on SIGTERM/SIGINT.
5. Write results.json once, atomically, at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any

import jax
import numpy as np

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import images as images_lib
from jaxunlearn import latents as latents_lib
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn import sampling
from jaxunlearn.data import EpochBatches, ImageDataset, load_dataset, make_splits, parse_forget_spec
from jaxunlearn.data.splits import ForgetSet, Splits
from jaxunlearn.errors import NonFiniteError, UserInputError
from jaxunlearn.train import gan as gan_lib

ARCH_KEYS = ("model", "dataset", "latent_dim")
# dcgan.conv_transpose and dcgan.conv_backend: same parameters, same function.
FORMULATION_KEYS = ("conv_transpose", "conv_backend")


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """The validated inputs of a GAN training run (built before anything is written)."""
  dataset: ImageDataset
  splits: Splits
  forget: ForgetSet | None
  train_indices: np.ndarray  # indices into dataset.train_* of the images this GAN trains on


def prepare_data(config, data_dir: str | None, seed: int, forget_spec: str | None,
                 dataset: ImageDataset | None = None) -> TrainingData:
  """Loads the dataset (unless ``dataset``, loaded before from the same config, is given), holds
  out the non-member pool and applies the forget SPEC."""
  dataset = dataset or load_dataset(config.dataset, data_dir, config.cifar10_variant)
  splits = make_splits(dataset.train_labels, config.holdout_size, config.split_seed)
  forget = None
  positions = np.arange(len(splits.gan_train))
  if forget_spec:
    forget = parse_forget_spec(forget_spec, dataset.train_labels[splits.gan_train],
                               dataset.class_names, seed)
    positions = forget.retain_positions(len(splits.gan_train))
  return TrainingData(dataset, splits, forget, splits.gan_train[positions])


def architecture(config) -> dict[str, Any]:
  """The config fields that fix the networks (stored in every checkpoint): :data:`ARCH_KEYS` and
  the model's own sub-config, ``config.dcgan`` or ``config.stylegan2`` (named by ``config.model``),
  less :data:`FORMULATION_KEYS`: those change how a layer is computed, not its parameters or
  function, so checkpoints stay comparable and resumable across them.
  """
  record = {k: (config[k].to_dict() if hasattr(config[k], "to_dict") else config[k])
            for k in (*ARCH_KEYS, config.model)}
  record[config.model] = {k: v for k, v in record[config.model].items()
                          if k not in FORMULATION_KEYS}
  return record


def nonfinite_quantities(metrics: dict[str, float]) -> list[str]:
  return [k for k, v in metrics.items() if not math.isfinite(v)]


def check_finite(step: int, metrics: dict[str, float]) -> None:
  """Raises NonFiniteError naming the step and every non-finite logged quantity."""
  bad = nonfinite_quantities(metrics)
  if bad:
    raise NonFiniteError(f"non-finite {', '.join(bad)} at step {step}; the last good checkpoint "
                         "is kept (lower the learning rate or enable R1, or set "
                         "--config.nonfinite_policy=skip)")


def train_and_evaluate(config, workdir: str, *, data_dir: str | None = None, seed: int = 0,
                       forget_spec: str | None = None, flags: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
  """Trains a GAN (on D, or on D_r with ``forget_spec``) and returns the results dict."""
  data = prepare_data(config, data_dir, seed, forget_spec)
  mesh = parallel.make_mesh(config.num_devices)
  parallel.check_batch_size(config.batch_size, mesh)
  batches = EpochBatches(len(data.train_indices), config.batch_size, seed)
  total_steps = (config.num_steps if config.num_steps > 0
                 else config.num_epochs * batches.steps_per_epoch)
  gan = gan_lib.make_gan(config)
  train_step = gan_lib.make_train_step(config, gan)  # validates the model's training settings
  workdir = runs.prepare_workdir(workdir)
  finished = runs.finished_results(workdir)
  if finished is not None:
    return finished
  runs.write_config(workdir, config, {**(flags or {}), "seed": seed, "forget": forget_spec})

  image_shape = (32, 32, data.dataset.channels)
  rep = parallel.replicated(mesh)
  init_fn = jax.jit(functools.partial(gan.init, image_shape=image_shape), out_shardings=rep)
  state = init_fn(jax.random.key(seed))
  meta = {"kind": "gan", "architecture": architecture(config), "dataset": config.dataset,
          "dataset_fingerprint": data.dataset.fingerprint(), "forget": forget_spec,
          "seed": seed, "train_s": 0.0}
  checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(state, rep))
  metrics_log = runs.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  train_s, skipped = 0.0, 0
  if restored is not None:
    step0, state, old_meta = restored
    _check_compatible(old_meta, meta, checkpointer.directory)
    train_s = float(old_meta.get("train_s", 0.0))
    skipped = int(old_meta.get("skipped_steps", 0))
    runs.notice(f"resuming from the checkpoint at step {step0}")
  metrics_log.truncate_after(int(state.step))

  if config.nonfinite_policy not in ("stop", "skip"):
    raise UserInputError(f"nonfinite_policy={config.nonfinite_policy!r}; valid: 'stop', 'skip'")
  skip_nonfinite = config.nonfinite_policy == "skip"
  # Skipping a bad step needs the state from before it, so the state is then not donated.
  step_fn = parallel.jit_step(train_step, mesh, donate_state=not skip_nonfinite)
  base_key = jax.random.key(seed)
  grid_z = latents_lib.latent_bank("grid", config.latent_dim)
  generate = sampling.make_generate_fn(gan.generate, mesh)
  batch_for = lambda s: parallel.shard_batch(mesh, data.dataset.model_images(
      "train", data.train_indices[batches.indices(s)]))

  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch_for(int(state.step)), jax.random.fold_in(base_key, 0)).compile()
  compile_s = time.perf_counter() - t0

  def save(step: int) -> None:
    checkpointer.save(step, state, {**meta, "train_s": train_s, "skipped_steps": skipped})

  def write_grid(name: str) -> None:
    images = generate(state.g_ema_params, state.g_batch_stats, grid_z, _grid_batch(mesh))
    images_lib.save_grid(os.path.join(workdir, f"grid_{name}.png"), images)

  step = int(state.step)
  with runs.StopSignal() as stop, runs.progress(total_steps, step, "train_gan") as bar:
    while step < total_steps:
      t = time.perf_counter()
      previous = state
      state, metrics = parallel.run_step(compiled, state, batch_for(step),
                                         jax.random.fold_in(base_key, step))
      train_s += time.perf_counter() - t
      step += 1
      if skip_nonfinite and nonfinite_quantities(metrics):
        skipped += 1
        state = previous.replace(step=previous.step + 1)
        metrics_log.write({"step": step, "skipped_nonfinite": nonfinite_quantities(metrics)})
      else:
        check_finite(step, metrics)
      bar.update(1)
      if step % config.log_every == 0 or step == total_steps:
        metrics_log.write({"step": step, **metrics, "train_s": round(train_s, 3),
                           "epoch": step / batches.steps_per_epoch})
        bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items() if k in ("d_loss", "g_loss")})
      if step % config.grid_every == 0:
        write_grid(f"{step:06d}")
      if step % config.checkpoint_every == 0 or step == total_steps:
        save(step)
      stop.stop_if_received(f"step {step}", lambda: (save(step), checkpointer.close()))
  checkpointer.close()
  write_grid("final")
  results = {
      "method": "retrain" if forget_spec else "train_gan", "dataset": config.dataset,
      "provenance": data.dataset.provenance, "forget": forget_spec, "seed": seed,
      "num_train_images": int(len(data.train_indices)), "steps": total_steps,
      "epochs": total_steps / batches.steps_per_epoch, "batch_size": config.batch_size,
      "image_passes": total_steps * config.batch_size * 2, "skipped_nonfinite_steps": skipped,
      "timing": {"train_s": train_s, "compile_s": compile_s,
                 "steps_per_s": total_steps / train_s if train_s else None},
      "devices": [str(d) for d in mesh.devices.flat], "environment": runs.environment(),
  }
  runs.write_results(workdir, results)
  return results


def _grid_batch(mesh) -> int:
  n = parallel.data_size(mesh)
  return n * math.ceil(64 / n)


def _check_compatible(old: dict[str, Any], new: dict[str, Any], where: str) -> None:
  for key in ("architecture", "dataset", "forget", "seed", "dataset_fingerprint"):
    if old.get(key) != new.get(key):
      raise UserInputError(f"the checkpoint in {where} was written with {key}={old.get(key)!r}, "
                           f"this run has {key}={new.get(key)!r}; use a fresh --workdir")
