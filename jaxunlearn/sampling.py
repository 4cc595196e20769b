"""Batched, data-parallel generation from a generator in inference mode."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from jaxunlearn import batching


def make_generate_fn(generate: Callable[[Any, Any, jax.Array], jax.Array], mesh: Mesh
                     ) -> Callable[[Any, Any, np.ndarray, int], np.ndarray]:
  """Returns ``fn(g_params, g_batch_stats, latents, batch_size) -> images`` (host float32).

  ``generate(params, batch_stats, z)`` is e.g. :meth:`GAN.generate` (inference mode: each image
  depends on its own latent only). Latents (n, latent_dim) go through
  :func:`batching.make_batched_apply`: batches sharded along ``data``, the last one padded and cut.
  """
  run = batching.make_batched_apply(
      lambda variables, z: generate(variables[0], variables[1], z), mesh)

  def fn(g_params, g_batch_stats, latents: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(run((g_params, g_batch_stats), latents, batch_size))

  return fn
