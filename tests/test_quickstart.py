"""The main job end to end (smoke) and the one-call research API."""

import json
import os

import pytest

from conftest import run_module
from experiments.configs import cascaded_unlearning


@pytest.mark.slow
def test_quickstart_smoke_writes_a_complete_report(tmp_path, data_dir):
  run_module("experiments.quickstart", f"--workdir={tmp_path}",
             "--config=experiments/configs/quickstart.py:smoke", timeout=900)
  report = (tmp_path / "REPORT.md").read_text()
  for section in ("## Headline", "## Stages", "## Before / after", "## Forgotten share over",
                  "## Report card: cascaded_class3", "## Report card: cascaded_items64",
                  "## Report card: atu_class3", "Smoke run"):
    assert section in report, section
  for model in ("Original G0/D0", "Retrained G_R/D_R (gold)", "cascaded_class3",
                "cascaded_items64", "atu_class3"):
    assert f"| {model} |" in report, model
  for png in ("unlearning_curves.png", "grid_compare_cascaded_class3.png",
              "grid_compare_atu_class3.png"):
    assert (tmp_path / png).stat().st_size > 1000, png
  results = json.load(open(tmp_path / "results.json"))
  assert [s["reused"] for s in results["stages"]] == [False] * len(results["stages"])
  # A rerun reuses every finished stage.
  run_module("experiments.quickstart", f"--workdir={tmp_path}",
             "--config=experiments/configs/quickstart.py:smoke", timeout=900)
  rerun = json.load(open(tmp_path / "results.json"))
  assert all(s["reused"] for s in rerun["stages"])


def test_unlearn_api_returns_parameters_and_results(tmp_path, smoke_gan, stub_classifier):
  import jaxunlearn  # pylint: disable=g-import-not-at-top
  result = jaxunlearn.unlearn(smoke_gan, "items:8", method="cascaded",
                              workdir=str(tmp_path / "cu"), feedback_classifier=stub_classifier,
                              config=cascaded_unlearning.get_config("smoke"))
  assert result.results["method"] == "cascaded" and result.report_card is None
  assert result.trained.state.g_params.keys() == jaxunlearn.load_gan(
      smoke_gan, jaxunlearn.parallel.make_mesh()).state.g_params.keys()
  assert os.path.exists(tmp_path / "cu" / "results.json")
