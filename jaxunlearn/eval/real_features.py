"""Cached classifier features of real image sets (evaluation.md §2 "Reference statistics").

The features (and predicted labels) of a real set under a classifier (or another feature
extractor with its interface, e.g. the FID Inception of eval/inception.py) are computed once and
stored as ``<dataset>_<split>_<class filter>_<classifier id>_<hash>.npz`` in a cache folder;
the hash covers the dataset fingerprint, split, filter, the exact image indices and the
classifier's parameter hash, so a different set or a retrained classifier never reuses an
entry. FID statistics (float64 μ, Σ) are stored beside the features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from typing import Protocol

import numpy as np
from jax.sharding import Mesh

from jaxunlearn.data import ImageDataset
from jaxunlearn.eval.classifiers import TrainedClassifier
from jaxunlearn.eval.fid import FeatureStats, feature_statistics

CACHE_ENV = "JAXUNLEARN_CACHE_DIR"


def default_cache_dir(workdir: str) -> str:
  """``$JAXUNLEARN_CACHE_DIR``, else ``<workdir>/../.stats_cache``."""
  return os.environ.get(CACHE_ENV) or os.path.join(
      os.path.dirname(os.path.abspath(workdir)), ".stats_cache")


class FeatureExtractor(Protocol):
  """A :class:`TrainedClassifier`, or any network with its ``meta`` and ``predict``.

  ``meta`` needs ``id`` and ``params_hash``; ``predict`` returns at least 'features' (N, d) and
  'labels' (N,).
  """
  meta: dict

  def predict(self, images, mesh: Mesh, batch_size: int = 500) -> dict[str, np.ndarray]:
    ...


@dataclasses.dataclass(frozen=True)
class RealFeatures:
  """Classifier outputs on a real image set."""
  key: str
  features: np.ndarray   # (N, d) float32 penultimate features
  predicted: np.ndarray  # (N,) int32 argmax labels (-1 from an extractor without classes)
  stats: FeatureStats    # float64 μ, Σ of the features
  cached: bool           # True when read from the cache


def real_features(dataset: ImageDataset, split: str, class_filter: str, indices: np.ndarray,
                  classifier: TrainedClassifier | FeatureExtractor, mesh: Mesh, *,
                  cache_dir: str | None, batch_size: int = 500) -> RealFeatures:
  """Features of ``dataset.<split>_images[indices]``, from the cache when present.

  Args:
    split: "train" or "test"; class_filter: a short name of the selection (e.g. "all",
      "without-8", "retained") used in the file name; the hash covers the indices themselves.
    cache_dir: folder of the cache (created on demand); None disables caching.
  """
  meta = classifier.meta
  digest = hashlib.sha256(json.dumps(
      [dataset.name, dataset.fingerprint(), split, class_filter, meta.get("id"),
       meta.get("params_hash")]).encode())
  digest.update(np.asarray(indices, np.int64).tobytes())
  key = f"{dataset.name}_{split}_{class_filter}_{meta.get('id')}_{digest.hexdigest()[:16]}"
  path = os.path.join(cache_dir, key + ".npz") if cache_dir else None
  if path and os.path.isfile(path):
    try:
      with np.load(path) as f:
        stats = FeatureStats(f["mu"], f["sigma"], int(f["n"]))
        entry = RealFeatures(key, f["features"], f["predicted"], stats, True)
      if len(entry.features) == len(entry.predicted) == stats.n == len(indices):
        return entry
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
      pass
    # A damaged entry (truncated, not a .npz, fields or rows missing) is recomputed and replaced.
  out = classifier.predict(dataset.model_images(split, indices), mesh, batch_size)
  stats = feature_statistics(out["features"])
  if path:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path[:-4]}.tmp{os.getpid()}.npz"
    np.savez(tmp, features=out["features"], predicted=out["labels"], mu=stats.mu,
             sigma=stats.sigma, n=stats.n)
    os.replace(tmp, path)
  return RealFeatures(key, out["features"], out["labels"], stats, False)
