r"""The main job: the whole unlearning story on MNIST in one command.

  python -m experiments.quickstart --workdir=runs/quickstart [--config=experiments/configs/quickstart.py[:smoke|:full]]

Trains (or reuses, from the workdir) the classifiers, the pre-trained GAN and its retrained-from-
scratch twin without the chosen digit; runs cascaded class unlearning, cascaded item unlearning
and Adapt-then-Unlearn on it; evaluates every model; and writes ``REPORT.md``: the report cards
side by side, the before/after fixed-latent grids and a plot of the forgotten share over
unlearning. Each stage lives in its own sub-workdir and is reused when the command is run again.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable

from absl import flags

from jaxunlearn.methods import atu_experiment
from experiments import common
from jaxunlearn import runs
from jaxunlearn.eval import classifier_training, classifiers, report
from jaxunlearn.methods import cascaded
from jaxunlearn.train import loop

FLAGS = flags.FLAGS
common.define_config("experiments/configs/quickstart.py", "Quickstart config.")


def _stage(name: str, workdir: str, fn: Callable[[], dict[str, Any]], log: list[dict[str, Any]]
           ) -> dict[str, Any]:
  reused = os.path.exists(os.path.join(workdir, runs.RESULTS_FILE))
  runs.notice(f"[quickstart] {name}: {'reusing ' + workdir if reused else 'running'}")
  t = time.perf_counter()
  result = fn()
  log.append({"stage": name, "workdir": workdir, "reused": reused,
              "wall_s": round(time.perf_counter() - t, 1)})
  return result


def run_quickstart(config, workdir: str, *, data_dir: str | None = None, seed: int = 0
                   ) -> dict[str, Any]:
  """Runs (or reuses) every stage and writes REPORT.md and results.json into ``workdir``."""
  workdir = runs.prepare_workdir(workdir)
  runs.write_config(workdir, config, {"workdir": workdir, "data_dir": data_dir, "seed": seed})
  path = lambda *p: os.path.join(workdir, *p)
  digit, class_spec = config.digit, f"class:{config.digit}"
  item_spec = f"items:{config.num_items}"
  stages: list[dict[str, Any]] = []
  t_start = time.perf_counter()

  for role in ("eval", "feedback"):
    clf_config = config.classifier.copy_and_resolve_references()
    clf_config.role = role
    _stage(f"{role} classifier", path("classifiers", role),
           lambda c=clf_config, r=role: classifier_training.train_and_evaluate(
               c, path("classifiers", r), data_dir=data_dir,
               seed=seed + classifiers.ROLE_SEEDS[r]), stages)  # eval and feedback differ
  eval_clf, feedback_clf = path("classifiers", "eval"), path("classifiers", "feedback")
  _stage("pre-trained GAN", path("gan"), lambda: loop.train_and_evaluate(
      config.gan, path("gan"), data_dir=data_dir, seed=seed), stages)
  retrain = path(f"retrain_class{digit}")
  _stage(f"retrain without digit {digit}", retrain, lambda: loop.train_and_evaluate(
      config.gan, retrain, data_dir=data_dir, seed=seed, forget_spec=class_spec), stages)

  methods = {
      f"cascaded_class{digit}": (class_spec, retrain, lambda wd: cascaded.unlearn(
          config.cascaded, wd, pretrained=path("gan"), forget_spec=class_spec,
          feedback_classifier=feedback_clf, reference=retrain, data_dir=data_dir, seed=seed)),
      f"cascaded_items{config.num_items}": (item_spec, None, lambda wd: cascaded.unlearn(
          config.cascaded, wd, pretrained=path("gan"), forget_spec=item_spec,
          feedback_classifier=feedback_clf, data_dir=data_dir, seed=seed)),
      f"atu_class{digit}": (class_spec, retrain, lambda wd: atu_experiment.run_experiment(
          config.atu, wd, pretrained=path("gan"), forget=class_spec,
          feedback_classifier=eval_clf if config.atu.feedback.classifier == "eval" else feedback_clf,
          seed=seed)),
  }
  for name, (_, _, fn) in methods.items():
    _stage(name, path(name), lambda f=fn, n=name: f(path(n)), stages)

  cards = {}
  for name, (spec, reference, _) in methods.items():
    out = path("eval", name)
    _stage(f"evaluate {name}", out, lambda o=out, n=name, s=spec, r=reference: report.run_evaluation(
        config.evaluate, o, checkpoint=path(n), eval_classifier=eval_clf, reference=r,
        original=path("gan"), forget_spec=s, data_dir=data_dir, seed=seed), stages)
    cards[name] = runs.read_json(os.path.join(out, "report_card.json"))

  total_s = time.perf_counter() - t_start
  write_report(workdir, cards, stages, total_s, config)
  results = {"method": "quickstart", "dataset": "mnist", "digit": digit, "seed": seed,
             "stages": stages, "total_s": total_s, "smoke": bool(config.evaluate.smoke),
             "headline": headline_rows(cards)}
  runs.write_json_atomic(path(runs.RESULTS_FILE), results)
  return results


def headline_rows(cards: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per model across the report cards: forgetting, quality, MIA, downstream, time."""
  rows: dict[str, dict[str, Any]] = {}
  for name, card in cards.items():
    for section in ("effectiveness", "quality", "efficiency"):
      for row in card[section]["rows"]:
        label = {"Retrained (reference)": "Retrained G_R/D_R (gold)"}.get(row["model"], row["model"])
        label = name if label.startswith("Unlearned") else label
        if label.startswith("Floors"):
          continue
        rows.setdefault(label, {"model": label}).update(
            {k: v for k, v in row.items() if k != "model" and v is not None})
  return list(rows.values())


