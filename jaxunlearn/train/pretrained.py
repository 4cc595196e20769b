"""Loading a GAN trained by ``experiments.train_gan`` from its workdir.

``--pretrained`` and ``--checkpoint`` take such a workdir; its config.json rebuilds the
modules and its newest intact checkpoint gives the state. Anything else is refused with one
clear message.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn.errors import UserInputError
from jaxunlearn.train import gan as gan_lib


@dataclasses.dataclass(frozen=True)
class TrainedGAN:
  """A trained GAN: its collaborator, replicated state, training config and checkpoint meta."""
  gan: gan_lib.GAN
  state: gan_lib.GANState
  config: ml_collections.ConfigDict
  meta: dict[str, Any]
  step: int
  workdir: str


def read_config(workdir: str, *, flag: str = "--pretrained") -> ml_collections.ConfigDict:
  """The GAN config of a ``train_gan`` workdir (its config.json), without touching checkpoints."""
  config_path = os.path.join(workdir or "", "config.json")
  if not workdir or not os.path.isfile(config_path):
    raise UserInputError(f"{flag}={workdir!r} is not a train_gan workdir (no config.json); pass "
                         "the --workdir of an experiments.train_gan run")
  try:
    config = ml_collections.ConfigDict(runs.read_json(config_path)["config"])
  except (ValueError, KeyError) as e:
    raise UserInputError(f"{flag}: {config_path} is unreadable ({e})") from None
  if "model" not in config or "latent_dim" not in config:
    raise UserInputError(f"{flag}={workdir!r} holds no GAN (its config.json has no model); pass "
                         "the --workdir of an experiments.train_gan run")
  return config


def load_gan(workdir: str, mesh: Mesh, *, flag: str = "--pretrained") -> TrainedGAN:
  """Restores the newest intact checkpoint of a ``train_gan`` workdir onto ``mesh``."""
  config = read_config(workdir, flag=flag)
  if not os.path.isdir(os.path.join(workdir, ckpt_lib.CHECKPOINT_DIR)):
    raise UserInputError(f"{flag}={workdir!r} has no checkpoints/ folder yet")
  gan = gan_lib.make_gan(config)
  channels = 1 if config.dataset == "mnist" else 3
  rep = parallel.replicated(mesh)
  abstract = jax.eval_shape(functools.partial(gan.init, image_shape=(32, 32, channels)),
                            jax.random.key(0))
  checkpointer = ckpt_lib.Checkpointer(workdir, read_only=True)
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(abstract, rep))
  if restored is None:
    raise UserInputError(f"{flag}={workdir!r} has no checkpoint yet; let its training run first")
  step, state, meta = restored
  if meta.get("kind", "gan") != "gan":
    raise UserInputError(f"{flag}={workdir!r} holds a {meta.get('kind')} checkpoint, not a GAN")
  return TrainedGAN(gan, state, config, meta, step, os.path.abspath(workdir))


def check_same_setup(a: TrainedGAN, b: TrainedGAN, what: str) -> None:
  """Refuses to compare GANs of different datasets or architectures."""
  if a.meta.get("dataset") != b.meta.get("dataset"):
    raise UserInputError(f"{what} was trained on {b.meta.get('dataset')!r} but the model under test "
                         f"on {a.meta.get('dataset')!r}; they must share the dataset")
  if a.meta.get("architecture") != b.meta.get("architecture"):
    raise UserInputError(f"{what} has architecture {b.meta.get('architecture')} but the model under "
                         f"test {a.meta.get('architecture')}; they must match")
