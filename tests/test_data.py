"""Data: local readers, verification errors, splits, forget specs, batch order, tfds path."""

import gzip
import os

import numpy as np
import pytest

from jaxunlearn import images
from jaxunlearn.data import EpochBatches, load_dataset, make_splits, parse_forget_spec
from jaxunlearn.data import local
from jaxunlearn.errors import UserInputError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist(data_dir):
  return load_dataset("mnist", data_dir)


def test_local_mnist_has_published_counts(mnist):
  assert mnist.train_images.shape == (60000, 28, 28, 1)
  assert mnist.test_images.shape == (10000, 28, 28, 1)
  assert np.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_COUNTS
  assert np.bincount(mnist.test_labels).tolist() == MNIST_TEST_COUNTS
  x = mnist.model_images("test", np.arange(5))
  assert x.shape == (5, 32, 32, 1) and x.dtype == np.float32
  assert x.min() == -1.0 and x.max() <= 1.0
  assert np.all(x[:, :2] == -1.0)  # the 28 -> 32 padding is background


def test_image_round_trip_is_exact():
  u8 = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  np.testing.assert_array_equal(images.model_to_uint8(images.uint8_to_model(u8)), u8)


def _write_mnist_copy(tmp_path, data_dir, mutate):
  folder = tmp_path / "mnist"
  folder.mkdir()
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    raw = open(os.path.join(data_dir, "mnist", name), "rb").read()
    (folder / name).write_bytes(mutate(name, raw))
  return str(tmp_path)


def test_truncated_file_gives_one_clear_error(tmp_path, data_dir):
  def truncate(name, raw):
    if name != "t10k-labels-idx1-ubyte.gz":
      return raw
    return gzip.compress(gzip.decompress(raw)[:-10])
  folder = _write_mnist_copy(tmp_path, data_dir, truncate)
  with pytest.raises(UserInputError, match=r"t10k-labels.*truncated"):
    load_dataset("mnist", folder)


def test_corrupt_gzip_and_bad_magic(tmp_path):
  (tmp_path / "mnist").mkdir()
  bad_gz = tmp_path / "mnist" / "a.gz"
  bad_gz.write_bytes(b"this is not gzip")
  with pytest.raises(UserInputError, match="not a complete gzip stream"):
    local.read_idx(str(bad_gz), local.IDX_LABELS_MAGIC)
  wrong_magic = tmp_path / "mnist" / "b.gz"
  wrong_magic.write_bytes(gzip.compress((2051).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\0"))
  with pytest.raises(UserInputError, match="magic number 2051, expected 2049"):
    local.read_idx(str(wrong_magic), local.IDX_LABELS_MAGIC)


def test_unknown_dataset_and_missing_folder():
  with pytest.raises(UserInputError, match="unknown dataset 'svhn'; valid datasets: mnist, cifar10"):
    load_dataset("svhn", "/nonexistent")
  with pytest.raises(UserInputError, match="does not exist"):
    load_dataset("mnist", "/nonexistent/folder")


def test_cifar10_exact_subset(data_dir):
  ds = load_dataset("cifar10", data_dir, cifar10_variant="exact_subset")
  assert ds.train_images.shape == (4000, 32, 32, 3) and ds.test_images.shape == (1000, 32, 32, 3)
  assert np.bincount(ds.train_labels).tolist() == [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
  assert "pixel-exact" in ds.provenance


def test_splits_are_stratified_disjoint_and_seeded():
  labels = np.repeat(np.arange(10), [600, 700, 500, 650, 550, 600, 600, 620, 580, 600])
  s = make_splits(labels, 1000, seed=0)
  everything = np.concatenate([s.gan_train, s.holdout_cal, s.holdout_eval])
  assert np.unique(everything).size == labels.size == everything.size
  assert len(s.holdout_cal) == len(s.holdout_eval) == 500
  holdout_counts = np.bincount(labels[np.concatenate([s.holdout_cal, s.holdout_eval])])
  np.testing.assert_allclose(holdout_counts, 1000 * np.bincount(labels) / labels.size, atol=1)
  np.testing.assert_array_equal(make_splits(labels, 1000, seed=0).holdout_cal, s.holdout_cal)
  assert not np.array_equal(make_splits(labels, 1000, seed=1).holdout_cal, s.holdout_cal)


def test_forget_specs():
  labels = np.arange(100) % 10
  names = tuple(str(i) for i in range(10))
  f = parse_forget_spec("class:3", labels, names, seed=0)
  assert f.mode == "class" and f.classes == (3,)
  np.testing.assert_array_equal(f.positions, np.flatnonzero(labels == 3))
  assert parse_forget_spec("classes:1,4", labels, names, 0).positions.size == 20
  items = parse_forget_spec("items:16", labels, names, seed=5)
  assert items.mode == "item" and np.unique(items.positions).size == 16
  bigger = parse_forget_spec("items:32", labels, names, seed=5)
  assert set(items.positions) <= set(bigger.positions)  # nested sizes within a seed
  np.testing.assert_array_equal(np.sort(np.r_[f.positions, f.retain_positions(100)]), np.arange(100))


@pytest.mark.parametrize("spec, message", [
    ("class:12", "unknown class 12; valid classes: 0..9"),
    ("class:cat", "unknown class 'cat'"),
    ("items:0", "out of range; valid: 1..99"),
    ("items:100", "out of range"),
    ("classes:1,1", "names a class twice"),
    ("classes:0,1,2,3,4,5,6,7,8,9", "whole GAN training split"),
    ("forget-everything", "valid forms"),
    ("pixels:3", "unknown --forget kind 'pixels'"),
])
def test_bad_forget_specs_are_refused(spec, message):
  with pytest.raises(UserInputError, match=message):
    parse_forget_spec(spec, np.arange(100) % 10, tuple(str(i) for i in range(10)), seed=0)


def test_items_file_checks(tmp_path):
  labels, names = np.arange(50) % 10, tuple(str(i) for i in range(10))
  good = tmp_path / "good.npy"
  np.save(good, np.array([3, 1, 7]))
  assert parse_forget_spec(f"items_file:{good}", labels, names, 0).positions.tolist() == [1, 3, 7]
  for arr, message in ((np.array([1, 1]), "duplicate"), (np.array([1, 50]), "valid: 0..49"),
                       (np.array([], np.int64), "selects no training image"),
                       (np.array([0.5]), "integer")):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(UserInputError, match=message):
      parse_forget_spec(f"items_file:{tmp_path / 'bad.npy'}", labels, names, 0)


def test_epoch_batches_are_a_function_of_the_step():
  a, b = EpochBatches(10, 3, seed=7), EpochBatches(10, 3, seed=7)
  assert a.steps_per_epoch == 3
  epoch0 = np.concatenate([a.indices(s) for s in range(3)])
  assert np.unique(epoch0).size == 9  # one epoch: no repeats, the partial batch dropped
  np.testing.assert_array_equal(b.indices(4), a.indices(4))  # random access == sequential
  assert not np.array_equal(a.indices(0), a.indices(3))  # reshuffled per epoch


def test_tfds_source_offline_with_mock_data(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.delenv("JAXUNLEARN_DATA_DIR", raising=False)
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = load_dataset("mnist", None)
  assert ds.train_images.shape == (12, 28, 28, 1) and ds.train_images.dtype == np.uint8
  assert ds.train_labels.dtype == np.int32 and "tensorflow-datasets" in ds.provenance
