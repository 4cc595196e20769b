"""Report cards aggregated over seeds: mean ± std per cell, n/a cells, refusals, the entry point.

The cards are written by hand with report.py's column constants (no GAN, no classifier).
"""

from __future__ import annotations

import copy
import json
import math
import os

import pytest

from conftest import run_module
from experiments.configs import aggregate as aggregate_config
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import aggregate, report

MODELS = ("Original G0/D0", "Retrained G_R/D_R (gold)", "Unlearned (cascaded)")


def _table(columns, rows):
  return {"columns": [{"key": k, "title": t} for k, t, _ in columns],
          "rows": [{k: row.get(k) for k, _, _ in columns} for row in rows]}


def _card(seed: int, fid: float, mia_auc: float | None, floor_share: float = 0.3) -> dict:
  """A class-8 style report card whose unlearned row has FID-clf ``fid`` and MIA-D AUC
  ``mia_auc`` (None: n/a); everything else is the same for every seed."""
  header = {"experiment": f"cascaded_class8_s{seed}", "method": "cascaded", "variant": "v1",
            "task": "class 8", "data": "MNIST, original IDX files", "model": "DCGAN",
            "evaluation_classifier": "clf", "samples": "N = 5,000 (Z_eval)",
            "seeds_selection": f"{seed} (single seed) / final checkpoint (step 1)",
            "software_device": "jaxunlearn x", "flags": ["smoke"] + (["rare"] if seed else []),
            "smoke": True, "num_samples": 5000, "dataset": "mnist", "forget": "class:8"}
  effectiveness = [{"model": m, "class_share_pct": 9.0, "pul_pct": None} for m in MODELS]
  effectiveness[2]["mia_d_auc"] = mia_auc
  quality = [{"model": m, "fid_clf": 5.0} for m in MODELS] + [{"model": "Floors", "fid_clf": 1.0}]
  quality[2]["fid_clf"] = fid
  efficiency = [{"model": MODELS[2], "steps": 20, "image_passes": 3200 + seed}]
  return {"header": header,
          "effectiveness": _table(report.EFFECTIVENESS_COLUMNS, effectiveness),
          "quality": _table(report.QUALITY_COLUMNS, quality),
          "efficiency": _table(report.EFFICIENCY_COLUMNS, efficiency),
          "details": {"floors": {"classifier_floor_share_pct": floor_share,
                                 "reference_cache_key": "k"}},
          "notes": ["FID-clf is not Inception FID."], "smoke": True, "evaluate_s": 1.0}


def _cards() -> list[dict]:
  return [_card(0, 10.0, 0.5), _card(1, 12.0, None), _card(2, 17.0, 0.7)]


def _row(card: dict, section: str, model: str) -> dict:
  return next(row for row in card[section]["rows"] if row["model"] == model)


def test_cells_are_mean_and_sample_std_over_seeds():
  card = aggregate.aggregate_cards(_cards(), [0, 1, 2])
  fid = _row(card, "quality", MODELS[2])["fid_clf"]
  assert fid["mean"] == pytest.approx(13.0) and fid["n_seeds"] == 3
  assert fid["std"] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))  # ddof = 1
  assert fid["values"] == [10.0, 12.0, 17.0]
  same = _row(card, "quality", "Floors")["fid_clf"]
  assert same["mean"] == 1.0 and same["std"] == 0.0
  assert _row(card, "efficiency", MODELS[2])["image_passes"]["mean"] == pytest.approx(3201.0)
  assert [r["model"] for r in card["quality"]["rows"]] == list(MODELS) + ["Floors"]
  assert card["quality"]["columns"] == _cards()[0]["quality"]["columns"]
  floor = card["details"]["floors"]
  assert floor["classifier_floor_share_pct"]["mean"] == pytest.approx(0.3)
  assert floor["reference_cache_key"] == "k"
  assert [s["seed"] for s in card["details"]["per_seed"]] == [0, 1, 2]
  header = card["header"]
  assert header["seeds"] == [0, 1, 2] and header["n_seeds"] == 3 and card["smoke"] is True
  assert header["flags"] == ["smoke", "rare"]  # union, and 3 seeds are enough
  assert header["experiment"] == [f"cascaded_class8_s{s}" for s in range(3)]
  assert header["seeds_selection"] == ("0, 1, 2 (mean ± std over 3 seeds) / final checkpoint "
                                       "(step 1)")


def test_na_cells_stay_na_unless_some_seeds_have_numbers():
  card = aggregate.aggregate_cards(_cards(), [0, 1, 2])
  unlearned = _row(card, "effectiveness", MODELS[2])
  assert unlearned["pul_pct"] is None and unlearned["mia_g_auc"] is None
  auc = unlearned["mia_d_auc"]
  assert auc["n_seeds"] == 2 and auc["values"] == [0.5, None, 0.7]
  assert auc["mean"] == pytest.approx(0.6) and auc["std"] == pytest.approx(math.sqrt(0.02))
  one = aggregate.aggregate_values([None, 0.25, None])
  assert one == {"mean": 0.25, "std": None, "n_seeds": 1, "values": [None, 0.25, None]}


def test_disagreeing_text_becomes_a_list_and_two_seeds_are_flagged():
  cards = _cards()[:2]
  cards[1]["header"]["task"] = "class 8 (again)"
  card = aggregate.aggregate_cards(cards, [0, 1], experiment="agg")
  assert card["header"]["task"] == ["class 8", "class 8 (again)"]
  assert card["header"]["data"] == "MNIST, original IDX files"
  assert card["header"]["experiment"] == "agg"
  assert "fewer than 3 seeds" in card["header"]["flags"]


