"""A seeded, epoch-shuffled batch order that is a pure function of the step.

Batch ``step`` is slice ``step % steps_per_epoch`` of the permutation of epoch
``step // steps_per_epoch``; the permutation comes from ``numpy.random.default_rng([seed,
epoch])``. The iterator's position is therefore the training step, which every checkpoint
holds: a resumed run reads exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import numpy as np


class EpochBatches:
  """Index batches over ``num_examples`` items; the last partial batch of an epoch is dropped."""

  def __init__(self, num_examples: int, batch_size: int, seed: int):
    if batch_size > num_examples:
      raise ValueError(f"batch size {batch_size} exceeds the {num_examples} training examples")
    self.num_examples = num_examples
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = num_examples // batch_size
    self._epoch = -1
    self._perm = np.empty(0, np.int64)

  def indices(self, step: int) -> np.ndarray:
    """int64 (batch_size,) positions for global step ``step`` (0-based)."""
    epoch, k = divmod(int(step), self.steps_per_epoch)
    if epoch != self._epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
      self._epoch = epoch
    return self._perm[k * self.batch_size:(k + 1) * self.batch_size]
