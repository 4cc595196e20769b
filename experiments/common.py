"""What every experiment entry point shares: the standard flags and the error boundary.

Each entry point defines ``--config`` with ``config_flags.DEFINE_config_file(lock_config=True)``
(so ``--config.KEY=VALUE`` with an unknown KEY is refused), and calls :func:`run`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from absl import app, flags
from absl import logging as absl_logging

from jaxunlearn.errors import NonFiniteError, UserInputError

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Folder for everything the run writes; rerun to resume.")
flags.DEFINE_string("data_dir", None, "Local dataset folder (default: $JAXUNLEARN_DATA_DIR, "
                    "else tensorflow-datasets).")
flags.DEFINE_integer("seed", 0, "One seed for everything.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")


def standard_flags() -> dict[str, Any]:
  return {"workdir": FLAGS.workdir, "data_dir": FLAGS.data_dir, "seed": FLAGS.seed,
          "distributed": FLAGS.distributed}


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

  app.run(_main)
