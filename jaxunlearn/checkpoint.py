"""Orbax checkpoints of a run: state pytree + JSON metadata, resume, damaged-checkpoint fallback.

A checkpoint holds the training state (``StandardSave``) and a small JSON ``meta`` record
(architecture, dataset, config fingerprint). Restoring is always done against an abstract
state with target shardings, so a checkpoint written on N devices restores onto M devices.
Each checkpoint's meta records a SHA-256 of the state's bytes; a checkpoint that fails to
restore, or restores to different bytes (silent corruption), is reported and skipped in favour
of the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxunlearn.errors import UserInputError

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
  """Thin wrapper around ``ocp.CheckpointManager`` for ``workdir/checkpoints``."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    policy = ocp.checkpoint_managers.LatestN(keep)
    # Read-only managers never save; saying so (save_interval_steps=0) keeps orbax from warning.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=not read_only, read_only=read_only,
        save_interval_steps=0 if read_only else 1, enable_async_checkpointing=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves asynchronously (after hashing the state); call :meth:`wait` before exiting."""
    meta = {**meta, "state_sha256": tree_digest(state)}
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def read_meta(self, step: int) -> dict[str, Any]:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest intact checkpoint; None when there is none at all.

    ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` with target shardings. A damaged
    checkpoint is logged and the previous one tried; if all are damaged, UserInputError.
    """
    steps = self.steps()
    for step in reversed(steps):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # orbax/tensorstore raise many types for damaged files.
        logging.warning("checkpoint %d in %s is damaged (%s: %s); trying an older one", step,
                        self.directory, type(e).__name__, str(e).splitlines()[0][:200])
        continue
      expected = restored["meta"].get("state_sha256")
      if expected is not None and tree_digest(restored["state"]) != expected:
        logging.warning("checkpoint %d in %s does not match its recorded hash (corrupted); trying "
                        "an older one", step, self.directory)
        continue
      return step, restored["state"], restored["meta"]
    if steps:
      raise UserInputError(f"no intact checkpoint in {self.directory}: all of steps {steps} are "
                           "damaged; delete the folder to start over")
    return None


def tree_digest(tree: Any) -> str:
  """SHA-256 over every leaf's shape, dtype and bytes, in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    x = np.asarray(jax.device_get(leaf))
    h.update(f"{x.shape}{x.dtype}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """Shape/dtype skeleton of ``tree`` with every leaf placed by ``sharding``."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
