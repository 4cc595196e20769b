"""tensorflow-datasets fallback when no local folder is given.

``tfds.data_source`` reads prepared ArrayRecord files without TensorFlow. Preparing them
(``tfds.load`` / ``download_and_prepare``) needs TensorFlow and internet: install the
``tfds-online`` extra. Offline, tfds retries downloads for minutes, so any failure here is
reported with the remedy: pass ``--data_dir``.
"""

from __future__ import annotations

import numpy as np

from jaxunlearn.errors import UserInputError

_REMEDY = ("pass --data_dir=DIR (or set $JAXUNLEARN_DATA_DIR) pointing at a local copy with "
           "mnist/*.gz and cifar10/*.npz; the tfds path needs internet and "
           "`pip install tensorflow-cpu` to download and prepare the dataset")


def load_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images (N, H, W, C) and int32 labels of one tfds split."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    source = tfds.data_source(name, split=split, download=True)
  except Exception as e:  # tfds raises many types here (download, missing TF, ...).
    raise UserInputError(f"could not load {name}/{split} with tensorflow-datasets "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); {_REMEDY}") from None
  examples = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
  labels = np.asarray([ex["label"] for ex in examples], np.int32)
  return images, labels
