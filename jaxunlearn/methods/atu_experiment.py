"""Adapt-then-Unlearn as a run on a train_gan workdir: validation, resume, files, results.

``run_experiment`` is what ``experiments.adapt_then_unlearn`` (and ``jaxunlearn.unlearn`` and the
quickstart) call. The workdir receives config.json (the pre-trained GAN's config plus this run's
under "atu"), metrics.jsonl, grids/ (original, every evaluated checkpoint, compare_*.png), atu/
(feedback banks and stage checkpoints, for resuming), checkpoints/ (the unlearned GAN in the
train_gan format, so load_gan, experiments.sample and experiments.evaluate accept the workdir)
and, last, results.json.
"""

from __future__ import annotations

import csv
import os
from typing import Any

import jax
import numpy as np

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import images as images_lib
from jaxunlearn import latents as latents_lib
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn import sampling
from jaxunlearn.data import parse_forget_spec
from jaxunlearn.data.datasets import CLASS_NAMES
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifiers
from jaxunlearn.methods import adapt_then_unlearn as atu
from jaxunlearn.methods import feedback as feedback_lib
from jaxunlearn.methods import repulsion
from jaxunlearn.train import pretrained as pretrained_lib
from jaxunlearn.train.gan import GANState

CLASSIFIER_CHOICES = {"separate": "feedback", "eval": "eval"}


def check_forget_kind(spec: str | None) -> None:
  """Only ``class:C`` / ``classes:C1,C2``: item unlearning needs training data, never seen here."""
  if (spec or "").partition(":")[0] not in ("class", "classes"):
    raise UserInputError(f"--forget={spec!r}: Adapt-then-Unlearn unlearns classes (class:C or "
                         "classes:C1,C2); item unlearning needs the training data, which this "
                         "method never sees")


def parse_forget_classes(spec: str | None, dataset: str) -> tuple[int, ...]:
  """The classes of ``class:C`` / ``classes:C1,C2`` (validated against the dataset's class list)."""
  check_forget_kind(spec)
  names = CLASS_NAMES[dataset]
  # Resolved against the class list alone (one pseudo-example per class): no data is loaded.
  return parse_forget_spec(spec, np.arange(len(names)), names, seed=0).classes


def apply_flags(config, repulsion_kind: str | None, num_adapted: int | None) -> None:
  """--repulsion and --num_adapted override their config fields (validated first)."""
  if repulsion_kind is not None:
    if repulsion_kind not in repulsion.REPULSION_KINDS:
      raise UserInputError(f"unknown --repulsion={repulsion_kind!r}; valid: "
                           f"{', '.join(repulsion.REPULSION_KINDS)}")
    config.repulsion.kind = repulsion_kind
  if num_adapted is not None:
    config.adapt.num_models = num_adapted


