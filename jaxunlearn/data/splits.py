"""Data splits of cascaded_unlearning.md §2 and forget specifications (interface.md).

Training split T = D ∪ H: the non-member pool H (stratified, seeded) is held out of all
GAN training and split into H_cal (methods may use it for stopping rules) and H_eval
(evaluation only). A forget SPEC selects D_u ⊂ D; D_r = D \\ D_u.
All indices returned here are int64 indices into ``ImageDataset.train_*`` unless a
docstring says "positions in D".
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxunlearn.errors import UserInputError

FORGET_SPEC_FORMS = "class:C, classes:C1,C2,..., items:N, items_file:PATH.npy"


@dataclasses.dataclass(frozen=True)
class Splits:
  """Index sets into the training split T (all int64, sorted)."""
  gan_train: np.ndarray   # D = T \ H
  holdout_cal: np.ndarray  # H_cal
  holdout_eval: np.ndarray  # H_eval


def _stratified_take(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
  """Draws ``count`` indices with class proportions of ``labels`` (largest remainder)."""
  classes, sizes = np.unique(labels, return_counts=True)
  exact = count * sizes / sizes.sum()
  take = np.floor(exact).astype(int)
  take[np.argsort(-(exact - take), kind="stable")[:count - take.sum()]] += 1
  chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
  return np.sort(np.concatenate(chosen))


def make_splits(labels: np.ndarray, holdout_size: int, seed: int) -> Splits:
  """Holds out a stratified non-member pool H of ``holdout_size`` images, halved into cal/eval."""
  n = len(labels)
  if not 0 <= holdout_size <= n // 2:
    raise UserInputError(f"holdout_size {holdout_size} is invalid for {n} training images; "
                         f"valid: 0..{n // 2}")
  rng = np.random.default_rng([seed, 1])
  holdout = _stratified_take(labels, holdout_size, rng)
  cal_local = _stratified_take(labels[holdout], holdout_size // 2, rng)
  cal = holdout[cal_local]
  evals = np.setdiff1d(holdout, cal)
  return Splits(np.setdiff1d(np.arange(n), holdout), np.sort(cal), evals)


@dataclasses.dataclass(frozen=True)
class ForgetSet:
  """A resolved forget specification.

  Attributes:
    spec: the SPEC string as given.
    mode: "class" (whole classes) or "item" (listed images).
    classes: forgotten classes (class mode), else ().
    positions: sorted int64 positions in D (the GAN training split) of D_u.
  """
  spec: str
  mode: str
  classes: tuple[int, ...]
  positions: np.ndarray

  def retain_positions(self, num_gan_train: int) -> np.ndarray:
    """Sorted positions in D of the retain set D_r = D \\ D_u."""
    return np.setdiff1d(np.arange(num_gan_train), self.positions)


def _parse_class(token: str, class_names: tuple[str, ...]) -> int:
  token = token.strip()
  valid = f"valid classes: 0..{len(class_names) - 1} or {', '.join(class_names)}"
  if token in class_names:
    return class_names.index(token)
  try:
    c = int(token)
  except ValueError:
    raise UserInputError(f"unknown class {token!r}; {valid}") from None
  if not 0 <= c < len(class_names):
    raise UserInputError(f"unknown class {c}; {valid}")
  return c


def parse_forget_spec(spec: str, gan_train_labels: np.ndarray, class_names: tuple[str, ...],
                      seed: int) -> ForgetSet:
  """Resolves a forget SPEC against D (given by its labels, in D order).

  Refuses, before any work, a SPEC that is malformed, names an unknown class, an index out of
  range, a duplicate, nothing at all, or the whole of D.
  """
  n = len(gan_train_labels)
  kind, sep, arg = (spec or "").partition(":")
  if not sep or not arg.strip():
    raise UserInputError(f"invalid --forget {spec!r}; valid forms: {FORGET_SPEC_FORMS}")
  classes: tuple[int, ...] = ()
  if kind in ("class", "classes"):
    tokens = arg.split(",")
    if kind == "class" and len(tokens) != 1:
      raise UserInputError(f"--forget=class: takes one class, got {arg!r}; use classes:C1,C2")
    classes = tuple(sorted({_parse_class(t, class_names) for t in tokens}))
    if len(classes) != len(tokens):
      raise UserInputError(f"--forget {spec!r} names a class twice")
    positions = np.flatnonzero(np.isin(gan_train_labels, classes))
    mode = "class"
  elif kind == "items":
    try:
      count = int(arg)
    except ValueError:
      raise UserInputError(f"--forget=items:N needs an integer N, got {arg!r}") from None
    if not 1 <= count < n:
      raise UserInputError(f"--forget=items:{count} is out of range; valid: 1..{n - 1} "
                           f"(the GAN training split has {n} images)")
    positions = np.sort(np.random.default_rng([seed, 2]).permutation(n)[:count])
    mode = "item"
  elif kind == "items_file":
    positions = _read_items_file(arg, n)
    mode = "item"
  else:
    raise UserInputError(f"unknown --forget kind {kind!r}; valid forms: {FORGET_SPEC_FORMS}")
  if positions.size == 0:
    raise UserInputError(f"--forget {spec!r} selects no training image")
  if positions.size >= n:
    raise UserInputError(f"--forget {spec!r} selects the whole GAN training split ({n} images); "
                         "nothing would be left to retain")
  return ForgetSet(spec, mode, classes, positions.astype(np.int64))


def _read_items_file(path: str, n: int) -> np.ndarray:
  if not os.path.isfile(path):
    raise UserInputError(f"items_file {path!r} does not exist; expected a .npy of integer indices")
  try:
    idx = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserInputError(f"items_file {path!r} is not a readable .npy array ({e})") from None
  if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
    raise UserInputError(f"items_file {path!r} holds {idx.dtype} {idx.shape}; expected a 1-D "
                         "integer array of indices into the GAN training split")
  if idx.size and (idx.min() < 0 or idx.max() >= n):
    raise UserInputError(f"items_file {path!r} has indices in [{idx.min()}, {idx.max()}]; valid: "
                         f"0..{n - 1}")
  if np.unique(idx).size != idx.size:
    raise UserInputError(f"items_file {path!r} has duplicate indices")
  return np.sort(idx.astype(np.int64))
