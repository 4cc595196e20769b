"""Training the evaluation and feedback classifiers (evaluation.md §1).

``train_and_evaluate(config, workdir, ...)`` is what ``experiments.train_classifier`` calls:
validate, resume from the newest intact checkpoint, train with a pure data-parallel step,
log metrics.jsonl (test accuracy at every epoch end), checkpoint periodically, then save the
final checkpoint with its meta (test accuracy, seed, role, feature dimension, data
fingerprint, parameter hash) and write results.json once, atomically.

:func:`fit` trains a fresh classifier on in-memory images (the downstream task, §7) with the
same step.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn.data import EpochBatches, load_dataset, resolve_data_dir
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifiers as clf
from jaxunlearn.train.loop import check_finite


def augment(images: jax.Array, rng: jax.Array, *, shift: int, flip: bool) -> jax.Array:
  """Random translations by up to ±``shift`` pixels and (optionally) horizontal flips.

  Borders are filled by edge replication, which for MNIST (padded with -1) is the background.
  images: (N, H, W, C) -> (N, H, W, C).
  """
  n, h, w, c = images.shape
  shift_key, flip_key = jax.random.split(rng)
  if shift > 0:
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    offsets = jax.random.randint(shift_key, (n, 2), 0, 2 * shift + 1)
    images = jax.vmap(lambda x, o: jax.lax.dynamic_slice(x, (o[0], o[1], 0), (h, w, c)))(
        padded, offsets)
  if flip:
    mirrored = jax.random.bernoulli(flip_key, 0.5, (n, 1, 1, 1))
    images = jnp.where(mirrored, images[:, :, ::-1], images)
  return images


def train_step(state: clf.ClassifierState, batch: dict[str, jax.Array], rng: jax.Array, *,
               module, optimizer: optax.GradientTransformation, shift: int = 0, flip: bool = False
               ) -> tuple[clf.ClassifierState, dict[str, jax.Array]]:
  """One step on the mean softmax cross-entropy of a batch (BatchNorm in training mode).

  Args:
    state: parameters θ, BatchNorm statistics, optimizer state.
    batch: 'images' (B, 32, 32, C) in [-1, 1] and 'labels' (B,) int.
    rng: key for the augmentation of this step.
  """
  images = augment(batch["images"], rng, shift=shift, flip=flip)

  def loss_fn(params):
    (logits, _), new_vars = module.apply({"params": params, "batch_stats": state.batch_stats},
                                         images, train=True, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()
    return loss, (new_vars.get("batch_stats", {}), logits)

  (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
  return new_state, {"loss": loss, "accuracy": accuracy}


def accuracy_from_predictions(predicted: np.ndarray, labels: np.ndarray, num_classes: int
                              ) -> dict[str, Any]:
  """Accuracy overall and per class (None for a class without images)."""
  correct = predicted == labels
  per_class = [float(correct[labels == k].mean()) if np.any(labels == k) else None
               for k in range(num_classes)]
  return {"accuracy": float(correct.mean()), "per_class_accuracy": per_class, "n": int(len(labels))}


def accuracy_report(classifier: clf.TrainedClassifier, images: np.ndarray, labels: np.ndarray,
                    mesh: Mesh, batch_size: int = 500) -> dict[str, Any]:
  """Test accuracy of a classifier overall and per class."""
  predicted = classifier.predict(images, mesh, batch_size)["labels"]
  return accuracy_from_predictions(predicted, labels, classifier.module.num_classes)


@functools.lru_cache(maxsize=8)
def _fit_functions(module, opt_items: tuple, total_steps: int, shift: int, flip: bool,
                   image_shape: tuple[int, ...], mesh: Mesh):
  """(init, step) of :func:`fit`, jitted once per recipe so repeated fits reuse the compilation."""
  optimizer = clf.make_optimizer(dict(opt_items), total_steps)
  init = jax.jit(functools.partial(clf.create_state, module, optimizer, image_shape=image_shape),
                 out_shardings=parallel.replicated(mesh))
  step = parallel.jit_step(functools.partial(train_step, module=module, optimizer=optimizer,
                                             shift=shift, flip=flip), mesh)
  return init, step


def fit(module, opt: dict[str, Any], images: np.ndarray, labels: np.ndarray, *, num_epochs: int,
        batch_size: int, seed: int, mesh: Mesh, shift: int = 0, flip: bool = False) -> dict:
  """Trains a fresh ``module`` from ``seed`` on in-memory images; returns its variables.

  images: (N, 32, 32, C) in [-1, 1]; labels: (N,) int. ``num_epochs`` passes of ``batch_size``
  (the last partial batch of an epoch is dropped), optimizer per :func:`classifiers.make_optimizer`.
  """
  parallel.check_batch_size(batch_size, mesh)
  if len(images) < batch_size:
    raise UserInputError(f"{len(images)} training images are fewer than the batch size {batch_size}")
  batches = EpochBatches(len(images), batch_size, seed)
  total_steps = num_epochs * batches.steps_per_epoch
  init, step_fn = _fit_functions(module, tuple(sorted(dict(opt).items())), total_steps, shift,
                                 flip, tuple(images.shape[1:]), mesh)
  state = init(jax.random.key(seed))
  base_key = jax.random.fold_in(jax.random.key(seed), 1)
  labels = labels.astype(np.int32)
  for step in range(total_steps):
    idx = batches.indices(step)
    batch = parallel.shard_batch(mesh, {"images": images[idx], "labels": labels[idx]})
    state, metrics = parallel.run_step(step_fn, state, batch, jax.random.fold_in(base_key, step))
    check_finite(step + 1, metrics)
  return {"params": state.params, "batch_stats": state.batch_stats}


def _check_compatible(old: dict[str, Any], new: dict[str, Any], where: str) -> None:
  for key in ("architecture", "dataset", "dataset_fingerprint", "role", "seed"):
    if old.get(key) != new.get(key):
      raise UserInputError(f"the checkpoint in {where} was written with {key}={old.get(key)!r}, "
                           f"this run has {key}={new.get(key)!r}; use a fresh --workdir")


def _exact_subset_accuracy(config, data_dir: str | None, classifier: clf.TrainedClassifier,
                           mesh: Mesh, batch_size: int) -> float | None:
  """CIFAR-10 trained on the lossy copy: accuracy on the pixel-exact test images, if present."""
  if config.dataset != "cifar10" or config.cifar10_variant != "jpeg_full":
    return None
  if resolve_data_dir(data_dir) is None:
    return None  # tensorflow-datasets already holds the original pixels
  try:
    exact = load_dataset("cifar10", data_dir, "exact_subset")
  except UserInputError:
    return None
  return accuracy_report(classifier, exact.model_images("test"), exact.test_labels, mesh,
                         batch_size)["accuracy"]


def train_and_evaluate(config, workdir: str, *, data_dir: str | None = None, seed: int = 0,
                       flags: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains one classifier on the full training split and returns the results dict."""
  if config.role not in clf.ROLES:
    raise UserInputError(f"unknown role {config.role!r}; valid: {', '.join(clf.ROLES)}")
  arch = clf.architecture(config)
  dataset = load_dataset(config.dataset, data_dir, config.cifar10_variant)
  mesh = parallel.make_mesh(config.num_devices)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  batches = EpochBatches(len(dataset.train_labels), config.batch_size, seed)
  total_steps = (config.num_steps if config.num_steps > 0
                 else config.num_epochs * batches.steps_per_epoch)
  workdir = runs.prepare_workdir(workdir)
  finished = runs.finished_results(workdir)
  if finished is not None:
    return finished
  runs.write_config(workdir, config, {**(flags or {}), "seed": seed})

  module = clf.make_classifier(arch)
  optimizer = clf.make_optimizer(config.optimizer, total_steps)
  rep = parallel.replicated(mesh)
  image_shape = (32, 32, arch["channels"])
  state = jax.jit(functools.partial(clf.create_state, module, optimizer, image_shape=image_shape),
                  out_shardings=rep)(jax.random.key(seed))
  meta = {"kind": "classifier", "architecture": arch, "dataset": config.dataset,
          "dataset_fingerprint": dataset.fingerprint(), "provenance": dataset.provenance,
          "role": config.role, "seed": seed, "feature_dim": arch["widths"][-1],
          "num_classes": arch["num_classes"], "smoke": bool(config.smoke), "train_s": 0.0}
  meta["id"] = clf.classifier_id(meta)
  checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(state, rep))
  metrics_log = runs.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  train_s, finished_before = 0.0, False
  if restored is not None:
    step0, state, old_meta = restored
    _check_compatible(old_meta, meta, checkpointer.directory)
    train_s = float(old_meta.get("train_s", 0.0))
    finished_before = "test_accuracy" in old_meta
    runs.notice(f"resuming from the checkpoint at step {step0}")
  metrics_log.truncate_after(int(state.step))

  step_fn = parallel.jit_step(functools.partial(
      train_step, module=module, optimizer=optimizer, shift=config.augment.shift,
      flip=config.augment.flip), mesh)
  base_key = jax.random.fold_in(jax.random.key(seed), 1)
  train_labels = dataset.train_labels.astype(np.int32)
  test_images, test_labels = dataset.model_images("test"), dataset.test_labels

  def batch_for(s: int):
    idx = batches.indices(s)
    return parallel.shard_batch(mesh, {"images": dataset.model_images("train", idx),
                                       "labels": train_labels[idx]})

  def current() -> clf.TrainedClassifier:
    return clf.TrainedClassifier(module, {"params": state.params, "batch_stats": state.batch_stats},
                                 meta)

  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch_for(int(state.step)), base_key).compile()
  compile_s = time.perf_counter() - t0

  def save() -> None:
    checkpointer.save(step, state, {**meta, "train_s": train_s})

  step = int(state.step)
  with runs.StopSignal() as stop, runs.progress(total_steps, step,
                                                 f"train_classifier ({meta['id']})") as bar:
    while step < total_steps:
      t = time.perf_counter()
      state, metrics = parallel.run_step(compiled, state, batch_for(step),
                                         jax.random.fold_in(base_key, step))
      train_s += time.perf_counter() - t
      step += 1
      check_finite(step, metrics)
      bar.update(1)
      epoch_end = (config.eval_every_epochs > 0 and step % batches.steps_per_epoch == 0
                   and (step // batches.steps_per_epoch) % config.eval_every_epochs == 0)
      if step % config.log_every == 0 or epoch_end or step == total_steps:
        record = {"step": step, **metrics, "train_s": round(train_s, 3),
                  "epoch": step / batches.steps_per_epoch}
        if epoch_end:
          record["test_accuracy"] = accuracy_report(current(), test_images, test_labels, mesh,
                                                    config.eval_batch_size)["accuracy"]
          bar.set_postfix({"test_acc": f"{record['test_accuracy']:.4f}"})
        metrics_log.write(record)
      if step % config.checkpoint_every == 0 and step < total_steps:
        save()
      if step < total_steps:  # the final checkpoint, with its test accuracy, is written below
        stop.stop_if_received(f"step {step}", lambda: (save(), checkpointer.close()))

  final = current()
  test = accuracy_report(final, test_images, test_labels, mesh, config.eval_batch_size)
  meta.update(train_s=train_s, test_accuracy=test["accuracy"],
              params_hash=clf.params_hash(final.variables))
  if not finished_before:
    checkpointer.save(total_steps, state, meta)
  checkpointer.close()
  if test["accuracy"] < config.target_accuracy:
    runs.notice(f"test accuracy {test['accuracy']:.4f} is below the acceptance level "
                f"{config.target_accuracy} (evaluation.md §1)")
  results = {
      "method": "train_classifier", "id": meta["id"], "dataset": config.dataset,
      "provenance": dataset.provenance, "role": config.role, "seed": seed,
      "architecture": arch, "feature_dim": meta["feature_dim"], "params_hash": meta["params_hash"],
      "test_accuracy": test["accuracy"], "per_class_accuracy": test["per_class_accuracy"],
      "exact_subset_test_accuracy": _exact_subset_accuracy(config, data_dir, final, mesh,
                                                           config.eval_batch_size),
      "target_accuracy": config.target_accuracy,
      "meets_target": test["accuracy"] >= config.target_accuracy,
      "num_train_images": int(len(train_labels)), "steps": total_steps,
      "epochs": total_steps / batches.steps_per_epoch, "batch_size": config.batch_size,
      "dataset_fingerprint": meta["dataset_fingerprint"], "smoke": bool(config.smoke),
      "timing": {"train_s": train_s, "compile_s": compile_s,
                 "steps_per_s": total_steps / train_s if train_s else None},
      "devices": [str(d) for d in mesh.devices.flat], "environment": runs.environment(),
  }
  runs.write_results(workdir, results)
  return results
