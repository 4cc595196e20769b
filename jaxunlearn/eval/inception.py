"""Optional "FID (Inception)" (evaluation.md §3) with pytorch-fid's FID Inception-v3.

Enabled only when a locally supplied weights file is named in the evaluation config
(``inception_weights``): pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (see
third_party/README.md, "Inception weights"). Weights are never downloaded at run time.

Reference behaviour (pytorch-fid): pool3 features (2048-d) of the images resized bilinearly to
299×299, grayscale replicated to 3 channels, inputs in [-1, 1] (the network's own range; see
:mod:`jaxunlearn.models.inception` for why no rescaling is needed). The Fréchet distance is the
project's (:mod:`jaxunlearn.eval.fid`, float64 statistics, ε·I fallback).

The numbers measure 32×32 images upsampled to 299×299 by a network trained on ImageNet photos:
a different architecture and resolution from FID-clf, and not equal to FID values computed on
native-resolution data; reports say so next to them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np
from jax.sharding import Mesh

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn.batching import make_batched_apply
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval.fid import FeatureStats, fid_classifier
from jaxunlearn.models.inception import FEATURE_DIM, FID_RESOLUTION, FIDInceptionV3

INCEPTION_ID = "fid_inception_v3"


@functools.lru_cache(maxsize=4)
def _batched_features(module: FIDInceptionV3, mesh: Mesh):
  """One compiled pool3 function per (module, mesh)."""
  return make_batched_apply(lambda variables, x: module.apply(variables, x), mesh)


@dataclasses.dataclass(frozen=True)
class InceptionNetwork:
  """The FID Inception-v3 with its imported weights, a frozen measuring instrument.

  ``meta`` holds id (``fid_inception_v3``), params_hash, weights (the file), resolution and
  feature_dim, so that :func:`jaxunlearn.eval.real_features.real_features` can cache real
  reference features under it as it does for classifiers.
  """
  module: FIDInceptionV3
  variables: dict
  meta: dict

  def predict(self, images, mesh: Mesh, batch_size: int = 500) -> dict[str, np.ndarray]:
    """Pool3 features of images (N, H, W, 1 | 3) in [-1, 1], batched and data-parallel.

    Returns host arrays: 'features' (N, 2048) and 'labels' (N,) all −1 (no class head: the
    ImageNet classifier of the file is not used).
    """
    features = _batched_features(self.module, mesh)(self.variables,
                                                    np.asarray(images, np.float32), batch_size)
    return {"features": features, "labels": np.full(len(features), -1, np.int32)}


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int, size: int) -> InceptionNetwork:
  del mtime_ns, size  # cache keys: a rewritten file is read again
  from third_party import fid_inception  # pylint: disable=g-import-not-at-top  # on demand only
  try:
    variables = fid_inception.load_fid_inception(path)
  except ImportError as e:
    raise UserInputError(f"inception_weights: {e}") from None
  variables = parallel.replicate(parallel.make_mesh(), variables)
  meta = {"id": INCEPTION_ID, "params_hash": ckpt_lib.tree_digest(variables)[:16],
          "weights": path, "resolution": FID_RESOLUTION, "feature_dim": FEATURE_DIM}
  return InceptionNetwork(FIDInceptionV3(FID_RESOLUTION), variables, meta)


def load_inception(weights_path: str | None) -> InceptionNetwork:
  """Validates and reads ``inception_weights`` (cached per file version).

  Raises:
    UserInputError (one line): no file named, the file does not exist, torch is missing, the
      file is unreadable, or its keys or shapes are not pytorch-fid's FID Inception's.
  """
  if not weights_path:
    raise UserInputError("FID (Inception) needs a locally supplied Inception-v3 weights file "
                         "(config field inception_weights); weights are never downloaded")
  if not os.path.isfile(weights_path):
    raise UserInputError(f"inception_weights={weights_path!r} does not exist; name a local copy "
                         "of pytorch-fid's pt_inception-2015-12-05-6726825d.pth or leave the "
                         "field empty")
  path = os.path.abspath(weights_path)
  stat = os.stat(path)
  return _load(path, stat.st_mtime_ns, stat.st_size)


def fid_inception(gen_features: np.ndarray | FeatureStats,
                  real_features: np.ndarray | FeatureStats) -> dict[str, Any]:
  """FID (Inception): the Fréchet distance (eval.fid) between pool3 features.

  Args:
    gen_features: (N_gen, 2048) pool3 features of generated samples, or their FeatureStats.
    real_features: (N_real, 2048) features of the real reference, or its (cached) FeatureStats.

  Returns:
    {"fid_inception": FD, "fid_eps_used": bool, "n_gen", "n_real", "feature_dim"}.
  """
  result = fid_classifier(gen_features, real_features)
  result["fid_inception"] = result.pop("fid_classifier")
  return result
