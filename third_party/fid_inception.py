"""Import of pytorch-fid's FID Inception-v3 weights into :mod:`jaxunlearn.models.inception` trees.

Format (pytorch-fid, https://github.com/mseitzer/pytorch-fid, Apache-2.0; see
third_party/README.md, "Inception weights"): ``pt_inception-2015-12-05-6726825d.pth``, a plain
torch state dict of torchvision's ``Inception3`` built by pytorch-fid's ``fid_inception_v3()``
(``num_classes=1008``, no auxiliary classifier, FIDInceptionA/C/E blocks). Every convolution is
a torchvision ``BasicConv2d`` with keys ``<module>.conv.weight`` (O, I, kh, kw; no bias) and
``<module>.bn.{weight, bias, running_mean, running_var}``, e.g. ``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_var``, ``Mixed_7c.branch3x3dbl_3a.conv.weight``. No code of
pytorch-fid or torchvision is copied here: this module renames and transposes arrays.

Mapping (the Flax module path is the torch key's dotted prefix):

* ``conv.weight`` (O, I, kh, kw) -> ``params/.../conv/kernel`` (kh, kw, I, O);
* ``bn.weight`` / ``bn.bias`` -> ``params/.../bn/scale`` / ``bias``;
* ``bn.running_mean`` / ``bn.running_var`` -> ``batch_stats/.../bn/mean`` / ``var``.

Ignored: the ImageNet classifier ``fc.weight`` / ``fc.bias`` (FID uses pool3, before it) and
BatchNorm ``num_batches_tracked`` counters (unused in inference). Every other key must be used
exactly once with the expected shape; anything missing, unknown or misshapen is a
:class:`~jaxunlearn.errors.UserInputError` naming the keys.

Loading uses only ``torch.load(path, map_location="cpu", weights_only=True)`` (no pickled code is
run). torch is an optional dependency (``pip install torch``), imported only when a file is read;
:func:`convert_state_dict` works on NumPy arrays without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxunlearn.errors import UserInputError
from jaxunlearn.models import inception

StateDict = Mapping[str, np.ndarray]
"""A torch state dict converted to NumPy: parameter/buffer name -> array (torch layout)."""

IGNORED_KEYS = re.compile(r"fc\.(weight|bias)|.*\.num_batches_tracked")
# (collection, Flax leaf) -> torch leaf of a BasicConv2d.
_LEAVES = {("params", "conv", "kernel"): "conv.weight", ("params", "bn", "scale"): "bn.weight",
           ("params", "bn", "bias"): "bn.bias", ("batch_stats", "bn", "mean"): "bn.running_mean",
           ("batch_stats", "bn", "var"): "bn.running_var"}
_MAX_LISTED = 6


def _listed(keys: list[str]) -> str:
  more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
  return ", ".join(keys[:_MAX_LISTED]) + more


def torch_key(path: tuple[str, ...]) -> str:
  """The torch state-dict key of a Flax variable path (collection, module..., conv|bn, leaf)."""
  collection, *modules, layer, leaf = path
  return ".".join(modules) + "." + _LEAVES[(collection, layer, leaf)]


def expected_keys() -> dict[str, tuple[int, ...]]:
  """Every torch key the importer needs -> its torch shape (conv weights as (O, I, kh, kw))."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(inception.variable_shapes())[0]:
    names = tuple(p.key for p in path)
    shape = tuple(leaf.shape)
    out[torch_key(names)] = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
  return out


def convert_state_dict(state_dict: StateDict) -> dict[str, Any]:
  """A pytorch-fid Inception state dict (NumPy arrays) -> ``{"params": ..., "batch_stats": ...}``.

  The result is the variables of :class:`jaxunlearn.models.inception.FIDInceptionV3`.

  Raises:
    UserInputError: keys missing, unexpected keys, or arrays of the wrong shape (each listed).
  """
  expected = expected_keys()
  given = {k for k in state_dict if not IGNORED_KEYS.fullmatch(k)}
  missing, unexpected = sorted(expected.keys() - given), sorted(given - expected.keys())
  if missing or unexpected:
    parts = ([f"missing keys {_listed(missing)}"] if missing else []) + (
        [f"unexpected keys {_listed(unexpected)}"] if unexpected else [])
    raise UserInputError("FID Inception weights: " + "; ".join(parts) + " (expected pytorch-fid's "
                         "pt_inception-2015-12-05 state dict)")
  wrong = sorted(f"{k} {tuple(np.shape(state_dict[k]))} (expected {s})"
                 for k, s in expected.items() if tuple(np.shape(state_dict[k])) != s)
  if wrong:
    raise UserInputError(f"FID Inception weights: wrong shapes {_listed(wrong)}")

  def leaf(path, _):
    value = np.asarray(state_dict[torch_key(tuple(p.key for p in path))], np.float32)
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value

  return jax.tree_util.tree_map_with_path(leaf, inception.variable_shapes())


def load_fid_inception(path: str) -> dict[str, Any]:
  """Reads ``pt_inception-2015-12-05-6726825d.pth`` -> FIDInceptionV3 variables.

  Raises:
    ImportError: torch is not installed.
    UserInputError: the file is not a readable torch state dict, or its keys/shapes do not fit.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading FID Inception weights needs PyTorch, an optional dependency of "
                      "jaxunlearn: pip install torch") from e
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many types on bad files
    reason = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]  # first sentence
    raise UserInputError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: "
                         f"{reason}); expected pytorch-fid's pt_inception-2015-12-05 weights"
                         ) from None
  if not isinstance(state_dict, Mapping) or not all(
      isinstance(v, torch.Tensor) for v in state_dict.values()):
    raise UserInputError(f"{path} does not hold a state dict (a mapping of names to tensors); "
                         "expected pytorch-fid's pt_inception-2015-12-05 weights")
  return convert_state_dict({k: v.detach().cpu().float().numpy() for k, v in state_dict.items()})
