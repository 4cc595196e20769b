"""Data parallelism over a device mesh with ``jax.jit`` and ``NamedSharding``.

One code path for 1 and N devices: the global batch is sharded along the mesh axis
``data``; parameters and optimizer states are replicated; the jitted step donates its
state. XLA inserts the cross-device reductions (gradient means, BatchNorm statistics), so
a step on N devices computes the same function as on one device.

Pitfalls this module guards against:
* Steps with cross-device reductions that run far ahead of the host have hung processes with
  many fake CPU devices: :func:`run_step` waits on every step's result.
* ``jax.make_mesh`` makes Explicit axes by default; our mesh uses Auto axes, so plain array
  code on sharded arrays works without extra annotations.
* No ``shard_map``: gradients of replicated parameters are already global means under jit.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxunlearn.errors import UserInputError

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
  """Calls ``jax.distributed.initialize()`` for multi-host runs (GPU cluster, TPU pod slice).

  Coordinator address, process count and id come from the environment (SLURM, TPU metadata
  or ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``).
  """
  if enabled:
    jax.distributed.initialize()


def make_mesh(num_devices: int = -1, model_parallelism: int = 1) -> Mesh:
  """A ("data", "model") mesh over the first ``num_devices`` devices (-1: all of them).

  ``model_parallelism`` is the size of the (so far unused) model axis; it must divide the
  device count.
  """
  devices = jax.devices()
  n = len(devices) if num_devices in (-1, None) else num_devices
  if not 1 <= n <= len(devices):
    raise UserInputError(f"num_devices={num_devices} but {len(devices)} devices are available; "
                         f"valid: -1 (all) or 1..{len(devices)}")
  if n % model_parallelism:
    raise UserInputError(f"model_parallelism={model_parallelism} does not divide {n} devices")
  grid = np.asarray(devices[:n]).reshape(n // model_parallelism, model_parallelism)
  return Mesh(grid, (DATA_AXIS, "model"),
              axis_types=(jax.sharding.AxisType.Auto, jax.sharding.AxisType.Auto))


def data_size(mesh: Mesh) -> int:
  return int(mesh.shape[DATA_AXIS])


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  """The global batch must split evenly over the data axis."""
  n = data_size(mesh)
  if batch_size <= 0 or batch_size % n:
    raise UserInputError(f"{what}={batch_size} does not divide by the {n} devices of the data "
                         f"axis; use a positive multiple of {n}")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``data``, everything else replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(mesh: Mesh, batch: Any) -> Any:
  """Host numpy batch (global on a single host) -> global arrays sharded along ``data``.

  On several hosts each passes its process-local slice and gets the global array
  (``jax.make_array_from_process_local_data``).
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      batch)


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Puts a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def constrain_batch(x: jax.Array) -> jax.Array:
  """Inside a step traced under :func:`jax.set_mesh`: shard ``x``'s leading axis on ``data``."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or DATA_AXIS not in mesh.axis_names:
    return x
  return jax.lax.with_sharding_constraint(x, P(DATA_AXIS))


def jit_step(fn: Callable, mesh: Mesh, *, batch_argnums: Sequence[int] = (1,),
             num_args: int = 3, donate_state: bool = True) -> Callable:
  """Jits ``fn(state, *args) -> (state, metrics)`` data-parallel over ``mesh``.

  Arguments at ``batch_argnums`` are sharded along ``data``; every other argument and both
  outputs are replicated. The state (argument 0) is donated. Calls are traced under the mesh.
  """
  rep, bat = replicated(mesh), batch_sharding(mesh)
  in_shardings = tuple(bat if i in batch_argnums else rep for i in range(num_args))
  jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=(rep, rep),
                   donate_argnums=(0,) if donate_state else ())
  return MeshJitted(jitted, mesh)


class MeshJitted:
  """A jitted function that is always traced, lowered and called under its mesh."""

  def __init__(self, jitted: Callable, mesh: Mesh):
    self.jitted = jitted
    self.mesh = mesh

  def __call__(self, *args):
    with jax.set_mesh(self.mesh):
      return self.jitted(*args)

  def lower(self, *args):
    with jax.set_mesh(self.mesh):
      return self.jitted.lower(*args)


def run_step(step: Callable, *args) -> tuple[Any, dict[str, float]]:
  """Runs one step and waits for it (see the module docstring); metrics come back as floats."""
  state, metrics = step(*args)
  metrics = jax.tree.map(float, jax.device_get(metrics))
  return state, metrics
