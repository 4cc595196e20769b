"""The project's classifiers (evaluation.md §1): modules, checkpoint format and loading.

Two architectures, both ``__call__(x, train=False) -> (logits, features)`` on images
x (N, 32, 32, C) in [-1, 1]:

* :class:`LeNet` (MNIST): conv 5×5 (w0) → max-pool → conv 5×5 (w1) → max-pool → dense w2 (ReLU;
  the penultimate features, d = w2 = 128) → dense C. No batch statistics, no dropout.
* :class:`ResNet20` (CIFAR-10): ResNet-20 layout, 3 stages × 3 basic blocks of widths
  (w0, w1, w2) = (32, 64, 128) (double width), global average pooling (features, d = w2), dense C.

Classifiers are measuring instruments: trained once by ``experiments.train_classifier``,
frozen, always applied in inference mode. :func:`load_classifier` restores one from its
workdir as a :class:`TrainedClassifier`; two instances per dataset exist, role ``eval``
(seed 0, metrics only) and role ``feedback`` (seed 1, used by methods).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn.data.datasets import CLASS_NAMES
from jaxunlearn.errors import UserInputError
from jaxunlearn.batching import make_batched_apply

PyTree = Any
ROLES = ("eval", "feedback")
ROLE_SEEDS = {"eval": 0, "feedback": 1}
MODELS = ("lenet", "resnet20")
_CHANNELS = {"mnist": 1, "cifar10": 3}


class LeNet(nn.Module):
  """LeNet-style CNN: (N, 32, 32, C) -> (logits (N, num_classes), features (N, widths[2]))."""
  num_classes: int = 10
  widths: Sequence[int] = (32, 64, 128)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    del train  # no batch statistics and no dropout: training and inference compute the same map
    conv1, conv2, hidden = self.widths
    x = nn.max_pool(nn.relu(nn.Conv(conv1, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))  # 14×14
    x = nn.max_pool(nn.relu(nn.Conv(conv2, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))  # 5×5
    features = nn.relu(nn.Dense(hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(features), features


class _BasicBlock(nn.Module):
  """3×3 conv-BN-ReLU-3×3 conv-BN plus the (1×1 conv-BN projected) shortcut, then ReLU."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5)
    y = nn.Conv(self.features, (3, 3), strides=self.stride, padding="SAME", use_bias=False)(x)
    y = nn.relu(norm()(y))
    y = norm()(nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y))
    if self.stride != 1 or x.shape[-1] != self.features:
      x = norm()(nn.Conv(self.features, (1, 1), strides=self.stride, use_bias=False)(x))
    return nn.relu(x + y)


class ResNet20(nn.Module):
  """ResNet-20 layout: (N, 32, 32, C) -> (logits (N, num_classes), features (N, widths[2])).

  BatchNorm uses batch statistics with ``train=True`` (running averages in ``batch_stats``,
  momentum 0.9) and the running statistics with ``train=False``.
  """
  num_classes: int = 10
  widths: Sequence[int] = (32, 64, 128)
  blocks_per_stage: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    x = nn.Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x))
    for stage, width in enumerate(self.widths):
      for block in range(self.blocks_per_stage):
        x = _BasicBlock(width, 2 if stage > 0 and block == 0 else 1)(x, train)
    features = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(features), features


def architecture(config) -> dict[str, Any]:
  """The fields that fix a classifier's parameter shapes (stored in every checkpoint)."""
  if config["model"] not in MODELS:
    raise UserInputError(f"unknown classifier model {config['model']!r}; valid: {', '.join(MODELS)}")
  if config["dataset"] not in _CHANNELS:
    raise UserInputError(f"unknown dataset {config['dataset']!r}; valid: {', '.join(_CHANNELS)}")
  widths = [int(w) for w in config["widths"]]
  if len(widths) != 3 or min(widths) < 1:
    raise UserInputError(f"widths={widths} must be three positive integers")
  return {"model": config["model"], "dataset": config["dataset"], "widths": widths,
          "num_classes": len(CLASS_NAMES[config["dataset"]]), "channels": _CHANNELS[config["dataset"]]}


def make_classifier(arch: dict[str, Any]) -> nn.Module:
  """The module of an :func:`architecture` record."""
  cls = {"lenet": LeNet, "resnet20": ResNet20}[arch["model"]]
  return cls(num_classes=arch["num_classes"], widths=tuple(arch["widths"]))


class ClassifierState(struct.PyTreeNode):
  """A classifier checkpoint: step, parameters, BatchNorm statistics and optimizer state."""
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree


def make_optimizer(opt, total_steps: int) -> optax.GradientTransformation:
  """Adam or SGD with momentum, constant or cosine learning rate, weight decay added to the gradient.

  ``opt`` has name ('adam' | 'sgd'), learning_rate, momentum, weight_decay, schedule
  ('constant' | 'cosine').
  """
  if opt["schedule"] == "cosine":
    lr = optax.cosine_decay_schedule(opt["learning_rate"], max(total_steps, 1))
  elif opt["schedule"] == "constant":
    lr = opt["learning_rate"]
  else:
    raise UserInputError(f"unknown schedule {opt['schedule']!r}; valid: constant, cosine")
  if opt["name"] == "adam":
    tx = optax.adam(lr)
  elif opt["name"] == "sgd":
    tx = optax.sgd(lr, momentum=opt["momentum"], nesterov=False)
  else:
    raise UserInputError(f"unknown optimizer {opt['name']!r}; valid: adam, sgd")
  return optax.chain(optax.add_decayed_weights(opt["weight_decay"]), tx)


