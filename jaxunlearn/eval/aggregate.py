"""Report cards aggregated over seeds (evaluation.md §0 "Seeds", §11 "Cells are mean ± std").

:func:`aggregate_cards` turns the report cards of one experiment run with S different seeds (the
``report_card.json`` of S ``experiments.evaluate`` workdirs) into one card of the same
structure: the same header fields, the same tables, columns and rows (matched by their
``model`` cell), so scripts read it as they read a single card, and
``report.render_markdown`` renders it. :func:`run_aggregation` is what
``experiments.aggregate`` calls.

Aggregated cell: a cell that is a number in at least one card becomes
``{"mean": m, "std": s, "n_seeds": k, "values": [v_1, ..., v_S]}``: ``values`` holds every
card's cell in the order of the header's ``seeds`` (None where that card reads n/a), ``k`` is
how many of them are numbers, ``m`` their mean and ``s`` their sample standard deviation
(ddof = 1; None when k = 1). A cell that is n/a (None) in every card stays None. Any other cell
(e.g. the model name) is kept when the cards agree, else it becomes the list of the cards' values.
The same rule applies to ``details.floors``; every card's own ``details`` are kept under
``details.per_seed``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from jaxunlearn import runs
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import report

SECTIONS = ("effectiveness", "quality", "efficiency")
# Header fields that must be equal in every card: (key, what it is in an error message).
SAME_FIELDS = (("dataset", "dataset"), ("forget", "forget spec"),
               ("num_samples", "sample count N"), ("method", "method"),
               ("variant", "variant"))
MIN_SEEDS = 3  # evaluation.md §0: at least 3 seeds; fewer is flagged


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _agree(values: Sequence[Any]) -> Any:
  """The common value when every card agrees, else the list of the cards' values."""
  return values[0] if all(v == values[0] for v in values) else list(values)


def aggregate_values(values: Sequence[Any]) -> Any:
  """One cell over S seeds (``values[i]`` from seed i): see the module docstring.

  Numbers (with None for n/a) -> {mean, std (ddof = 1), n_seeds, values}; all None -> None;
  dicts with the same keys -> aggregated key by key; anything else -> :func:`_agree`.
  """
  if all(v is None for v in values):
    return None
  if all(v is None or _is_number(v) for v in values):
    numbers = np.array([v for v in values if v is not None], np.float64)
    return {"mean": float(numbers.mean()),
            "std": float(numbers.std(ddof=1)) if len(numbers) > 1 else None,
            "n_seeds": len(numbers), "values": list(values)}
  if all(isinstance(v, dict) and v.keys() == values[0].keys() for v in values):
    return {key: aggregate_values([v[key] for v in values]) for key in values[0]}
  return _agree(values)


def _models(section: dict[str, Any]) -> list[Any]:
  return [row.get("model") for row in section["rows"]]


def _columns(section: dict[str, Any]) -> list[Any]:
  return [column.get("key") for column in section["columns"]]


