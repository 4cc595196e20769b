"""Batched, data-parallel generation from a generator in inference mode."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from jaxunlearn import parallel


def make_generate_fn(generate: Callable[[Any, Any, jax.Array], jax.Array], mesh: Mesh
                     ) -> Callable[[Any, Any, np.ndarray, int], np.ndarray]:
  """Returns ``fn(g_params, g_batch_stats, latents, batch_size) -> images`` (host float32).

  ``generate(params, batch_stats, z)`` is e.g. :meth:`GAN.generate`. Latents (n, latent_dim)
  are fed in batches sharded along ``data``; the last batch is padded and cut.
  """
  rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  jitted = parallel.MeshJitted(jax.jit(generate, in_shardings=(rep, rep, bat), out_shardings=bat),
                               mesh)

  def fn(g_params, g_batch_stats, latents: np.ndarray, batch_size: int) -> np.ndarray:
    parallel.check_batch_size(batch_size, mesh, "sampling batch size")
    out = []
    for start in range(0, len(latents), batch_size):
      z = latents[start:start + batch_size]
      n = len(z)
      if n < batch_size:
        z = np.concatenate([z, np.zeros((batch_size - n, z.shape[1]), z.dtype)])
      images = jitted(g_params, g_batch_stats, parallel.shard_batch(mesh, z))
      out.append(np.asarray(jax.device_get(images))[:n])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)

  return fn
