"""Unlearning against retraining from scratch, whole runs, in one process (cascaded_unlearning.md §9).

For every forget SPEC of ``config.forget`` and every method of ``config.methods``:

* **T_R, C_R** (retraining): ``train.loop.train_and_evaluate`` on D_r with the recipe in the
  original's config.json, i.e. train_gan's own data pipeline and jitted train step. Its ``train_s``
  counts only the steps (batch gathering included; grids, checkpoints and logging excluded), its
  ``compile_s`` the ahead-of-time compile. With ``retrain_steps`` > 0 only that many steps run and
  T_R is extrapolated linearly to the recipe's step count; every row then says "extrapolated".
* **T_U, C_U** (unlearning): the method's entry-point function (``methods.cascaded.unlearn``,
  ``methods.atu_experiment.run_experiment``) run ``repeats`` times (spec §9's median of 3; for
  Adapt-then-Unlearn, whose spec sets no repeat rule and whose runs take minutes on a CPU,
  ``adapt_then_unlearn_repeats`` times) in fresh sub-workdirs; T_U is the median of the repeats'
  ``unlearn_s`` and C_U the ``compile_s`` of that same repeat.
* **Quality beside the time**, so a fast but useless unlearning cannot look good: the method's own
  stopping statistic before and after (cascaded: the feedback classifier's share of the forgotten
  class, or D's membership AUC on D_u against H_cal; Adapt-then-Unlearn: PUL on Z_val and its
  selection FID). The report card (experiments.evaluate) remains the full evaluation.
* When retraining ran the whole recipe (``retrain_steps`` = 0), its model is G_R: the cascade gets it
  as ``--reference`` (stop rule at the retrained level, spec §6), and experiments.evaluate can use it
  as the retrained twin of the report card.

``cascaded_warm`` is the cascade with ``substitution.feature_cache`` set to ``WORKDIR/end_to_end/
.feature_cache``, timed after one untimed run of it has stored the feedback classifier's features of
D there: the cost of a later deletion request against the same model and classifier, without the
one-off pass over D_r that plain ``cascaded`` times. It applies to item SPECs with nearest
substitutes (the only build that reads those features).

Adapt-then-Unlearn removes classes only; item SPECs are listed as skipped for it. Sub-runs live in
``WORKDIR/end_to_end/<name>``; a rerun reuses a finished sub-run with its recorded times (so an
interrupted benchmark resumes), and its row says so.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable

import ml_collections

from experiments.configs import gan_common
from jaxunlearn import runs
from jaxunlearn.data import EpochBatches
from jaxunlearn.errors import UserInputError
from jaxunlearn.methods import atu_experiment
from jaxunlearn.methods import cascaded
from jaxunlearn.train import loop
from jaxunlearn.train import pretrained as pretrained_lib

METHODS = ("cascaded", "cascaded_warm", "adapt_then_unlearn")
FEATURE_CACHE = ".feature_cache"  # cascaded_warm's cache folder, inside WORKDIR/end_to_end
# Retraining writes no grids and no periodic checkpoints (they are outside train_s anyway): its one
# checkpoint, at the end, lets a rerun reuse the finished sub-run; a killed one restarts from step 0.
_NEVER = 10**9


def parse_list(text: str, what: str) -> list[str]:
  items = [t.strip() for t in text.split(",") if t.strip()]
  if not items:
    raise UserInputError(f"end_to_end.{what} is empty; give a comma-separated list")
  return items


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses an end-to-end section that cannot run, before anything is written."""
  if not config.pretrained:
    return
  for path, what in ((config.pretrained, "pretrained"),
                     (config.feedback_classifier, "feedback_classifier")):
    if not path or not os.path.isdir(path):
      raise UserInputError(f"end_to_end.{what}={path!r} is not a directory: give the workdir of "
                           f"an experiments.{'train_gan' if what == 'pretrained' else 'train_classifier'}"
                           " run")
  unknown = [m for m in parse_list(config.methods, "methods") if m not in METHODS]
  if unknown:
    raise UserInputError(f"end_to_end.methods: unknown {unknown}; valid: {', '.join(METHODS)}")
  parse_list(config.forget, "forget")
  for name in ("repeats", "adapt_then_unlearn_repeats"):
    if config[name] < 1:
      raise UserInputError(f"end_to_end.{name}={config[name]} must be >= 1")
  if config.retrain_steps < 0:
    raise UserInputError(f"end_to_end.retrain_steps={config.retrain_steps} must be >= 0")


