"""The report card (evaluation.md §11): every metric of a GAN, next to the retrained model.

:func:`evaluate_gan` measures a trained (or unlearned) GAN against the real data, and, when
given, the original model G0 and the retrained-from-scratch reference G_R, and returns the
report card as a dict: ``header``, ``effectiveness`` (Table A), ``quality`` (Table B),
``efficiency`` (Table C) and ``details`` (histograms, CIs, per-class accuracies, cache keys).
:func:`render_markdown` renders it; :func:`write_report_card` writes both files;
:func:`run_evaluation` is what ``experiments.evaluate`` calls.

Protocols (N = ``config.num_samples``, 10,000 by default; fewer is flagged ``smoke``):
* Samples come from the EMA generator in inference mode on the fixed bank Z_eval; the
  retrained model's side of Ret-FID-clf uses Z_ref.
* Features and class predictions come from the ``eval`` classifier only.
* Real reference: the test split (item unlearning, or no forget set), the test split without
  the forgotten classes (class unlearning). Its features are cached (real_features.py).
* Floors: real-vs-real (retained training images against the reference), G_R(Z_eval) vs
  G_R(Z_ref), the classifier floor of the class share and the real-data downstream bound.
* Class metrics are n/a for item unlearning, MIA is n/a for class unlearning, PUL needs G0.
* FID (Inception) (optional, evaluation.md §3): with ``config.inception_weights`` set, Table B
  gains a column "FID (Inception)" (pool3 of pytorch-fid's FID Inception-v3 at 299×299, same
  samples and real reference; its floor is real-vs-real) and a note stating the different
  architecture and resolution. Without it the card is unchanged.
* MIA-G (generator reconstruction, optional in the spec) runs with ``config.mia_g.enabled``
  (item unlearning, every row): scores −L_rec on the MIA sets; otherwise its column is n/a.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import time
from typing import Any

import numpy as np
from jax.sharding import Mesh

from jaxunlearn import latents as latents_lib
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn import sampling
from jaxunlearn.data import ForgetSet
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import downstream as downstream_lib
from jaxunlearn.eval import inception
from jaxunlearn.eval import membership
from jaxunlearn.eval import real_features as real_lib
from jaxunlearn.eval.classifiers import TrainedClassifier, load_classifier
from jaxunlearn.eval.fid import feature_statistics, fid_classifier
from jaxunlearn.eval.forgetting import (class_histogram, classifier_score, confident_share,
                                        percentage_unlearning)
from jaxunlearn.eval.prdc import precision_recall_density_coverage
from jaxunlearn.images import MODEL_RESOLUTION
from jaxunlearn.models import stylegan2
from jaxunlearn.train import pretrained
from jaxunlearn.train.loop import TrainingData, prepare_data
from jaxunlearn.train.pretrained import TrainedGAN

FULL_NUM_SAMPLES = 10_000
REPORT_JSON, REPORT_MD = "report_card.json", "report_card.md"

# (key, fixed column title, format) of the three tables.
EFFECTIVENESS_COLUMNS = (
    ("model", "model", "{}"), ("class_share_pct", "class share % ↓", "{:.2f}"),
    ("pul_pct", "PUL % ↑", "{:.1f}"), ("mia_d_auc", "MIA-D AUC", "{:.3f}"),
    ("mia_d_bal_acc", "MIA-D bal. acc", "{:.3f}"),
    ("mia_d_tpr_at_1pct_fpr", "MIA-D TPR@1%FPR", "{:.3f}"),
    ("mia_l_bal_acc", "MIA-L bal. acc", "{:.3f}"), ("mia_g_auc", "MIA-G AUC", "{:.3f}"))
QUALITY_COLUMNS = (
    ("model", "model", "{}"), ("fid_clf", "FID-clf ↓", "{:.3f}"),
    ("ret_fid_clf", "Ret-FID-clf ↓", "{:.3f}"), ("precision", "precision ↑", "{:.3f}"),
    ("recall", "recall ↑", "{:.3f}"), ("density", "density", "{:.3f}"),
    ("coverage", "coverage ↑", "{:.3f}"), ("cs", "CS", "{:.3f}"),
    ("downstream_acc_pct", "downstream acc % ↑", "{:.2f}"))
# Appended to Table B only when config.inception_weights names a file.
FID_INCEPTION_COLUMN = ("fid_inception", "FID (Inception) ↓", "{:.3f}")
EFFICIENCY_COLUMNS = (
    ("model", "model", "{}"), ("steps", "steps", "{}"), ("image_passes", "image-passes", "{}"),
    ("wall_time_s", "wall time s", "{:.1f}"), ("compile_s", "compile s", "{:.1f}"),
    ("speedup", "speed-up T_R/T_U", "{:.2f}"), ("speedup_incl_compile", "incl. compile", "{:.2f}"))
# Cell format of every column key (the tables store only keys and titles).
COLUMN_FORMATS = {key: fmt for key, _, fmt in (EFFECTIVENESS_COLUMNS + QUALITY_COLUMNS
                                               + (FID_INCEPTION_COLUMN,) + EFFICIENCY_COLUMNS)}
HEADER_FIELDS = (
    ("experiment", "experiment"), ("method", "method"), ("variant", "variant"), ("task", "task"),
    ("data", "data"), ("model", "model"), ("evaluation_classifier", "evaluation classifier"),
    ("samples", "samples"), ("seeds_selection", "seeds / selection"),
    ("software_device", "software / device"), ("flags", "flags"))
ROW_LABELS = {"original": "Original G0/D0", "retrained": "Retrained G_R/D_R (gold)"}


def validate_config(config, mesh: Mesh) -> None:
  """Refuses an evaluation config that cannot run, before anything is computed."""
  if config.inception_weights:
    inception.load_inception(config.inception_weights)  # reads and checks the file (cached)
  if not max(config.prdc.k_pr, config.prdc.k_dc) < config.num_samples <= FULL_NUM_SAMPLES:
    raise UserInputError(f"num_samples={config.num_samples}; valid: "
                         f"{max(config.prdc.k_pr, config.prdc.k_dc) + 1}..{FULL_NUM_SAMPLES} "
                         "(the size of the latent bank Z_eval)")
  if not 1 <= config.cs_splits <= config.num_samples:
    raise UserInputError(f"cs_splits={config.cs_splits}; valid: 1..num_samples")
  parallel.check_batch_size(config.batch_size, mesh)
  membership.check_mia_g_config(config.mia_g, mesh)
  if config.downstream.enabled:
    downstream_lib.downstream_latents(1, config.downstream.num_samples)
    parallel.check_batch_size(config.downstream.batch_size, mesh, "downstream.batch_size")
    if config.downstream.num_samples < config.downstream.batch_size:
      raise UserInputError(f"downstream.num_samples={config.downstream.num_samples} is below "
                           f"downstream.batch_size={config.downstream.batch_size}")


@functools.lru_cache(maxsize=8)
def _generate_fn(gan, mesh: Mesh):
  return sampling.make_generate_fn(gan.generate, mesh)


def _samples(trained: TrainedGAN, z: np.ndarray, mesh: Mesh, batch_size: int) -> np.ndarray:
  """G(z) with the EMA weights in inference mode: (N, 32, 32, C) in [-1, 1]."""
  return _generate_fn(trained.gan, mesh)(trained.state.g_ema_params, trained.state.g_batch_stats,
                                         z, batch_size)


def _subset(indices: np.ndarray, size: int, seed: int) -> np.ndarray:
  """A seeded subset of ``size`` indices (all when size <= 0 or larger than the set), sorted."""
  if size <= 0 or size >= len(indices):
    return indices
  return np.sort(np.random.default_rng([seed, 4]).choice(indices, size, replace=False))


def _results_of(trained: TrainedGAN | None) -> dict[str, Any]:
  path = os.path.join(trained.workdir, runs.RESULTS_FILE) if trained else ""
  try:
    return runs.read_json(path) if path and os.path.isfile(path) else {}
  except ValueError:
    return {}


def _git_sha() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, timeout=10, check=True,
                          cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"


@dataclasses.dataclass
class _Row:
  """One model of the comparison and what is measured on it."""
  key: str
  label: str
  trained: TrainedGAN
  results: dict[str, Any]
  outputs: dict[str, np.ndarray] | None = None  # eval-classifier outputs on G(Z_eval)
  inception_features: np.ndarray | None = None  # pool3 of G(Z_eval) (FID (Inception) only)


def evaluate_gan(trained_gan: TrainedGAN, *, eval_classifier: TrainedClassifier,
                 data: TrainingData, forget: ForgetSet | None, reference: TrainedGAN | None = None,
                 original: TrainedGAN | None = None, config, mesh: Mesh,
                 cache_dir: str | None = None, model_results: dict[str, Any] | None = None,
                 experiment: str = "", seed: int = 0) -> dict[str, Any]:
  """Measures ``trained_gan`` (with G0 and G_R beside it when given) and returns the report card.

  Args:
    trained_gan: the model under test (original, retrained or unlearned).
    eval_classifier: the ``eval`` classifier of the dataset (never the feedback one).
    data: the dataset and splits (``train.loop.prepare_data`` with the GAN's config).
    forget: the forget set (D_u as positions in D) or None.
    reference: the retrained-from-scratch model G_R/D_R of this forget set.
    original: the original model G0/D0 (for PUL and the MIA power check).
    config: an ``experiments/configs/evaluate.py`` config.
    mesh: device mesh for sampling and inference.
    cache_dir: folder of cached real-data features (None: no cache).
    model_results: the results of the run that produced ``trained_gan`` (method, variant, timing,
      steps, image_passes, flags); default: its workdir's results.json.
    experiment, seed: for the header.
  """
  validate_config(config, mesh)
  t_start = time.perf_counter()
  dataset, splits = data.dataset, data.splits
  n, bs, dim = config.num_samples, config.batch_size, trained_gan.gan.latent_dim
  class_mode = forget is not None and forget.mode == "class"
  item_mode = forget is not None and forget.mode == "item"
  classes = np.asarray(forget.classes if class_mode else (), np.int64)
  z_eval = latents_lib.latent_bank("eval", dim)[:n]
  z_ref = latents_lib.latent_bank("ref", dim)[:n]
  predict = lambda images: eval_classifier.predict(images, mesh, bs)
  network = (inception.load_inception(config.inception_weights) if config.inception_weights
             else None)

  # Rows: the model under test is the original itself when it is a plain train_gan run.
  model_results = _results_of(trained_gan) if model_results is None else model_results
  method = model_results.get("method") or trained_gan.meta.get("method") or "unknown"
  rows: list[_Row] = []
  if original is not None:
    rows.append(_Row("original", ROW_LABELS["original"], original, _results_of(original)))
  if reference is not None:
    rows.append(_Row("retrained", ROW_LABELS["retrained"], reference, _results_of(reference)))
  if method == "train_gan" and original is None:
    model_key, model_label = "original", ROW_LABELS["original"]
  else:
    model_key = "model"
    model_label = (f"Unlearned ({method})" if method not in ("train_gan", "retrain")
                   else f"Evaluated ({method})")
  model_row = _Row(model_key, model_label, trained_gan, model_results)
  rows = sorted(rows + [model_row], key=lambda r: ("original", "retrained", "model").index(r.key))
  by_key = {row.key: row for row in rows}
  for row in rows:
    images = _samples(row.trained, z_eval, mesh, bs)
    row.outputs = predict(images)
    if network is not None:
      row.inception_features = network.predict(images, mesh, bs)["features"]

  # Real reference and the real-vs-real floor.
  filter_name = "without-" + "-".join(map(str, classes)) if class_mode else "all"
  ref_idx = _subset(np.flatnonzero(~np.isin(dataset.test_labels, classes)), config.num_real,
                    config.subset_seed)
  real = real_lib.real_features(dataset, "test", filter_name, ref_idx, eval_classifier, mesh,
                                cache_dir=cache_dir, batch_size=bs)
  retained = (splits.gan_train[forget.retain_positions(len(splits.gan_train))] if forget
              else splits.gan_train)
  floor_idx = _subset(retained, config.num_real_floor, config.subset_seed)
  floor_real = real_lib.real_features(dataset, "train", "retained", floor_idx, eval_classifier,
                                      mesh, cache_dir=cache_dir, batch_size=bs)
  eps_used = []

  def fid(gen, ref, measure=fid_classifier, key="fid_classifier") -> float:
    result = measure(gen, ref)
    eps_used.append(result["fid_eps_used"])
    return result[key]

  real_vs_real = fid(floor_real.stats, real.stats)
  if network is not None:
    fid_inception = functools.partial(fid, measure=inception.fid_inception, key="fid_inception")
    inception_real, inception_floor = (
        real_lib.real_features(dataset, split, name, idx, network, mesh, cache_dir=cache_dir,
                               batch_size=bs)
        for split, name, idx in (("test", filter_name, ref_idx), ("train", "retained", floor_idx)))
  ret_stats = None
  ret_floor = None
  if reference is not None:
    ret_stats = feature_statistics(predict(_samples(reference, z_ref, mesh, bs))["features"])
    ret_floor = fid(by_key["retrained"].outputs["features"], ret_stats)

  # Effectiveness.
  original_count = None
  if class_mode and "original" in by_key:
    original_count = int(np.isin(by_key["original"].outputs["labels"], classes).sum())
  mia_sets = (membership.membership_sets(splits, forget, num_threshold=config.mia.num_threshold,
                                         seed=config.mia.seed) if item_mode else None)
  effectiveness, quality, details = [], [], {}
  for row in rows:
    out = row.outputs
    detail: dict[str, Any] = {"workdir": row.trained.workdir, "step": row.trained.step}
    eff = {"model": row.label, "class_share_pct": None, "pul_pct": None, "mia_d_auc": None,
           "mia_d_bal_acc": None, "mia_d_tpr_at_1pct_fpr": None, "mia_l_bal_acc": None,
           "mia_g_auc": None}
    detail["class_histogram"] = class_histogram(out["labels"], dataset.num_classes).tolist()
    if class_mode:
      count = int(np.isin(out["labels"], classes).sum())
      eff["class_share_pct"] = 100.0 * count / n
      if row.key != "original" and original_count is not None:
        eff["pul_pct"] = percentage_unlearning(original_count, count)
      detail["class_count"] = count
      detail["confident_share_pct"] = 100.0 * sum(confident_share(out["probs"], int(c))
                                                  for c in classes)
    if item_mode:
      report = membership.membership_inference(row.trained, mia_sets, dataset, mesh,
                                               batch_size=bs, seed=config.mia.seed,
                                               mia_g=config.mia_g)
      eff.update(mia_d_auc=report["auc"], mia_d_bal_acc=report["balanced_accuracy"],
                 mia_d_tpr_at_1pct_fpr=report["tpr_at_1pct_fpr"],
                 mia_l_bal_acc=report["loss_balanced_accuracy"],
                 mia_g_auc=report["mia_g"]["auc"] if "mia_g" in report else None)
      detail["mia"] = report
    effectiveness.append(eff)

    cs_mean, cs_std = classifier_score(out["probs"], config.cs_splits)
    prdc = precision_recall_density_coverage(real.features, out["features"],
                                             k_pr=config.prdc.k_pr, k_dc=config.prdc.k_dc)
    ret_fid = fid(out["features"], ret_stats) if ret_stats is not None else None
    quality.append({"model": row.label, "fid_clf": fid(out["features"], real.stats),
                    "ret_fid_clf": ret_fid, **prdc, "cs": cs_mean, "downstream_acc_pct": None})
    if network is not None:
      quality[-1]["fid_inception"] = fid_inception(row.inception_features, inception_real.stats)
    detail["cs_std"] = cs_std
    details[row.key] = detail

  # Downstream task.
  upper_bound = None
  if config.downstream.enabled:
    ds = config.downstream
    test_idx = _subset(np.arange(len(dataset.test_labels)), ds.num_test, config.subset_seed)
    test_images, test_labels = dataset.model_images("test", test_idx), dataset.test_labels[test_idx]
    z_ds = downstream_lib.downstream_latents(dim, ds.num_samples)
    train = functools.partial(downstream_lib.downstream_accuracy, eval_classifier.module,
                              test_images=test_images, test_labels=test_labels, config=ds,
                              mesh=mesh, forgotten_classes=classes)
    for row, q in zip(rows, quality):
      images = _samples(row.trained, z_ds, mesh, bs)
      result = train(images, predict(images)["labels"])
      q["downstream_acc_pct"] = 100.0 * result["accuracy"]
      details[row.key]["downstream"] = result
    if ds.upper_bound:
      real_idx = _subset(retained, ds.num_samples, config.subset_seed + 1)
      upper_bound = train(dataset.model_images("train", real_idx), dataset.train_labels[real_idx])
  quality.append({"model": "Floors", "fid_clf": real_vs_real, "ret_fid_clf": ret_floor,
                  "precision": None, "recall": None, "density": None, "coverage": None,
                  "cs": None,
                  "downstream_acc_pct": 100.0 * upper_bound["accuracy"] if upper_bound else None})
  quality_columns = QUALITY_COLUMNS
  if network is not None:
    quality[-1]["fid_inception"] = fid_inception(inception_floor.stats, inception_real.stats)
    quality_columns += (FID_INCEPTION_COLUMN,)
    details["fid_inception"] = {
        **network.meta, "real_vs_real": quality[-1]["fid_inception"],
        "reference_cache_key": inception_real.key, "reference_from_cache": inception_real.cached,
        "real_floor_cache_key": inception_floor.key,
        "real_floor_from_cache": inception_floor.cached}

  # Efficiency (from the runs' results): T_R / T_U.
  efficiency = _efficiency(by_key.get("retrained"), model_row)

  flags = []
  if config.smoke or n < FULL_NUM_SAMPLES:
    flags.append("smoke")
  if any(eps_used):
    flags.append("fid_eps_used")
  flags += [f for f in model_results.get("flags", []) if f not in flags]
  mia_power_row = by_key.get("original") if item_mode else None
  if mia_power_row is not None and details[mia_power_row.key]["mia"]["uninformative"]:
    flags.append("MIA uninformative")
  if item_mode and "retrained" in by_key and model_row.key == "model":
    retrained_lo = details["retrained"]["mia"]["auc_ci"][0]
    if details["model"]["mia"]["auc"] < retrained_lo:
      flags.append("over-unlearning")

  floors = {"real_vs_real_fid_clf": real_vs_real, "ret_fid_clf_floor": ret_floor,
            "downstream_upper_bound": upper_bound,
            "reference_cache_key": real.key, "reference_from_cache": real.cached,
            "real_floor_cache_key": floor_real.key, "real_floor_from_cache": floor_real.cached,
            "n_real_reference": int(len(ref_idx)), "n_real_floor": int(len(floor_idx))}
  if class_mode:
    floors["classifier_floor_share_pct"] = 100.0 * float(np.mean(np.isin(real.predicted, classes)))
  details["floors"] = floors
  if mia_sets is not None:
    details["mia_sets"] = {"n_member": int(len(mia_sets.member)),
                           "n_nonmember": int(len(mia_sets.nonmember)),
                           "n_control": int(len(mia_sets.control)),
                           "n_threshold": int(len(mia_sets.threshold))}

  header = _header(trained_gan, model_row, eval_classifier, dataset, forget, ref_idx, class_mode,
                   config, flags, experiment, seed)
  mia_g = config.mia_g
  mia_g_note = (f"MIA-G: score −L_rec(x), L_rec = min_z ‖G(z) − x‖²/pixels (EMA G), Adam lr "
                f"{mia_g.learning_rate}, {mia_g.steps} steps, {mia_g.restarts} restarts from "
                "N(0, I)." if mia_g.enabled and item_mode
                else "MIA-G (generator reconstruction, optional) was not run; its column is n/a.")
  notes = [mia_g_note,
           "FID-clf uses the eval classifier's penultimate features; it is not Inception FID."]
  if network is not None:
    notes.append("FID (Inception) is pytorch-fid's FID Inception-v3 (ImageNet weights, pool3 "
                 "features, d = 2048) on the 32×32 images upsampled bilinearly to 299×299 "
                 "(grayscale replicated to RGB): a different architecture and resolution from "
                 "FID-clf, and not comparable with Inception FID of native-resolution images. "
                 "Its Floors cell is real-vs-real.")
  return {
      "header": header,
      "effectiveness": _table(EFFECTIVENESS_COLUMNS, effectiveness),
      "quality": _table(quality_columns, quality),
      "efficiency": _table(EFFICIENCY_COLUMNS, efficiency),
      "details": details,
      "notes": notes,
      "smoke": "smoke" in flags,
      "evaluate_s": time.perf_counter() - t_start,
  }


def _table(columns, rows: list[dict[str, Any]]) -> dict[str, Any]:
  return {"columns": [{"key": k, "title": t} for k, t, _ in columns], "rows": rows}


def _efficiency(retrained: _Row | None, model: _Row) -> list[dict[str, Any]]:
  """Table C rows: the reference (speed-up 1) and the model under test."""

  def costs(results: dict[str, Any]) -> dict[str, Any]:
    timing = results.get("timing", {})
    return {"steps": timing.get("steps", results.get("steps")),
            "image_passes": timing.get("image_passes", results.get("image_passes")),
            "wall_time_s": timing.get("unlearn_s", timing.get("train_s")),
            "compile_s": timing.get("compile_s")}

  rows = []
  reference = costs(retrained.results) if retrained else None
  if reference is not None:
    rows.append({"model": "Retrained (reference)", **reference, "speedup": 1.0,
                 "speedup_incl_compile": 1.0})
  if model is not retrained:
    own = costs(model.results)
    speedup = speedup_all = None
    if reference and reference["wall_time_s"] and own["wall_time_s"]:
      speedup = reference["wall_time_s"] / own["wall_time_s"]
      if reference["compile_s"] is not None and own["compile_s"] is not None:
        speedup_all = ((reference["wall_time_s"] + reference["compile_s"])
                       / (own["wall_time_s"] + own["compile_s"]))
    rows.append({"model": model.label, **own, "speedup": speedup,
                 "speedup_incl_compile": speedup_all})
  return rows


def model_description(cfg) -> str:
  """One line naming the GAN of a train_gan config: architecture, latent size and widths."""
  if cfg.model == "stylegan2":
    sg = cfg.stylegan2
    widths = stylegan2.channel_widths(MODEL_RESOLUTION, sg.channel_multiplier, sg.channel_max)
    return (f"STYLEGAN2 32×32, z = w = {cfg.latent_dim}, mapping {sg.n_mlp} layers, channels "
            f"{' / '.join(map(str, widths.values()))} at {' / '.join(map(str, widths))} px, "
            f"minibatch-stddev {'on' if sg.mbstd else 'off'}")
  widths = cfg.get("dcgan", {})
  return (f"{cfg.model.upper()} 32×32, z = {cfg.latent_dim}, widths G {widths.get('g_width')} / "
          f"D {widths.get('d_width')}")


def _header(trained: TrainedGAN, row: _Row, classifier: TrainedClassifier, dataset, forget,
            ref_idx, class_mode: bool, config, flags, experiment: str, seed: int
            ) -> dict[str, Any]:
  cfg, results = trained.config, row.results
  if forget is None:
    task = "none (no forget set)"
  elif class_mode:
    names = ", ".join(dataset.class_names[c] for c in forget.classes)
    task = f"class {names}" if len(forget.classes) == 1 else f"classes {names}"
  else:
    task = f"item unlearning, n = {len(forget.positions)} ({forget.spec}, seed {seed})"
  budget = (f"{cfg.num_steps} steps" if cfg.get("num_steps", -1) > 0
            else f"{cfg.get('num_epochs')} epochs")
  reference = (f"{dataset.name.upper()} test split without class "
               f"{', '.join(map(str, forget.classes))}" if class_mode
               else f"{dataset.name.upper()} test split")
  env = runs.environment()
  meta = classifier.meta
  return {
      "experiment": experiment or os.path.basename(trained.workdir.rstrip("/")),
      "method": results.get("method") or trained.meta.get("method") or "unknown",
      "variant": results.get("variant", ""),
      "task": task,
      "data": dataset.provenance,
      "model": f"{model_description(cfg)}; original budget {budget}",
      "evaluation_classifier": (f"{meta.get('id')}, test acc {100 * meta['test_accuracy']:.2f} %, "
                                f"feature dim {meta.get('feature_dim')}"),
      "samples": (f"N = {config.num_samples:,} (Z_eval); reference = {reference} "
                  f"({len(ref_idx):,})"),
      "seeds_selection": (f"{seed} (single seed) / "
                          f"{results.get('selection', f'final checkpoint (step {trained.step})')}"),
      "software_device": (f"jaxunlearn {_git_sha()}; jax {env['jax']} / jaxlib {env['jaxlib']} / "
                          f"flax {env['flax']}; {env['device_kind']} × {len(env['devices'])}"),
      "flags": flags,
      "classifier": {k: meta.get(k) for k in ("id", "role", "seed", "test_accuracy",
                                              "feature_dim", "params_hash",
                                              "dataset_fingerprint")},
      "smoke": "smoke" in flags,
      "num_samples": config.num_samples,
      "dataset": dataset.name,
      "forget": forget.spec if forget else None,
  }


def _cell(value: Any, fmt: str, n_seeds: int | None = None) -> str:
  """One cell: "n/a" for None, a number in its column's format, or a cell aggregated over seeds
  (jaxunlearn/eval/aggregate.py) as "mean ± std", with "(k seeds)" when k is not ``n_seeds``."""
  if isinstance(value, dict) and "mean" in value:
    text = _statistic(value["mean"], fmt)
    if value["std"] is not None:
      text += f" ± {_statistic(value['std'], fmt)}"
    return text if value["n_seeds"] == n_seeds else f"{text} ({value['n_seeds']} seeds)"
  if value is None:
    return "n/a"
  if isinstance(value, float) and fmt == "{}":
    return f"{value:.3g}"
  try:
    return fmt.format(value)
  except (ValueError, TypeError):
    return str(value)


def _statistic(value: float, fmt: str) -> str:
  """A mean or std over seeds; in count columns (format "{}") an integer or one decimal."""
  if fmt == "{}":
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
  return _cell(value, fmt)


def render_markdown(card: dict[str, Any]) -> str:
  """report_card.md from report_card.json (the JSON is the source of truth); also renders a
  card aggregated over seeds (jaxunlearn/eval/aggregate.py)."""
  header = card["header"]
  n_seeds = header.get("n_seeds")
  lines = ["# Report card", "", "| field | value |", "|---|---|"]
  for key, title in HEADER_FIELDS:
    value = header.get(key)
    if isinstance(value, list):
      value = ", ".join(map(str, value)) or "none"
    lines.append(f"| {title} | {value if value not in (None, '') else '—'} |")
  for name, section in (("Table A — effectiveness", "effectiveness"),
                        ("Table B — intrinsic quality and downstream", "quality"),
                        ("Table C — efficiency", "efficiency")):
    columns = [(c["key"], c["title"], COLUMN_FORMATS[c["key"]]) for c in card[section]["columns"]]
    lines += ["", f"## {name}", "", "| " + " | ".join(t for _, t, _ in columns) + " |",
              "|" + "---|" * len(columns)]
    for row in card[section]["rows"]:
      lines.append("| " + " | ".join(_cell(row.get(k), f, n_seeds) for k, _, f in columns) + " |")
  floors = card.get("details", {}).get("floors", {})
  notes = list(card.get("notes", []))
  if floors.get("classifier_floor_share_pct") is not None:
    notes.insert(0, "Classifier floor of the class share (real test images of other classes "
                 "assigned to the forgotten class): "
                 f"{_cell(floors['classifier_floor_share_pct'], '{:.2f}', n_seeds)} %.")
  lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
  return "\n".join(lines) + "\n"


def write_report_card(workdir: str, card: dict[str, Any]) -> None:
  """Writes report_card.json (atomically) and report_card.md rendered from it."""
  runs.write_json_atomic(os.path.join(workdir, REPORT_JSON), card)
  path = os.path.join(workdir, REPORT_MD)
  with open(path + ".tmp", "w") as f:
    f.write(render_markdown(card))
  os.replace(path + ".tmp", path)


def _resolve_forget(spec: str | None, reference: TrainedGAN | None, seed: int) -> str | None:
  """The forget SPEC: the flag, else the reference's; refuses a reference that does not match."""
  if reference is None:
    return spec
  ref_spec = reference.meta.get("forget")
  if ref_spec is None:
    raise UserInputError(f"--reference={reference.workdir!r} was trained on all of D (no "
                         "--forget); the reference must be the retrained-from-scratch model, "
                         "trained with --forget=SPEC")
  if spec is not None and spec != ref_spec:
    raise UserInputError(f"--forget={spec!r} but --reference={reference.workdir!r} was retrained "
                         f"without {ref_spec!r}; they must name the same forget set")
  if ref_spec.startswith("items:") and reference.meta.get("seed") != seed:
    raise UserInputError(f"--reference drew its forget set {ref_spec!r} with seed "
                         f"{reference.meta.get('seed')}, this run has --seed={seed}; pass "
                         f"--seed={reference.meta.get('seed')}")
  return ref_spec


def _check_same_splits(model: TrainedGAN, other: TrainedGAN, what: str) -> None:
  for key in ("holdout_size", "split_seed", "cifar10_variant"):
    if model.config.get(key) != other.config.get(key):
      raise UserInputError(f"{what} was trained with {key}={other.config.get(key)!r} but the model "
                           f"under test with {key}={model.config.get(key)!r}; they must match")


def run_evaluation(config, workdir: str, *, checkpoint: str, eval_classifier: str,
                   reference: str | None = None, original: str | None = None,
                   forget_spec: str | None = None, data_dir: str | None = None, seed: int = 0,
                   flags: dict[str, Any] | None = None) -> dict[str, Any]:
  """Validates every input, evaluates, and writes report_card.{json,md}, results.json, config.json.

  Nothing is written when an input is invalid (UserInputError); a finished workdir is returned
  as it is.
  """
  mesh = parallel.make_mesh(config.num_devices)
  validate_config(config, mesh)
  model = pretrained.load_gan(checkpoint, mesh, flag="--checkpoint")
  others = {}
  for flag, path in (("--reference", reference), ("--original", original)):
    if path:
      others[flag] = pretrained.load_gan(path, mesh, flag=flag)
      pretrained.check_same_setup(model, others[flag], f"{flag}={path!r}")
      _check_same_splits(model, others[flag], f"{flag}={path!r}")
  ref_gan, orig_gan = others.get("--reference"), others.get("--original")
  forget_spec = _resolve_forget(forget_spec, ref_gan, seed)
  data = prepare_data(model.config, data_dir, seed, forget_spec)
  classifier = load_classifier(eval_classifier, dataset=model.config.dataset, role="eval",
                               flag="--eval_classifier")
  workdir = runs.prepare_workdir(workdir)
  finished = runs.finished_results(workdir)
  if finished is not None:
    return finished
  runs.write_config(workdir, config, {**(flags or {}), "seed": seed, "forget": forget_spec})
  cache_dir = config.stats_cache_dir or real_lib.default_cache_dir(workdir)
  card = evaluate_gan(model, eval_classifier=classifier, data=data, forget=data.forget,
                      reference=ref_gan, original=orig_gan, config=config, mesh=mesh,
                      cache_dir=cache_dir, experiment=config.experiment, seed=seed)
  write_report_card(workdir, card)
  results = {"method": "evaluate", "dataset": model.config.dataset, "forget": forget_spec,
             "seed": seed, "checkpoint": model.workdir,
             "reference": ref_gan.workdir if ref_gan else None,
             "original": orig_gan.workdir if orig_gan else None,
             "eval_classifier": classifier.meta.get("id"), "smoke": card["smoke"],
             "timing": {"evaluate_s": card["evaluate_s"]},
             **{k: card[k] for k in ("header", "effectiveness", "quality", "efficiency",
                                     "details")}}
  runs.write_results(workdir, results)
  return results
