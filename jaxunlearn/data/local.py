"""Readers for the local dataset folder (``--data_dir`` / ``$JAXUNLEARN_DATA_DIR``).

Layout (see ``shared/data/README.md``):
  mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   canonical IDX files
  cifar10/cifar10_exact_subset.npz                         5,000 pixel-exact images
  cifar10/cifar10_{train,test}_jpeg_lossy.npz              all 60,000 images, JPEG q75 (lossy)

Every reader verifies what it reads (magic numbers, shapes, label range) and raises
:class:`~jaxunlearn.errors.UserInputError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib

import numpy as np

from jaxunlearn.errors import UserInputError

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR10_EXACT = "cifar10_exact_subset.npz"
CIFAR10_JPEG = {"train": "cifar10_train_jpeg_lossy.npz", "test": "cifar10_test_jpeg_lossy.npz"}


def _read_gz(path: str) -> bytes:
  if not os.path.isfile(path):
    raise UserInputError(f"data file not found: {path} (expected the canonical gzipped IDX file there)")
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise UserInputError(f"corrupt data file {path}: not a complete gzip stream ({e})") from None


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads a gzipped big-endian IDX file: images (N, rows, cols) or labels (N,), uint8."""
  raw = _read_gz(path)
  ndim = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}[expected_magic]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise UserInputError(f"corrupt IDX file {path}: {len(raw)} bytes, shorter than its header")
  magic = int.from_bytes(raw[:4], "big")
  if magic != expected_magic:
    raise UserInputError(f"corrupt IDX file {path}: magic number {magic}, expected {expected_magic}")
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  count = int(np.prod(dims))
  if len(raw) != header + count:
    raise UserInputError(f"corrupt IDX file {path}: header says {dims} ({count} values) but "
                         f"{len(raw) - header} bytes follow (truncated or padded)")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_mnist(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """MNIST split from IDX files: uint8 images (N, 28, 28, 1) and int32 labels (N,)."""
  image_file, label_file = MNIST_FILES[split]
  images = read_idx(os.path.join(data_dir, "mnist", image_file), IDX_IMAGES_MAGIC)
  labels = read_idx(os.path.join(data_dir, "mnist", label_file), IDX_LABELS_MAGIC).astype(np.int32)
  if images.shape[1:] != (28, 28):
    raise UserInputError(f"MNIST {split} images have shape {images.shape[1:]}, expected (28, 28)")
  if len(images) != len(labels):
    raise UserInputError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
  _check_labels(labels, 10, f"MNIST {split} labels")
  return images[..., None], labels


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise UserInputError(f"{what} lie in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}")


def _load_npz(path: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise UserInputError(f"data file not found: {path}")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in keys if k not in f.files]
      if missing:
        raise UserInputError(f"corrupt data file {path}: missing arrays {missing} (has {f.files})")
      return {k: f[k] for k in keys}
  except (OSError, ValueError, zlib.error, EOFError) as e:
    if isinstance(e, UserInputError):
      raise
    raise UserInputError(f"corrupt data file {path}: cannot be read as npz ({e})") from None


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((len(offsets) - 1, 32, 32, 3), np.uint8)
  data = blob.tobytes()
  for i in range(len(offsets) - 1):
    try:
      img = Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]])).convert("RGB")
    except OSError as e:
      raise UserInputError(f"corrupt data file {path}: JPEG {i} does not decode ({e})") from None
    out[i] = np.asarray(img)
  return out


def load_cifar10(data_dir: str, split: str, variant: str) -> tuple[np.ndarray, np.ndarray]:
  """CIFAR-10 split: uint8 (N, 32, 32, 3) and int32 labels.

  variant "exact_subset": 4,000 train / 1,000 test images with the original pixels.
  variant "jpeg_full": all 50,000 / 10,000 images, JPEG-compressed (lossy, not standard numbers).
  """
  folder = os.path.join(data_dir, "cifar10")
  if variant == "exact_subset":
    path = os.path.join(folder, CIFAR10_EXACT)
    arrays = _load_npz(path, (f"x_{split}", f"y_{split}"))
    images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"].astype(np.int32)
  elif variant == "jpeg_full":
    path = os.path.join(folder, CIFAR10_JPEG[split])
    arrays = _load_npz(path, ("jpeg", "offsets", "y"))
    images = _decode_jpegs(arrays["jpeg"], arrays["offsets"], path)
    labels = arrays["y"].astype(np.int32)
  else:
    raise UserInputError(f"unknown CIFAR-10 variant {variant!r}; valid: 'jpeg_full', 'exact_subset'")
  if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3) or len(images) != len(labels):
    raise UserInputError(f"corrupt data file {path}: images {images.dtype} {images.shape}, "
                         f"labels {labels.shape}; expected uint8 (N, 32, 32, 3) and (N,)")
  _check_labels(labels, 10, f"CIFAR-10 {split} labels in {path}")
  return images, labels