def check_forget_specs(config: ml_collections.ConfigDict, data_dir: str | None, seed: int) -> None:
  """Parses every forget SPEC against the original's training split, before any timing starts (a
  bad SPEC late in the list would otherwise end the run after the earlier ones had run)."""
  recipe = retraining_recipe(config.pretrained)
  dataset = None  # loaded once, by the first SPEC
  for spec in parse_list(config.forget, "forget"):
    dataset = loop.prepare_data(recipe, data_dir, seed, spec, dataset).dataset


def _merged(defaults: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
  """``stored`` over ``defaults``, nested dicts merged key by key."""
  out = dict(defaults)
  for key, value in stored.items():
    both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
    out[key] = _merged(out[key], value) if both_dicts else value
  return out


def retraining_recipe(pretrained: str) -> ml_collections.ConfigDict:
  """The original's training config (its config.json) over today's train_gan defaults, so that an
  original trained before a field existed (say ``nonfinite_policy``) retrains with its default."""
  stored = pretrained_lib.read_config(pretrained).to_dict()
  return ml_collections.ConfigDict(_merged(gan_common.base_config().to_dict(), stored))


def _retrain(config, workdir: str, spec: str, data_dir: str | None, seed: int) -> dict[str, Any]:
  """T_R and C_R of retraining on D_r with the original's recipe (extrapolated if configured)."""
  recipe = retraining_recipe(config.pretrained)
  data = loop.prepare_data(recipe, data_dir, seed, spec)
  steps_per_epoch = EpochBatches(len(data.train_indices), recipe.batch_size, seed).steps_per_epoch
  full_steps = recipe.num_steps if recipe.num_steps > 0 else recipe.num_epochs * steps_per_epoch
  run_config = copy.deepcopy(recipe)
  run_config.num_steps = min(config.retrain_steps, full_steps) if config.retrain_steps else full_steps
  run_config.grid_every = run_config.checkpoint_every = _NEVER
  result = loop.train_and_evaluate(run_config, workdir, data_dir=data_dir, seed=seed,
                                   forget_spec=spec)
  measured = int(result["steps"])
  return {"workdir": workdir, "retrain_s": result["timing"]["train_s"] * full_steps / measured,
          "compile_s": result["timing"]["compile_s"], "steps": full_steps, "measured_steps": measured,
          "extrapolated": measured < full_steps, "image_passes": full_steps * 2 * recipe.batch_size,
          "num_train_images": int(len(data.train_indices))}


def _cascaded(config, workdir: str, spec: str, data_dir: str | None, seed: int,
              reference: str | None) -> dict[str, Any]:
  results = cascaded.unlearn(config.cascaded, workdir, pretrained=config.pretrained,
                             forget_spec=spec, feedback_classifier=config.feedback_classifier,
                             reference=reference, data_dir=data_dir, seed=seed)
  stop = results["stop"]
  name = "forgotten share (feedback clf)" if results["mode"] == "class" else "MIA AUC_cal (D logit)"
  return {"timing": results["timing"], "features": results["substitution"].get("features"),
          "quality": {
      "statistic": name, "original": stop["original"], "unlearned": stop["statistic"],
      "retrained": stop["reference"], "stop_met": stop["met"], "flags": results["flags"]}}


def _cascaded_warm(config, workdir: str, spec: str, data_dir: str | None, seed: int,
                   reference: str | None) -> dict[str, Any]:
  warm = copy.deepcopy(config)
  warm.cascaded.substitution.feature_cache = os.path.join(os.path.dirname(workdir), FEATURE_CACHE)
  return _cascaded(warm, workdir, spec, data_dir, seed, reference)


def _adapt_then_unlearn(config, workdir: str, spec: str, data_dir: str | None, seed: int,
                        reference: str | None) -> dict[str, Any]:
  del data_dir, reference  # the method sees no training data and no retrained model
  results = atu_experiment.run_experiment(config.adapt_then_unlearn, workdir,
                                          pretrained=config.pretrained, forget=spec,
                                          feedback_classifier=config.feedback_classifier, seed=seed)
  return {"timing": results["timing"], "quality": {
      "statistic": "PUL_val % (feedback clf)", "original": 0.0, "unlearned": results["pul_val"],
      "retrained": None,
      "selection_fid": results["fid_sel_val"], "flags": results["flags"]}}


_RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "cascaded": _cascaded, "cascaded_warm": _cascaded_warm,
    "adapt_then_unlearn": _adapt_then_unlearn}


