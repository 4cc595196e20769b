"""Membership inference for item unlearning (evaluation.md §8), MIA-D and MIA-L.

Sets (indices into the training split): members D_u (n images), non-members H_eval (never
seen by any GAN or method), a control of n random retained images (still members: shows
whether the attack has power) and 2,000 further random retained images that fix the loss
threshold τ of MIA-L before D_u and H_eval are scored. The score is D's logit in inference
mode (higher = member); :func:`jaxunlearn.eval.mia.membership_report` turns scores into AUC,
bootstrap CI, LOGAN balanced accuracy, TPR at 1 % FPR and the τ operating point.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import numpy as np
from jax.sharding import Mesh

from jaxunlearn.data import ForgetSet, ImageDataset, Splits
from jaxunlearn.eval import mia
from jaxunlearn.batching import make_batched_apply
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


def membership_inference(trained: TrainedGAN, sets: MembershipSets, dataset: ImageDataset,
                         mesh: Mesh, *, batch_size: int = 500, seed: int = 0) -> dict:
  """MIA-D and MIA-L of one model on the shared sets (see ``mia.membership_report``).

  τ = mean ℓ(x) = mean softplus(−D(x)) over ``sets.threshold``, fixed before D_u and H_eval are
  scored. The result also holds ``threshold_n``, the number of images behind τ.
  """
  scores = lambda idx: discriminator_scores(trained, dataset.model_images("train", idx), mesh,
                                            batch_size)
  tau = float(np.mean(mia.real_label_loss(scores(sets.threshold))))
  report = mia.membership_report(scores(sets.member), scores(sets.nonmember),
                                 control_scores=scores(sets.control), loss_threshold=tau,
                                 seed=seed)
  return {**report, "threshold_n": int(len(sets.threshold))}
