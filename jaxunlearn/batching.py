"""Data-parallel inference over arrays larger than one batch (generators, classifiers, discriminators).

:func:`make_batched_apply` jits a per-sample function ``fn(params, x)`` with the parameters
replicated and the inputs sharded along ``data``, then feeds any number of inputs through it
in fixed-size batches (the last one zero-padded and cut), so one compiled function serves
every call. Outputs come back as host NumPy arrays.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from jaxunlearn import parallel


def padded_batches(mesh: Mesh, inputs: Any, batch_size: int) -> Iterator[tuple[Any, int]]:
  """Yields ``(batch, n)``: ``inputs`` cut into sharded batches of one fixed size.

  Args:
    mesh: the device mesh; batches are sharded along its ``data`` axis.
    inputs: a pytree of host arrays sharing their leading length N > 0.
    batch_size: rounded up to a multiple of the data axis; inputs smaller than one batch use one
      smaller batch instead of padding to ``batch_size``.

  Each batch holds the next n <= size rows of every leaf, zero-padded to the common size, so one
  compiled function serves every batch; the caller keeps the first n rows of each output.
  """
  if batch_size < 1:
    raise ValueError(f"inference batch size {batch_size} must be positive")
  inputs = jax.tree.map(np.asarray, inputs)
  total = len(jax.tree.leaves(inputs)[0])
  if total == 0:
    raise ValueError("no inputs to evaluate")
  num_devices = parallel.data_size(mesh)
  size = -(-min(batch_size, total) // num_devices) * num_devices
  for start in range(0, total, size):
    n = min(size, total - start)
    pad = lambda a, start=start, n=n: np.concatenate(
        [a[start:start + n], np.zeros((size - n, *a.shape[1:]), a.dtype)])
    yield parallel.shard_batch(mesh, jax.tree.map(pad, inputs)), n


def make_batched_apply(fn: Callable[[Any, jax.Array], Any], mesh: Mesh
                       ) -> Callable[[Any, np.ndarray, int], Any]:
  """Returns ``run(params, inputs, batch_size) -> pytree of host arrays``.

  Args:
    fn: ``fn(params, x)`` with x of shape (b, ...) -> pytree of (b, ...) arrays. Each output row
      must depend on its own input row only (inference mode), since batches are padded.
    mesh: the device mesh; ``batch_size`` is rounded up to a multiple of its data axis (outputs
      are per row, so the batch size never changes a result; see :func:`padded_batches`).
  """
  rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  jitted = parallel.MeshJitted(jax.jit(fn, in_shardings=(rep, bat), out_shardings=bat), mesh)

  def run(params: Any, inputs: np.ndarray, batch_size: int) -> Any:
    batches = padded_batches(mesh, inputs, batch_size)
    params = parallel.replicate(mesh, params)
    outputs = [jax.tree.map(lambda a, n=n: np.asarray(a)[:n], jax.device_get(jitted(params, x)))
               for x, n in batches]
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)

  return run