def check_cards(cards: Sequence[dict[str, Any]], seeds: Sequence[int],
                names: Sequence[str]) -> None:
  """Refuses cards that cannot be aggregated over seeds, with one UserInputError each.

  Args:
    cards: report cards (``report.evaluate_gan``'s dicts).
    seeds: the seed of each card.
    names: how each card is named in messages (its workdir).
  """
  if not len(cards) == len(seeds) == len(names):
    raise ValueError(f"{len(cards)} cards, {len(seeds)} seeds and {len(names)} names")
  if len(cards) < 2:
    raise UserInputError(f"--cards names {len(cards)} report card; aggregating over seeds needs at "
                         f"least 2 (evaluation.md asks for at least {MIN_SEEDS} seeds)")
  for name, card in zip(names, cards):
    missing = [key for key in ("header",) + SECTIONS if not isinstance(card.get(key), dict)]
    missing += [f"{key}.{part}" for key in SECTIONS if key not in missing
                for part in ("columns", "rows") if not isinstance(card[key].get(part), list)]
    if missing:
      raise UserInputError(f"{name} is not a report card of experiments.evaluate (it has no "
                           f"{', '.join(missing)})")
  first_seen: dict[int, str] = {}
  for name, seed in zip(names, seeds):
    if seed in first_seen:
      raise UserInputError(f"{first_seen[seed]} and {name} both hold seed {seed}; aggregate one "
                           "card per seed")
    first_seen[seed] = name
  first, first_name = cards[0], names[0]
  for name, card in zip(names[1:], cards[1:]):
    for key, what in SAME_FIELDS:
      mine, theirs = card["header"].get(key), first["header"].get(key)
      if mine != theirs:
        raise UserInputError(f"{name} has {what} {mine!r} but {first_name} has {theirs!r}; the "
                             "cards must come from one experiment run with different seeds")
    for section in SECTIONS:
      for what, of in (("columns", _columns), ("rows", _models)):
        mine, theirs = of(card[section]), of(first[section])
        if mine != theirs:
          raise UserInputError(f"{name}'s {section} table has {what} {mine} but {first_name}'s "
                               f"has {theirs}; the cards must come from one experiment run with "
                               "different seeds")


def _seeds_selection(cards: Sequence[dict[str, Any]], seeds: Sequence[int]) -> str:
  """'0, 1, 2 (mean ± std over 3 seeds) / <the cards' distinct selection rules>'."""
  rules = [card["header"].get("seeds_selection", "").partition(" / ")[2] for card in cards]
  rules = [rule for rule in dict.fromkeys(rules) if rule]
  return (f"{', '.join(map(str, seeds))} (mean ± std over {len(seeds)} seeds)"
          + (f" / {'; '.join(rules)}" if rules else ""))


def aggregate_cards(cards: Sequence[dict[str, Any]], seeds: Sequence[int], *,
                    names: Sequence[str] | None = None, experiment: str | None = None
                    ) -> dict[str, Any]:
  """The report card of S seeds: every table cell aggregated by :func:`aggregate_values`.

  Args:
    cards: S >= 2 report cards of one experiment (same dataset, forget spec, N, method,
      variant, columns and rows), one per seed.
    seeds: the seed of each card (distinct); the header lists them as ``seeds``.
    names: how each card is named in error messages (default "card i").
    experiment: the header's experiment name (default: the cards' names when they agree, else
      the list of them).

  Returns:
    A card with the structure of a single one; the header adds ``seeds`` and ``n_seeds``, its
    ``flags`` are the union of the cards' (plus "fewer than 3 seeds" below 3), ``smoke`` is
    true when any card is smoke, and ``details`` holds ``floors`` (aggregated), ``per_seed``
    (each card's seed, source and details) and ``sources``.
  """
  names = list(names) if names is not None else [f"card {i}" for i in range(len(cards))]
  check_cards(cards, seeds, names)
  headers = [card["header"] for card in cards]
  header = {key: _agree([h.get(key) for h in headers])
            for key in dict.fromkeys(k for h in headers for k in h)}
  flags = list(dict.fromkeys(f for h in headers for f in h.get("flags", [])))
  if len(cards) < MIN_SEEDS:
    flags.append(f"fewer than {MIN_SEEDS} seeds")
  smoke = any(card.get("smoke") or h.get("smoke") for card, h in zip(cards, headers))
  header.update(flags=flags, smoke=smoke, seeds=list(seeds), n_seeds=len(seeds),
                seeds_selection=_seeds_selection(cards, seeds))
  if experiment is not None:
    header["experiment"] = experiment

  aggregated: dict[str, Any] = {"header": header}
  for section in SECTIONS:
    rows = []
    for group in zip(*(card[section]["rows"] for card in cards)):
      keys = dict.fromkeys(k for row in group for k in row)
      rows.append({k: aggregate_values([row.get(k) for row in group]) for k in keys})
    aggregated[section] = {"columns": cards[0][section]["columns"], "rows": rows}

  details: dict[str, Any] = {
      "per_seed": [{"seed": seed, "source": name, "details": card.get("details", {})}
                   for seed, name, card in zip(seeds, names, cards)],
      "sources": names}
  floors = aggregate_values([card.get("details", {}).get("floors") for card in cards])
  if floors is not None:
    details["floors"] = floors
  n = header.get("num_samples")
  note = (f"Cells are mean ± std over the {len(seeds)} seeds {', '.join(map(str, seeds))} (sample "
          "std, ddof = 1; each seed's value is in report_card.json)"
          + (f", each seed measured on N = {n:,} generated samples" if _is_number(n) else "")
          + "; a cell measured on fewer seeds says how many.")
  notes = [note] + list(dict.fromkeys(x for card in cards for x in card.get("notes", [])))
  aggregated.update(details=details, notes=notes, smoke=smoke)
  return aggregated