def run_experiment(config, workdir: str, *, pretrained: str, forget: str, feedback_classifier: str,
                   seed: int = 0, flags_record: dict[str, Any] | None = None) -> dict[str, Any]:
  """Validates everything, runs the method with resume, saves the GAN, grids and results.json."""
  check_forget_kind(forget)
  atu.check_config(config)
  if config.feedback.classifier not in CLASSIFIER_CHOICES:
    raise UserInputError(f"unknown feedback.classifier {config.feedback.classifier!r}; valid: "
                         f"{', '.join(CLASSIFIER_CHOICES)}")
  mesh = parallel.make_mesh(config.num_devices)
  for what, value in (("sample_batch_size", config.sample_batch_size),
                      ("feedback.batch_size", config.feedback.batch_size)):
    parallel.check_batch_size(value, mesh, what)
  trained = pretrained_lib.load_gan(pretrained, mesh)
  dataset = trained.config.dataset
  classes = parse_forget_classes(forget, dataset)
  role = CLASSIFIER_CHOICES[config.feedback.classifier]
  classifier = classifiers.load_classifier(feedback_classifier, dataset=dataset, role=role,
                                           flag="--feedback_classifier")
  workdir = runs.prepare_workdir(workdir)
  finished = runs.finished_results(workdir)
  if finished is not None:
    return finished
  gan_config = trained.config.to_dict()
  runs.write_config(workdir, {**gan_config, "atu": config.to_dict()},
                    {**(flags_record or {}), "seed": seed, "forget": forget,
                     "pretrained": trained.workdir, "feedback_classifier": feedback_classifier})
  setup = atu.config_signature({
      "pretrained": trained.workdir, "pretrained_step": trained.step,
      "classifier": classifier.meta.get("params_hash"), "classes": classes, "seed": seed})
  store = atu.Store(os.path.join(workdir, "atu"), setup,
                    runs.MetricsLog(os.path.join(workdir, "metrics.jsonl")))
  feedback = feedback_lib.classifier_feedback(classifier, classes, mesh,
                                              min_confidence=config.feedback.min_confidence)
  generate = sampling.make_generate_fn(trained.gan.generate, mesh)
  grid_z = latents_lib.latent_bank("grid", trained.gan.latent_dim)
  grid_bs = parallel.data_size(mesh) * -(-len(grid_z) // parallel.data_size(mesh))
  grids_dir = os.path.join(workdir, "grids")
  os.makedirs(grids_dir, exist_ok=True)
  grid_of = lambda params, stats: generate(params, stats, grid_z, grid_bs)
  original = grid_of(trained.state.g_ema_params, trained.state.g_batch_stats)
  images_lib.save_grid(os.path.join(grids_dir, "original_000000.png"), original)

  def on_eval(stage: str, step: int, snap: atu.Snapshot) -> None:
    images_lib.save_grid(os.path.join(grids_dir, f"{stage}_{step:06d}.png"),
                         grid_of(snap.g_params, snap.g_batch_stats))

  result = atu.adapt_then_unlearn(trained.gan, trained.state, feedback, config,
                                  key=jax.random.key(seed), mesh=mesh, store=store, on_eval=on_eval)
  info = result.info
  _save_gan(workdir, trained, result.selected, info, forget, seed, config.baseline)
  images_lib.save_side_by_side(os.path.join(grids_dir, "compare_unlearned.png"), original,
                               grid_of(result.selected.g_params, result.selected.g_batch_stats))
  images_lib.save_side_by_side(os.path.join(grids_dir, "compare_final.png"), original,
                               grid_of(result.final.g_params, result.final.g_batch_stats))
  if config.baseline == "extrapolation":
    _write_curve(workdir, info["extrapolation"]["points"])
  selected = info["selected"]
  where = f"s = {selected['s']}" if "s" in selected else f"step {selected['step']}"
  flags = info["flags"] + (["feedback = the eval classifier (reproduction option)"]
                           if role == "eval" else [])
  results = {
      "method": atu.METHOD_NAMES[config.baseline], "dataset": dataset, "forget": forget,
      "forget_classes": list(classes), "seed": seed,
      "variant": _variant(config),
      "pretrained": {"workdir": trained.workdir, "step": trained.step},
      "feedback_classifier": {k: classifier.meta.get(k) for k in
                              ("id", "role", "seed", "test_accuracy", "params_hash")},
      "timing": {k: info["timing"][k] for k in ("unlearn_s", "compile_s", "steps",
                                                 "image_passes")} | {"breakdown": info["timing"]},
      "pul_val": selected["pul_val"], "fid_sel_val": selected["fid_sel_val"],
      "selection": (f"validation rule: {where}, PUL_val {selected['pul_val']:.1f} %, selection FID "
                    f"{selected['fid_sel_val']:.3g} <= {config.selection.fid_budget_factor:g} x "
                    f"{info['validation']['fid_sel_pretrained']:.3g} (Z_val, feedback classifier)"),
      "selection_detail": {
          "rule": "earliest checkpoint with the highest PUL subject to selection FID <= "
                  f"{config.selection.fid_budget_factor} x the pre-trained value (Z_val, feedback "
                  "classifier; FID reference: the positive feedback bank)",
          "selected": selected, "final": info["final"], **info["validation"]},
      "flags": flags,
      "atu": info, "devices": [str(d) for d in mesh.devices.flat],
      "environment": runs.environment(),
  }
  runs.write_results(workdir, results)
  return results


def _variant(config) -> str:
  if config.baseline == "positives_only":
    return "positives-only fine-tuning (Stage 2 without repulsion)"
  if config.baseline == "ewc_finetune":
    return f"EWC fine-tuning on positives (λ {config.ewc.lam:g})"
  k = f"K={config.adapt.num_models}"
  if config.baseline == "extrapolation":
    return f"Extrapolation θ_G + s·τ, {k}"
  r = config.repulsion
  scale = (f"relative (weight_rel {r.weight_rel:g}, alpha_rel {r.alpha_rel:g})" if r.relative
           else f"absolute (w {r.weight:g}, α {r.alpha:g})")
  return f"{r.kind.upper()}, {k}, {r.distance} distance, aggregate {r.aggregate}, {scale}"


def _save_gan(workdir: str, trained, snap: atu.Snapshot, info: dict[str, Any], forget: str,
              seed: int, baseline: str) -> None:
  """The selected generator (+ D) as a train_gan checkpoint in ``workdir/checkpoints``."""
  gan = trained.gan
  step = int(info["timing"]["steps"])
  state = GANState(step=jax.numpy.asarray(step, jax.numpy.int32), g_params=snap.g_params,
                   g_batch_stats=snap.g_batch_stats, g_ema_params=snap.g_params,
                   d_params=snap.d_params, g_opt_state=gan.g_optimizer.init(snap.g_params),
                   d_opt_state=gan.d_optimizer.init(snap.d_params), rng=trained.state.rng)
  meta = {"kind": "gan", "architecture": trained.meta.get("architecture"),
          "dataset": trained.meta.get("dataset"),
          "dataset_fingerprint": trained.meta.get("dataset_fingerprint"), "forget": forget,
          "seed": seed, "method": atu.METHOD_NAMES[baseline], "pretrained": trained.workdir,
          "selected": info["selected"]}
  checkpointer = ckpt_lib.Checkpointer(workdir, keep=1)
  if step not in checkpointer.steps():
    checkpointer.save(step, state, meta)
  checkpointer.close()


def _write_curve(workdir: str, points: list[dict[str, Any]]) -> None:
  """The Extrapolation PUL-vs-FID curve as JSON and CSV (one row per s)."""
  runs.write_json_atomic(os.path.join(workdir, "extrapolation_curve.json"), points)
  path = os.path.join(workdir, "extrapolation_curve.csv")
  with open(path + ".tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(points[0]))
    writer.writeheader()
    writer.writerows(points)
  os.replace(path + ".tmp", path)
