"""Datasets, splits, forget specifications and batch order."""

from jaxunlearn.data.batches import EpochBatches
from jaxunlearn.data.datasets import DATASETS, ImageDataset, load_dataset, resolve_data_dir
from jaxunlearn.data.splits import ForgetSet, Splits, make_splits, parse_forget_spec

__all__ = ["DATASETS", "EpochBatches", "ForgetSet", "ImageDataset", "Splits", "load_dataset",
           "make_splits", "parse_forget_spec", "resolve_data_dir"]
