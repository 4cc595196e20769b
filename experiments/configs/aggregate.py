"""Report cards aggregated over seeds (experiments.aggregate).

Nothing is computed, so the smoke variant (which every config has, interface.md) is the default.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = ""  # name in the header (default: the --workdir folder's name)
  if variant not in ("", "smoke"):
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'smoke'")
  return c
