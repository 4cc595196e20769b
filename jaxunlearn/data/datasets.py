"""One function, three sources: the local folder, or tensorflow-datasets.

:func:`load_dataset` returns an :class:`ImageDataset` of uint8 arrays (kept for export);
:meth:`ImageDataset.model_images` converts through the single conversion function of
:mod:`jaxunlearn.images` to float32 NHWC in [-1, 1] at 32x32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from jaxunlearn import images as images_lib
from jaxunlearn.data import local
from jaxunlearn.errors import UserInputError

DATA_DIR_ENV = "JAXUNLEARN_DATA_DIR"
DATASETS = ("mnist", "cifar10")
CIFAR10_VARIANTS = ("jpeg_full", "exact_subset")
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  """A labelled image dataset held in memory.

  Attributes:
    name: "mnist" or "cifar10".
    train_images, test_images: uint8 (N, h, w, C), as stored (MNIST 28x28x1, CIFAR 32x32x3).
    train_labels, test_labels: int32 (N,).
    provenance: where the pixels came from; says "lossy" when they are not the original values.
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  provenance: str

  @property
  def class_names(self) -> tuple[str, ...]:
    return CLASS_NAMES[self.name]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def channels(self) -> int:
    return int(self.train_images.shape[-1])

  def model_images(self, which: str, indices: np.ndarray | None = None) -> np.ndarray:
    """float32 (n, 32, 32, C) in [-1, 1] of the train or test split (optionally a subset)."""
    x = self.train_images if which == "train" else self.test_images
    return images_lib.uint8_to_model(x if indices is None else x[indices])

  def fingerprint(self) -> str:
    """Short hash of the training labels and a pixel sample, to tell datasets apart."""
    h = hashlib.sha256()
    h.update(self.name.encode())
    h.update(self.train_labels.tobytes())
    h.update(self.train_images[::997].tobytes())
    return h.hexdigest()[:16]


def resolve_data_dir(data_dir: str | None) -> str | None:
  """The local folder to read: the flag, else ``$JAXUNLEARN_DATA_DIR``, else None (tfds)."""
  path = data_dir or os.environ.get(DATA_DIR_ENV) or None
  if path is not None and not os.path.isdir(path):
    raise UserInputError(f"data directory {path!r} does not exist (from --data_dir or "
                         f"${DATA_DIR_ENV}); it must hold mnist/ and/or cifar10/")
  return path


def load_dataset(name: str, data_dir: str | None = None, cifar10_variant: str = "jpeg_full"
                 ) -> ImageDataset:
  """Loads MNIST or CIFAR-10 from the local folder, or via tensorflow-datasets.

  Args:
    name: "mnist" or "cifar10".
    data_dir: local dataset folder; None falls back to ``$JAXUNLEARN_DATA_DIR`` and then tfds.
    cifar10_variant: local CIFAR-10 source, "jpeg_full" (all images, lossy) or "exact_subset".
  """
  if name not in DATASETS:
    raise UserInputError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
  if name == "cifar10" and cifar10_variant not in CIFAR10_VARIANTS:
    raise UserInputError(f"unknown CIFAR-10 variant {cifar10_variant!r}; valid: "
                         f"{', '.join(CIFAR10_VARIANTS)}")
  folder = resolve_data_dir(data_dir)
  if folder is None:
    from jaxunlearn.data import tfds_source  # pylint: disable=g-import-not-at-top
    splits = {s: tfds_source.load_split(name, s) for s in ("train", "test")}
    provenance = f"{name} via tensorflow-datasets (original pixels)"
  elif name == "mnist":
    splits = {s: local.load_mnist(folder, s) for s in ("train", "test")}
    provenance = "MNIST, original IDX files"
  else:
    splits = {s: local.load_cifar10(folder, s, cifar10_variant) for s in ("train", "test")}
    provenance = ("CIFAR-10, lossy JPEG copy (not standard numbers)" if cifar10_variant == "jpeg_full"
                  else "CIFAR-10, pixel-exact 5,000-image subset (4,000 train / 1,000 test)")
  (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
  return ImageDataset(name, xtr, ytr, xte, yte, provenance)
