"""Every experiment config: each variant its error message lists builds, and only those exist."""

import ast
import glob
import importlib
import os
import re

import pytest

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs")
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                 if "def get_config" in open(p).read())


def listed_variants(module) -> list[str]:
  """The variants named in the module's 'unknown variant' message."""
  with pytest.raises(ValueError, match="unknown variant") as error:
    module.get_config("no_such_variant")
  listed = re.search(r"valid: (.*)$", str(error.value)).group(1)
  return [ast.literal_eval(v.strip()) for v in listed.split(",")]


def compared_variants(path: str) -> set[str]:
  """Every string the module compares ``variant`` with (``variant == "x"``)."""
  return set(re.findall(r"variant == \"([^\"]*)\"", open(path).read()))


@pytest.mark.parametrize("name", MODULES)
def test_every_listed_variant_builds_and_every_variant_is_listed(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  variants = listed_variants(module)
  assert "" in variants and "smoke" in variants, "interface.md: every config has a smoke variant"
  for variant in variants:
    config = module.get_config(variant)
    assert config.to_dict(), variant
  unlisted = compared_variants(os.path.join(CONFIG_DIR, f"{name}.py")) - set(variants)
  assert not unlisted, f"{name}: variants {unlisted} are not in the error message"