def create_state(module: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array,
                 image_shape: tuple[int, int, int]) -> ClassifierState:
  """Fresh state: parameters from ``key``; step 0."""
  variables = module.init(key, jnp.zeros((1, *image_shape)), train=False)
  params = variables["params"]
  return ClassifierState(step=jnp.zeros((), jnp.int32), params=params,
                         batch_stats=variables.get("batch_stats", {}),
                         opt_state=optimizer.init(params))


def params_hash(variables: PyTree) -> str:
  """Short SHA-256 of the inference variables (tells two sets of weights apart)."""
  return ckpt_lib.tree_digest(variables)[:16]


@functools.lru_cache(maxsize=16)
def _batched_outputs(module: nn.Module, mesh: Mesh):
  """One compiled inference function per (module, mesh)."""

  def outputs(variables, x):
    logits, features = module.apply(variables, x, train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return {"logits": logits, "probs": probs, "features": features,
            "labels": jnp.argmax(logits, axis=-1).astype(jnp.int32)}

  return make_batched_apply(outputs, mesh)


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
  """A frozen classifier: module, variables {'params', 'batch_stats'} and checkpoint meta.

  ``meta`` holds dataset, role ('eval' | 'feedback'), seed, test_accuracy, feature_dim, id,
  params_hash, architecture and the training data's fingerprint.
  """
  module: nn.Module
  variables: dict
  meta: dict

  def apply(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inference mode, jittable: images (N, 32, 32, C) in [-1, 1] -> (logits (N, K), features (N, d))."""
    return self.module.apply(self.variables, images, train=False)

  def predict(self, images, mesh: Mesh, batch_size: int = 500) -> dict[str, np.ndarray]:
    """Batched, data-parallel inference on host or device images (N, 32, 32, C) in [-1, 1].

    Returns host arrays: 'logits' (N, K), 'probs' (N, K) softmax, 'features' (N, d) penultimate
    features, 'labels' (N,) int32 argmax.
    """
    return _batched_outputs(self.module, mesh)(self.variables, np.asarray(images, np.float32),
                                               batch_size)


def classifier_id(meta: dict[str, Any]) -> str:
  """E.g. ``mnist_lenet_eval_s0`` (``_smoke`` appended for smoke-sized training)."""
  arch = meta["architecture"]
  suffix = "_smoke" if meta.get("smoke") else ""
  return f"{arch['dataset']}_{arch['model']}_{meta['role']}_s{meta['seed']}{suffix}"


def load_classifier(workdir: str, *, dataset: str | None = None, role: str | None = None,
                    flag: str = "--classifier") -> TrainedClassifier:
  """Restores the finished classifier of an ``experiments.train_classifier`` workdir.

  The variables are replicated over all devices. Refuses (UserInputError, one clear message) a
  folder that is not such a workdir, one whose training has not finished, and a classifier of
  another ``dataset`` or ``role`` than asked for.
  """
  config_path = os.path.join(workdir or "", "config.json")
  if not workdir or not os.path.isfile(config_path):
    raise UserInputError(f"{flag}={workdir!r} is not a train_classifier workdir (no config.json); "
                         "pass the --workdir of an experiments.train_classifier run")
  try:
    config = runs.read_json(config_path)["config"]
  except (ValueError, KeyError, TypeError) as e:
    raise UserInputError(f"{flag}: {config_path} is unreadable ({e})") from None
  if not isinstance(config, dict) or "role" not in config or "widths" not in config:
    raise UserInputError(f"{flag}={workdir!r} holds no classifier (its config.json is not a "
                         "train_classifier config); pass the --workdir of an "
                         "experiments.train_classifier run")
  if not os.path.isdir(os.path.join(workdir, ckpt_lib.CHECKPOINT_DIR)):
    raise UserInputError(f"{flag}={workdir!r} has no checkpoints/ folder yet")
  arch = architecture(config)
  module = make_classifier(arch)
  abstract = jax.eval_shape(lambda key: create_state(
      module, make_optimizer(config["optimizer"], 1), key, (32, 32, arch["channels"])),
      jax.random.key(0))
  rep = parallel.replicated(parallel.make_mesh())
  restored = ckpt_lib.Checkpointer(workdir, read_only=True).restore_latest(
      ckpt_lib.abstract_like(abstract, rep))
  if restored is None:
    raise UserInputError(f"{flag}={workdir!r} has no checkpoint yet; let its training run first")
  step, state, meta = restored
  if meta.get("kind") != "classifier":
    raise UserInputError(f"{flag}={workdir!r} holds a {meta.get('kind')} checkpoint, not a classifier")
  if "test_accuracy" not in meta:
    raise UserInputError(f"{flag}={workdir!r}: training stopped at step {step} before it finished; "
                         "rerun its experiments.train_classifier command to complete it")
  if dataset is not None and meta["dataset"] != dataset:
    raise UserInputError(f"{flag}={workdir!r} is a {meta['dataset']} classifier, but this task is "
                         f"on {dataset}; pass a classifier trained on {dataset}")
  if role is not None and meta["role"] != role:
    raise UserInputError(f"{flag}={workdir!r} is the {meta['role']!r} classifier; this needs the "
                         f"{role!r} one (experiments.train_classifier --config.role={role})")
  return TrainedClassifier(module, {"params": state.params, "batch_stats": state.batch_stats},
                           meta)
