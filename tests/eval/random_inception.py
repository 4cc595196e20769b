"""Random FID Inception weights for the tests (shared by test_inception.py and test_report.py).

Values are drawn so that activations stay O(1) through the 94 convolutions: He-scaled conv
weights, BatchNorm scales and variances in [0.5, 1.5], small biases and means.
"""

from __future__ import annotations

import functools

import numpy as np

from third_party import fid_inception


def random_array(key: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """A random value for the torch state-dict entry ``key`` of shape ``shape`` (torch layout)."""
  if key.endswith("conv.weight"):
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  if key.endswith(("bn.weight", "bn.running_var")):
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """Every key the importer expects (from our own tree), with random values, plus fc.*."""
  rng = np.random.default_rng(seed)
  sd = {k: random_array(k, s, rng) for k, s in fid_inception.expected_keys().items()}
  sd["fc.weight"] = rng.standard_normal((1008, 2048)).astype(np.float32)
  sd["fc.bias"] = np.zeros(1008, np.float32)
  return sd


@functools.cache
def random_variables(seed: int = 0) -> dict:
  """FIDInceptionV3 variables converted from :func:`random_state_dict` (cached; do not mutate)."""
  return fid_inception.convert_state_dict(random_state_dict(seed))