def median_repeat(repeats: list[dict[str, Any]]) -> dict[str, Any]:
  """The repeat with the median ``timing.unlearn_s`` (the upper median for an even count)."""
  order = sorted(range(len(repeats)), key=lambda i: repeats[i]["timing"]["unlearn_s"])
  return repeats[order[len(order) // 2]]


def _unlearn_repeats(config, method: str, root: str, spec: str, data_dir: str | None, seed: int,
                     reference: str | None, notice: Callable[[str], None]) -> dict[str, Any]:
  """Runs ``method`` ``config.repeats`` times; T_U and C_U are the median repeat's."""
  repeats = []
  count = config.adapt_then_unlearn_repeats if method == "adapt_then_unlearn" else config.repeats
  notice(f"end to end, {spec}: {method} x {count}")
  if method == "cascaded_warm":  # the untimed run that stores D's features
    _RUNNERS[method](config, os.path.join(root, f"{method}_{_slug(spec)}_fill"), spec, data_dir,
                     seed, reference)
  for r in range(count):
    workdir = os.path.join(root, f"{method}_{_slug(spec)}_r{r}")
    reused = os.path.isfile(os.path.join(workdir, runs.RESULTS_FILE))
    out = _RUNNERS[method](config, workdir, spec, data_dir, seed, reference)
    repeats.append({**out, "workdir": workdir, "reused": reused})
  median = median_repeat(repeats)
  return {"unlearn_s": median["timing"]["unlearn_s"], "compile_s": median["timing"]["compile_s"],
          "steps": median["timing"]["steps"], "image_passes": median["timing"]["image_passes"],
          "unlearn_s_repeats": [r["timing"]["unlearn_s"] for r in repeats],
          "substitute_s": median["timing"].get("substitute_s"),
          "features": [r.get("features") for r in repeats],
          "reused": [r["reused"] for r in repeats], "quality": median["quality"]}


def _slug(spec: str) -> str:
  return spec.replace(":", "_").replace(",", "-").replace("/", "_")


def run(config: ml_collections.ConfigDict, workdir: str, *, data_dir: str | None, seed: int,
        notice=print) -> dict[str, Any]:
  """The end-to-end rows (results.json "end_to_end"); ``config`` is the benchmark's end_to_end."""
  root = os.path.join(workdir, "end_to_end")
  os.makedirs(root, exist_ok=True)
  rows, skipped = [], []
  for spec in parse_list(config.forget, "forget"):
    notice(f"end to end, {spec}: retraining from scratch")
    retrain = _retrain(config, os.path.join(root, f"retrain_{_slug(spec)}"), spec, data_dir, seed)
    mode = "class" if spec.startswith("class") else "item"
    for method in parse_list(config.methods, "methods"):
      if method == "adapt_then_unlearn" and mode != "class":
        skipped.append({"method": method, "forget": spec, "reason": "class SPECs only"})
        continue
      if method == "cascaded_warm" and not cascaded.uses_nearest_substitutes(config.cascaded, mode):
        skipped.append({"method": method, "forget": spec,
                        "reason": "item SPECs with nearest substitutes only"})
        continue
      # A whole retraining is the retrained model G_R: the cascade's stop rule then uses its level.
      reference = None if retrain["extrapolated"] else retrain["workdir"]
      unlearn = _unlearn_repeats(config, method, root, spec, data_dir, seed, reference, notice)
      rows.append({
          "method": method, "forget": spec, "retrain": retrain, "unlearn": unlearn,
          "reference": reference if method != "adapt_then_unlearn" else None,
          "speedup": retrain["retrain_s"] / unlearn["unlearn_s"],
          "speedup_with_compile": (retrain["retrain_s"] + retrain["compile_s"])
                                  / (unlearn["unlearn_s"] + unlearn["compile_s"]),
          "step_ratio": retrain["steps"] / unlearn["steps"]})
      notice(f"  T_R / T_U = {rows[-1]['speedup']:.1f}x ({method}, {spec})")
  return {"rows": rows, "skipped": skipped, "pretrained": os.path.abspath(config.pretrained),
          "feedback_classifier": os.path.abspath(config.feedback_classifier),
          "repeats": config.repeats, "retrain_steps": config.retrain_steps,
          "adapt_then_unlearn_repeats": config.adapt_then_unlearn_repeats,
          "method": __doc__.split("\n\n", 2)[1]}


def markdown(section: dict[str, Any]) -> list[str]:
  """The end-to-end table of benchmark.md."""
  lines = ["", "## Unlearning vs retraining from scratch, whole runs (same process, spec §9)", "",
           f"Original: `{section['pretrained']}`. T_U: median of {section['repeats']} runs "
           f"({section['adapt_then_unlearn_repeats']} for adapt_then_unlearn). "
           + ("T_R extrapolated from the measured retraining steps (column 'measured')."
              if any(r["retrain"]["extrapolated"] for r in section["rows"]) else
              "T_R: the whole retraining recipe, measured."), "",
           "| method | forget | T_R s | measured | C_R s | T_U s (repeats) | of which S build s | C_U s "
           "| T_R / T_U | (T_R+C_R) / (T_U+C_U) | steps R / U | quality: statistic | original | "
           "retrained | unlearned |",
           "|---|---|---:|---|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|"]
  for r in section["rows"]:
    rt, un, q = r["retrain"], r["unlearn"], r["unlearn"]["quality"]
    measured = (f"{rt['measured_steps']} of {rt['steps']} steps (extrapolated)" if rt["extrapolated"]
                else f"all {rt['steps']} steps")
    reps = ", ".join(f"{s:.1f}" for s in un["unlearn_s_repeats"])
    lines.append(
        f"| {r['method']} | {r['forget']} | {rt['retrain_s']:.1f} | {measured} | "
        f"{rt['compile_s']:.1f} | {un['unlearn_s']:.1f} ({reps}) | "
        f"{'–' if un.get('substitute_s') is None else format(un['substitute_s'], '.1f')} | "
        f"{un['compile_s']:.1f} | "
        f"{r['speedup']:.1f}x | {r['speedup_with_compile']:.1f}x | {rt['steps']} / {un['steps']} | "
        f"{q['statistic']} | {q['original']:.4g} | "
        f"{'–' if q['retrained'] is None else format(q['retrained'], '.4g')} | {q['unlearned']:.4g} |")
  for s in section["skipped"]:
    lines.append(f"| {s['method']} | {s['forget']} | – | – | – | – | – | – | – | – | – | skipped: "
                 f"{s['reason']} | – | – | – |")
  if any(any(r["unlearn"]["reused"]) for r in section["rows"]):
    lines += ["", "Some unlearning repeats were reused from an earlier, interrupted benchmark run "
              "(results.json 'reused'); their times come from that run."]
  return lines
