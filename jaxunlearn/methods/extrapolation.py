"""Extrapolation baseline of Adapt-then-Unlearn (spec §5): move θ_G along the negative task vector.

Symbols (spec notation):
  θ_G       the pre-trained generator's ``params``.
  θ_N^(j)   the j-th negatively adapted generator's ``params``, j = 1..K.
  τ         the task vector, τ = (1/K) Σ_j (θ_N^(j) − θ_G) (leafwise).
  s         the extrapolation coefficient: θ(s) = θ_G + s·τ; s < 0 moves away from the negatives,
            s = 0 is θ_G, s = 1 the mean adapted model.
Only ``params`` are extrapolated; the caller takes ``batch_stats`` from θ_G.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn.errors import UserInputError

Params = Any
"""A parameter pytree (e.g. a Flax ``params`` dict); leaves are float arrays."""


def task_vector(original: Params, adapted: Sequence[Params]) -> Params:
  """τ = (1/K) Σ_j (θ_N^(j) − θ_G), a pytree with θ_G's structure, shapes and dtypes.

  Args:
    original: θ_G.
    adapted: [θ_N^(1), ..., θ_N^(K)], K ≥ 1 pytrees with θ_G's structure.
  """
  if len(adapted) < 1:
    raise UserInputError("the task vector needs at least one adapted model θ_N^(j), got none")
  num_models = len(adapted)
  return jax.tree.map(
      lambda theta_g, *thetas_n: sum(theta_n - theta_g for theta_n in thetas_n) / num_models,
      original, *adapted)


def extrapolate(original: Params, tau: Params, s: float | jax.Array) -> Params:
  """θ(s) = θ_G + s·τ, leafwise.

  s = 0 gives θ_G bit for bit: a Python 0 returns θ_G's own leaves, and an array s (possibly traced)
  selects θ_G wherever s == 0, so neither a signed zero nor a non-finite τ can change a bit.

  Args:
    original: θ_G.
    tau: τ from ``task_vector``, θ_G's structure.
    s: a scalar (Python number or 0-d array).
  """
  if isinstance(s, (int, float)) and s == 0:
    return jax.tree.map(lambda theta_g: theta_g, original)
  return jax.tree.map(
      lambda theta_g, t: jnp.where(s == 0, theta_g, theta_g + s * t).astype(theta_g.dtype),
      original, tau)