def load_evaluation(workdir: str) -> tuple[dict[str, Any], int]:
  """The report card and seed of a finished ``experiments.evaluate`` workdir (UserInputError
  when it is not one)."""
  card_path = os.path.join(workdir, report.REPORT_JSON)
  results_path = os.path.join(workdir, runs.RESULTS_FILE)
  if not os.path.isfile(card_path):
    raise UserInputError(f"--cards: {workdir} holds no {report.REPORT_JSON}; pass the workdirs "
                         "of experiments.evaluate runs, one per seed")
  if not os.path.isfile(results_path):
    raise UserInputError(f"--cards: {workdir} has no {runs.RESULTS_FILE}: its evaluation has not "
                         "finished; rerun its experiments.evaluate command")
  try:
    card, results = runs.read_json(card_path), runs.read_json(results_path)
  except ValueError as e:
    raise UserInputError(f"--cards: {workdir} holds a file that is not valid JSON ({e})") from None
  if not isinstance(results, dict) or results.get("method") != "evaluate":
    method = results.get("method") if isinstance(results, dict) else None
    raise UserInputError(f"--cards: {workdir} holds the results of experiments.{method}, not of "
                         "experiments.evaluate (one seed's report card)")
  if not isinstance(card, dict):
    raise UserInputError(f"--cards: {card_path} is not a report card (not a JSON object)")
  return card, results.get("seed")


def run_aggregation(config, workdir: str, card_dirs: Sequence[str] | None,
                    flags: dict[str, Any] | None = None) -> dict[str, Any]:
  """Validates the cards, aggregates them, and writes report_card.{json,md}, results.json and
  config.json in ``workdir``.

  Nothing is written when an input is invalid (UserInputError); a finished workdir is returned
  as it is.

  Args:
    config: an ``experiments/configs/aggregate.py`` config.
    workdir: the output folder.
    card_dirs: the ``experiments.evaluate`` workdirs, one per seed.
    flags: the command-line flags, for config.json.
  """
  if not card_dirs:
    raise UserInputError("--cards is required: a comma-separated list of experiments.evaluate "
                         "workdirs, one per seed")
  cards, seeds = zip(*(load_evaluation(d) for d in card_dirs))
  card = aggregate_cards(cards, seeds, names=list(card_dirs),
                         experiment=config.experiment or os.path.basename(
                             os.path.abspath(workdir or ".")))
  workdir = runs.prepare_workdir(workdir)
  finished = runs.finished_results(workdir)
  if finished is not None:
    return finished
  runs.write_config(workdir, config, flags or {})
  report.write_report_card(workdir, card)
  header = card["header"]
  results = {"method": "aggregate", "dataset": header.get("dataset"),
             "forget": header.get("forget"), "seeds": header["seeds"],
             "cards": [os.path.abspath(d) for d in card_dirs], "smoke": card["smoke"],
             **{k: card[k] for k in ("header",) + SECTIONS + ("details",)}}
  runs.write_results(workdir, results)
  return results