def test_markdown_renders_mean_plus_minus_std_and_seed_counts():
  text = report.render_markdown(aggregate.aggregate_cards(_cards(), [0, 1, 2]))
  assert "| Unlearned (cascaded) | 9.00 ± 0.00 | n/a | 0.600 ± 0.141 (2 seeds) |" in text
  assert "| 13.000 ± 3.606 |" in text
  assert "| Unlearned (cascaded) | 20 ± 0 | 3201 ± 1 |" in text
  assert "forgotten class): 0.30 ± 0.00 %." in text
  assert "| seeds / selection | 0, 1, 2 (mean ± std over 3 seeds)" in text
  single = report.render_markdown(_cards()[0])
  assert "±" not in single and "| 10.000 |" in single and "forgotten class): 0.30 %." in single


def _write_evaluations(tmp_path, cards, seeds) -> list[str]:
  dirs = []
  for i, (card, seed) in enumerate(zip(cards, seeds)):
    path = tmp_path / f"eval_{i}"
    path.mkdir()
    (path / "report_card.json").write_text(json.dumps(card))
    (path / "results.json").write_text(json.dumps({"method": "evaluate", "seed": seed}))
    dirs.append(str(path))
  return dirs


def _change(section, edit):
  def change(cards):
    edit(cards[1][section])
  return change


REFUSALS = [
    ("one card", lambda cards: cards.__delitem__(slice(1, None)), [0],
     "names 1 report card; aggregating over seeds needs at least 2"),
    ("dataset", _change("header", lambda h: h.update(dataset="cifar10")), [0, 1, 2],
     "eval_1 has dataset 'cifar10' but "),
    ("forget spec", _change("header", lambda h: h.update(forget="class:3")), [0, 1, 2],
     "eval_1 has forget spec 'class:3' but "),
    ("sample count", _change("header", lambda h: h.update(num_samples=10_000)), [0, 1, 2],
     "eval_1 has sample count N 10000 but "),
    ("rows", _change("quality", lambda q: q["rows"].pop()), [0, 1, 2],
     "eval_1's quality table has rows"),
    ("columns", _change("quality", lambda q: q["columns"].append({"key": "fid_inception"})),
     [0, 1, 2], "eval_1's quality table has columns"),
    ("same seed", lambda cards: None, [0, 1, 0], "both hold seed 0"),
    ("not a card", lambda cards: cards[2].pop("efficiency"), [0, 1, 2],
     "is not a report card of experiments.evaluate (it has no efficiency)"),
]


@pytest.mark.parametrize("edit, seeds, message", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_card_and_write_nothing(edit, seeds, message, tmp_path):
  cards = copy.deepcopy(_cards())
  edit(cards)
  dirs = _write_evaluations(tmp_path, cards, seeds)
  workdir = tmp_path / "out"
  with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
    aggregate.run_aggregation(aggregate_config.get_config(), str(workdir), dirs)
  assert not workdir.exists()


def test_refuses_folders_that_are_not_finished_evaluations(tmp_path):
  dirs = _write_evaluations(tmp_path, _cards(), [0, 1, 2])
  config, workdir = aggregate_config.get_config(), str(tmp_path / "out")
  os.remove(os.path.join(dirs[1], "results.json"))
  with pytest.raises(UserInputError, match="eval_1 has no results.json"):
    aggregate.run_aggregation(config, workdir, dirs)
  with pytest.raises(UserInputError, match="nowhere holds no report_card.json"):
    aggregate.run_aggregation(config, workdir, [dirs[0], str(tmp_path / "nowhere")])
  with pytest.raises(UserInputError, match="--cards is required"):
    aggregate.run_aggregation(config, workdir, [])
  assert not os.path.exists(workdir)


def test_entry_point_writes_the_card_and_a_rerun_does_nothing(tmp_path):
  dirs = _write_evaluations(tmp_path, _cards(), [0, 1, 2])
  workdir = tmp_path / "agg"
  run_module("experiments.aggregate", f"--workdir={workdir}", f"--cards={','.join(dirs)}")
  assert {"config.json", "report_card.json", "report_card.md", "results.json"} <= set(
      os.listdir(workdir))
  results = json.loads((workdir / "results.json").read_text())
  card = json.loads((workdir / "report_card.json").read_text())
  assert results["method"] == "aggregate" and results["seeds"] == [0, 1, 2]
  assert results["quality"] == card["quality"] and card["header"]["experiment"] == "agg"
  assert "13.000 ± 3.606" in (workdir / "report_card.md").read_text()
  assert json.loads((workdir / "config.json").read_text())["flags"]["cards"] == dirs
  # A finished workdir is returned as it is (an aggregate is not itself a card to aggregate).
  stamp = os.stat(workdir / "results.json").st_mtime_ns
  again = aggregate.run_aggregation(aggregate_config.get_config(), str(workdir), dirs)
  assert again == results and os.stat(workdir / "results.json").st_mtime_ns == stamp
  with pytest.raises(UserInputError, match="results of experiments.aggregate"):
    aggregate.run_aggregation(aggregate_config.get_config(), str(tmp_path / "x"),
                              [str(workdir), dirs[0]])


def test_entry_point_refusal_is_one_error_line_exit_2_and_nothing_written(tmp_path):
  cards = _cards()
  cards[2]["header"]["dataset"] = "cifar10"
  dirs = _write_evaluations(tmp_path, cards, [0, 1, 2])
  workdir = tmp_path / "agg"
  proc = run_module("experiments.aggregate", f"--workdir={workdir}", f"--cards={','.join(dirs)}",
                    check=False)
  lines = [l for l in proc.stderr.strip().splitlines() if not l.startswith(("W1", "I1"))]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
  assert "eval_2 has dataset 'cifar10' but" in lines[0]
  assert not workdir.exists()
