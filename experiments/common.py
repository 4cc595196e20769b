"""What every experiment entry point shares: the standard flags and the error boundary.

Each entry point defines ``--config`` with :func:`define_config` (a locked config file flag: a
``--config.KEY=VALUE`` with an unknown KEY is refused in one line) and calls :func:`run`.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Callable

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxunlearn.errors import NonFiniteError, UserInputError

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Folder for everything the run writes; rerun to resume.")
flags.DEFINE_string("data_dir", None, "Local dataset folder (default: $JAXUNLEARN_DATA_DIR, "
                    "else tensorflow-datasets).")
flags.DEFINE_integer("seed", 0, "One seed for everything.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
_default_config = ""  # the entry point's default --config path (define_config)


def standard_flags() -> dict[str, Any]:
  return {"workdir": FLAGS.workdir, "data_dir": FLAGS.data_dir, "seed": FLAGS.seed,
          "distributed": FLAGS.distributed}


def define_config(default_path: str, help_text: str) -> None:
  """``--config``: an ml_collections config file (``path[:variant]``), locked against new fields.

  absl resolves ``--config.KEY`` overrides of the default config as soon as the flag is defined
  (at import); an unknown KEY there ends as one line and exit 2, like every other parse error.
  """
  global _default_config
  _default_config = default_path
  try:
    config_flags.DEFINE_config_file("config", default_path, help_text, lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    _fail_parsing(sys.argv, e)


def _fail_parsing(argv: list[str], e: Exception) -> None:
  last_line = (str(e).strip().splitlines() or [type(e).__name__])[-1]
  message = _config_field_problem(argv) or f"{last_line} (see --helpfull for the valid flags)"
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _config_field_problem(argv: list[str]) -> str | None:
  """For a ``--config.A.B=V`` override naming a field that does not exist: what exists there."""
  config = FLAGS["config"].value if "config" in FLAGS else None
  if config is None:  # the failed parse stopped before loading it: load the config file alone
    spec = ([a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")]
            or [_default_config])[-1]
    path, _, variant = spec.partition(":")
    try:
      module_spec = importlib.util.spec_from_file_location("_config_for_error", path)
      module = importlib.util.module_from_spec(module_spec)
      module_spec.loader.exec_module(module)
      config = module.get_config(variant) if variant else module.get_config()
    except Exception:  # pylint: disable=broad-except
      return None
  for arg in argv[1:]:
    if config is None or not arg.startswith("--config."):
      continue
    path = arg[len("--config."):].split("=", 1)[0].split(".")
    node = config
    for i, key in enumerate(path):
      if not hasattr(node, "keys") or key not in node:
        parent = "".join(f".{p}" for p in path[:i])
        valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none (not a group)"
        return f"--config{parent} has no field {key!r}; valid fields: {valid}"
      node = node[key]
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every parse error (an unknown flag or config field, a value of the
  wrong type, a config file that fails to load) as one line on stderr and exit 2."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    _fail_parsing(argv, e)


def run(main: Callable[[], Any]) -> None:
  """absl entry point: user errors end as one line on stderr, exit 2 (NaN/Inf: exit 3)."""

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file at INFO
    from jaxunlearn import parallel  # pylint: disable=g-import-not-at-top
    try:
      parallel.initialize_distributed(FLAGS.distributed)
      main()
    except UserInputError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except NonFiniteError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(3)

  app.run(_main, flags_parser=_parse_flags)
