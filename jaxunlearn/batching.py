"""Data-parallel inference over arrays larger than one batch (generators, classifiers, discriminators).

:func:`make_batched_apply` jits a per-sample function ``fn(params, x)`` with the parameters
replicated and the inputs sharded along ``data``, then feeds any number of inputs through it
in fixed-size batches (the last one zero-padded and cut), so one compiled function serves
every call. Outputs come back as host NumPy arrays.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from jaxunlearn import parallel


def make_batched_apply(fn: Callable[[Any, jax.Array], Any], mesh: Mesh
                       ) -> Callable[[Any, np.ndarray, int], Any]:
  """Returns ``run(params, inputs, batch_size) -> pytree of host arrays``.

  Args:
    fn: ``fn(params, x)`` with x of shape (b, ...) -> pytree of (b, ...) arrays. Each output row
      must depend on its own input row only (inference mode), since batches are padded.
    mesh: the device mesh; ``batch_size`` is rounded up to a multiple of its data axis (outputs
      are per row, so the batch size never changes a result).
  """
  rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  jitted = parallel.MeshJitted(jax.jit(fn, in_shardings=(rep, bat), out_shardings=bat), mesh)
  num_devices = parallel.data_size(mesh)

  def run(params: Any, inputs: np.ndarray, batch_size: int) -> Any:
    if batch_size < 1:
      raise ValueError(f"inference batch size {batch_size} must be positive")
    batch_size = -(-batch_size // num_devices) * num_devices
    inputs = np.asarray(inputs)
    if len(inputs) == 0:
      raise ValueError("no inputs to evaluate")
    # Small inputs use one smaller batch instead of padding to batch_size.
    size = min(batch_size, -(-len(inputs) // num_devices) * num_devices)
    params = parallel.replicate(mesh, params)
    outputs = []
    for start in range(0, len(inputs), size):
      x = inputs[start:start + size]
      n = len(x)
      if n < size:
        x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
      out = jax.device_get(jitted(params, parallel.shard_batch(mesh, x)))
      outputs.append(jax.tree.map(lambda a, n=n: np.asarray(a)[:n], out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)

  return run
