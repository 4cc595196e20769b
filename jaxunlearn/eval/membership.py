"""Membership inference for item unlearning (evaluation.md §8), MIA-D, MIA-L and MIA-G.

Sets (indices into the training split): members D_u (n images), non-members H_eval (never
seen by any GAN or method), a control of n random retained images (still members: shows
whether the attack has power) and 2,000 further random retained images that fix the loss
threshold τ of MIA-L before D_u and H_eval are scored. The score is D's logit in inference
mode (higher = member); :func:`jaxunlearn.eval.mia.membership_report` turns scores into AUC,
bootstrap CI, LOGAN balanced accuracy, TPR at 1 % FPR and the τ operating point. MIA-G
(optional, for a released G alone) scores the same sets by −L_rec(x), the generator's
reconstruction error (reconstruction.py), with G's EMA weights in inference mode.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from jaxunlearn import parallel
from jaxunlearn.batching import make_batched_apply
from jaxunlearn.data import ForgetSet, ImageDataset, Splits
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import mia
from jaxunlearn.eval import reconstruction
from jaxunlearn.train.gan import GAN
from jaxunlearn.train.pretrained import TrainedGAN


@dataclasses.dataclass(frozen=True)
class MembershipSets:
  """Index sets into ``ImageDataset.train_*`` (int64)."""
  member: np.ndarray     # D_u
  nonmember: np.ndarray  # H_eval
  control: np.ndarray    # n random images of D_r
  threshold: np.ndarray  # up to num_threshold further images of D_r (τ)


def membership_sets(splits: Splits, forget: ForgetSet, *, num_threshold: int = 2000,
                    seed: int = 0) -> MembershipSets:
  """Draws the control and threshold sets from D_r (disjoint, seeded); D_u and H_eval as given."""
  d = splits.gan_train
  retained = d[forget.retain_positions(len(d))]
  order = np.random.default_rng([seed, 3]).permutation(len(retained))
  n = len(forget.positions)
  control = np.sort(retained[order[:n]])
  threshold = np.sort(retained[order[n:n + num_threshold]])
  return MembershipSets(d[forget.positions], splits.holdout_eval, control, threshold)


@functools.lru_cache(maxsize=8)
def _batched_logits(discriminator: nn.Module, mesh: Mesh):
  return make_batched_apply(lambda params, x: discriminator.apply({"params": params}, x), mesh)


def discriminator_scores(trained: TrainedGAN, images: np.ndarray, mesh: Mesh,
                         batch_size: int = 500) -> np.ndarray:
  """D(x) in inference mode: images (N, 32, 32, C) in [-1, 1] -> (N,) float32 logits."""
  run = _batched_logits(trained.gan.discriminator, mesh)
  return np.asarray(run(trained.state.d_params, images, batch_size), np.float32)


def check_mia_g_config(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """Refuses MIA-G settings (``evaluate.py``'s ``mia_g``) that cannot run, when enabled."""
  if not config.enabled:
    return
  if config.restarts < 1 or config.steps < 0 or not config.learning_rate > 0:
    raise UserInputError(f"mia_g: restarts={config.restarts}, steps={config.steps}, "
                         f"learning_rate={config.learning_rate}; need restarts >= 1, steps >= 0 "
                         "and learning_rate > 0")
  parallel.check_batch_size(config.batch_size, mesh, "mia_g.batch_size")


@functools.lru_cache(maxsize=8)
def _reconstruction_fn(gan: GAN, mesh: Mesh, restarts: int, steps: int, learning_rate: float):
  return reconstruction.make_reconstruction_fn(
      lambda variables, z: gan.generate(*variables, z), mesh, latent_dim=gan.latent_dim,
      restarts=restarts, steps=steps, learning_rate=learning_rate)


def reconstruction_scores(trained: TrainedGAN, images: np.ndarray, ids: np.ndarray, mesh: Mesh,
                          config: ml_collections.ConfigDict) -> np.ndarray:
  """MIA-G scores −L_rec(x) (higher = member) of images (N, 32, 32, C) with train-split ids (N,).

  G = the EMA generator in inference mode; ``config`` is ``evaluate.py``'s ``mia_g`` (restarts,
  steps, learning_rate, batch_size, seed: the key of every image's starts).
  """
  run = _reconstruction_fn(trained.gan, mesh, config.restarts, config.steps,
                           float(config.learning_rate))
  errors = run((trained.state.g_ema_params, trained.state.g_batch_stats), images, ids,
               jax.random.key(config.seed), config.batch_size)
  return -errors


def membership_inference(trained: TrainedGAN, sets: MembershipSets, dataset: ImageDataset,
                         mesh: Mesh, *, batch_size: int = 500, seed: int = 0,
                         mia_g: ml_collections.ConfigDict | None = None) -> dict:
  """MIA-D and MIA-L of one model on the shared sets (see ``mia.membership_report``).

  τ = mean ℓ(x) = mean softplus(−D(x)) over ``sets.threshold``, fixed before D_u and H_eval are
  scored. The result also holds ``threshold_n``, the number of images behind τ. With
  ``mia_g.enabled`` it holds ``mia_g``: the same report (without τ) of the scores −L_rec on D_u,
  H_eval and the control set.
  """
  scores = lambda idx: discriminator_scores(trained, dataset.model_images("train", idx), mesh,
                                            batch_size)
  tau = float(np.mean(mia.real_label_loss(scores(sets.threshold))))
  report = mia.membership_report(scores(sets.member), scores(sets.nonmember),
                                 control_scores=scores(sets.control), loss_threshold=tau,
                                 seed=seed)
  report["threshold_n"] = int(len(sets.threshold))
  if mia_g is not None and mia_g.enabled:
    g_scores = lambda idx: reconstruction_scores(trained, dataset.model_images("train", idx), idx,
                                                 mesh, mia_g)
    report["mia_g"] = mia.membership_report(g_scores(sets.member), g_scores(sets.nonmember),
                                            control_scores=g_scores(sets.control), seed=seed)
  return report