_HEADLINE = (("model", "model", "{}"), ("class_share_pct", "class share %", "{:.2f}"),
             ("pul_pct", "PUL %", "{:.1f}"), ("mia_d_auc", "MIA-D AUC", "{:.3f}"),
             ("fid_clf", "FID-clf", "{:.2f}"), ("ret_fid_clf", "Ret-FID-clf", "{:.2f}"),
             ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
             ("downstream_acc_pct", "downstream acc %", "{:.2f}"),
             ("wall_time_s", "wall time s", "{:.1f}"), ("speedup", "speed-up T_R/T_U", "{:.1f}"))


def _fmt(value: Any, fmt: str) -> str:
  if value is None:
    return "n/a"
  try:
    return fmt.format(value)
  except (ValueError, TypeError):
    return str(value)


def _plot(workdir: str, names: list[str]) -> str:
  """forgotten share (feedback classifier) over unlearning for every class-unlearning run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_share, ax_fid) = plt.subplots(1, 2, figsize=(10, 3.6))
  for name in names:
    records = runs.MetricsLog(os.path.join(workdir, name, "metrics.jsonl")).read()
    share = [(r["step"], r["stop_statistic"]) for r in records if "stop_statistic" in r]
    if share:  # cascaded: one point per round
      ax_share.plot(*zip(*share), marker="o", label=f"{name} (per round)")
    val = [r for r in records if "share_val" in r]
    if val:  # Adapt-then-Unlearn: Stage-2 evaluations on the validation bank
      ax_share.plot([r["stage_step"] for r in val], [r["share_val"] for r in val], marker=".",
                    label=f"{name} (per Stage-2 step)")
      ax_fid.plot([r["stage_step"] for r in val], [r["fid_sel_val"] for r in val], marker=".",
                  label=name)
  ax_share.set(xlabel="round (cascaded) / Stage-2 step (ATU)", ylabel="forgotten share",
               title="forgotten share (feedback classifier)")
  ax_fid.set(xlabel="Stage-2 step", ylabel="FID (feedback-classifier features)",
             title="quality during Stage 2 (validation bank)")
  for ax in (ax_share, ax_fid):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "unlearning_curves.png"), dpi=110)
  plt.close(fig)
  return "unlearning_curves.png"


def write_report(workdir: str, cards: dict[str, dict[str, Any]], stages: list[dict[str, Any]],
                 total_s: float, config) -> None:
  """REPORT.md: headline table, stage times, grids, curves, and every report card."""
  lines = ["# jaxunlearn quickstart report", ""]
  if config.evaluate.smoke:
    lines += ["**Smoke run: tiny models and sample counts; these numbers are not results.**", ""]
  any_card = next(iter(cards.values()))
  lines += [f"Digit forgotten: **{config.digit}**; item unlearning: **{config.num_items}** images. "
            f"Data: {any_card['header'].get('data', 'MNIST')}. Software/device: "
            f"{any_card['header'].get('software_device', '')}. Total wall time of this "
            f"invocation: {total_s:.0f} s.", "",
            "## Headline (all models, from the report cards below)", "",
            "| " + " | ".join(t for _, t, _ in _HEADLINE) + " |",
            "|" + "---|" * len(_HEADLINE)]
  for row in headline_rows(cards):
    lines.append("| " + " | ".join(_fmt(row.get(k), f) for k, _, f in _HEADLINE) + " |")
  lines += ["", "FID-clf is a Fréchet distance on the evaluation classifier's penultimate features, "
            "not Inception FID. The item run has no retrained twin in this quickstart, so its MIA "
            "AUC is compared with the original model's only.", "",
            "## Stages", "", "| stage | reused | wall s |", "|---|---|---|"]
  lines += [f"| {s['stage']} | {'yes' if s['reused'] else 'no'} | {s['wall_s']} |" for s in stages]
  lines += ["", "## Before / after (same latents; original left, unlearned right)", ""]
  for name in cards:
    candidates = [os.path.join(workdir, name, "grid_compare.png"),  # cascaded
                  os.path.join(workdir, name, "grids", "compare_unlearned.png")]  # ATU
    src = next((c for c in candidates if os.path.exists(c)), None)
    if src is not None:
      shutil.copyfile(src, os.path.join(workdir, f"grid_compare_{name}.png"))
      lines += [f"**{name}**", "", f"![{name}](grid_compare_{name}.png)", ""]
  lines += ["## Forgotten share over unlearning", "",
            f"![curves]({_plot(workdir, list(cards))})", ""]
  for name, card in cards.items():
    lines += [f"## Report card: {name}", ""]
    lines += report.render_markdown(card).replace("# Report card", "").strip().splitlines()
    lines.append("")
  tmp = os.path.join(workdir, ".REPORT.md.tmp")
  with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(tmp, os.path.join(workdir, "REPORT.md"))


def main():
  run_quickstart(FLAGS.config, FLAGS.workdir, data_dir=FLAGS.data_dir, seed=FLAGS.seed)


if __name__ == "__main__":
  common.run(main)
