"""Cascaded unlearning for GANs (Sun et al., arXiv:2308.09881), as reconstructed in
cascaded_unlearning.md.

Only the paper's abstract was available: the substitution mechanism, the fake label and the cascade of
unlearning and learning phases are [paper]; everything below is [project reconstruction] or
[project choice] and is named by a config field (experiments/configs/cascaded_unlearning.py).

Symbols: D = T \\ H the GAN training set, D_u ⊂ D the forget set, D_r = D \\ D_u, S the substitutes,
H_cal the calibration half of the non-member pool, B the batch size, B_u the forget batch size,
ℓ(l, y) = softplus(l) − y·l binary cross-entropy on D's logit l.

Reconstruction choices (config field in brackets):

* Substitution (§3, :mod:`jaxunlearn.methods.substitution`) [``substitution.*``]: S is built once
  before the cascade from ``source`` = real_retained (default; item: ``selection`` nearest/random;
  class: class-balanced) | generated_filtered | none; |S| = round(``ratio``·|D_u|). Nearest uses the
  feedback classifier's penultimate features and checks ``nearest_candidates`` neighbours for exact
  pixel duplicates; generated candidates number ⌈``candidate_factor``·|S|⌉ (τ_nn =
  ``tau_percentile``, class filter ``min_confidence``). S never contains H or test images.
  [project choice] ``feature_cache`` (a folder; "" = off, the default): nearest selection reads the
  features of all of D from there (eval/real_features.py, keyed by the dataset fingerprint, D's
  indices and the classifier's parameter hash), computing and storing them on a miss, so repeated
  deletion requests against one model skip the pass over D_r; results record which it was.
* Fake label (§4) [``fake_label.value`` y_fake, ``fake_label.weight`` λ_u]: an unlearning D step
  minimises L_D^unl = mean ℓ(D(s), 1) + mean ℓ(D(G(z)), 0) + λ_u·mean ℓ(D(x_u), y_fake)
  (:func:`unlearning_d_loss`), with B_u paired (x_u, s) and B fakes; R1 (if the GAN uses it) applies
  to s. A learning D step is ``train.gan.d_step``; G steps are ``train.gan.g_step`` (non-saturating).
* Cascade (§5) [``schedule.*``]: B_u = min(B, |D_u|) rounded up to a multiple of the data-parallel
  devices (batches wrap around D_u); n_u = max(⌈|D_u|/B_u⌉, ``min_unlearn_steps``), capped by
  ``max_unlearn_steps`` when > 0 (smoke only); n_l = round(``learning_ratio``·n_u); n_G =
  ``g_steps``; ``order`` = interleaved (n_G G steps after each unlearning D step) | phased (n_u·n_G
  G steps after the D steps); at most ``max_rounds`` rounds (T_max). The learning phase draws real
  batches of size B from ``learning.real_source`` = retained (D_r ∪ S) | substitutes (S only).
  Optimiser states are fresh Adam (``optimizer.*``) unless ``optimizer_state`` = restore.
  G starts from G0's EMA weights (the generator the original's samples came from; = G0's weights when
  it was trained without EMA), and the unlearning keeps its own EMA with ``ema_decay`` (default 0:
  off, because a long-horizon EMA of the original would lag the few hundred unlearning steps).
* Stopping (§6) [``stop.*``], checked after every round from round ``min_rounds`` on, timed:
  class mode r_c(G) ≤ r_c(G_R) + ``class_delta`` with a ``--reference`` model, else r_c(G) ≤
  ``class_epsilon``; r_c is the feedback classifier's share of the forgotten classes on G(Z_stop)
  (latent bank 'stop'). Item mode AUC_cal ≤ max(0.5, AUC_R) + δ_i with δ_i = max(``item_delta_min``,
  SE_0), AUC_cal the Mann–Whitney AUC of D's logit on D_u (positive) versus H_cal; AUC_cal < 0.5 − δ_i
  also stops and is flagged over-unlearning. Reaching T_max is reported as "stop rule not met".
  Samples and scores use the G EMA weights (= G's weights when EMA is off) in inference mode.
* Randomness: base key κ = fold_in(key(seed), CASCADE_STREAM). S is built from fold_in(κ, 0);
  round t ≥ 1 uses κ_t = fold_in(κ, t): its pairing permutations from fold_in(κ_t, 0), its learning
  permutation from fold_in(κ_t, 1), and its j-th step from fold_in(fold_in(κ_t, 2), j). Host-side
  draws (permutations, random substitutes) use NumPy generators seeded by these keys' data
  (``substitution.host_rng``), which compile nothing inside the timed region.
* Data: batches are gathered on the host by index with the same conversion as train_gan
  (``ImageDataset.model_images``) and sharded on 'data' (spec §9's same-pipeline rule).
* Timing (§9): the three steps are compiled ahead of time (``compile_s``, together with a warm-up of
  the sampling, scoring and classifier functions); T_U (``unlearn_s``) runs from the start of the
  substitute build to the return of (G_U, D_U), stop checks included, checkpoint writing and logging
  excluded; the original's and the reference's stop statistics are measured before the clock.
  ``steps`` counts D updates (each followed by its G update(s), train_gan's step unit);
  ``image_passes`` counts images through D in D updates (n_u·(2B_u + B) + n_l·2B per round, train_gan
  counts 2B per step).
* Resume: a checkpoint (GANState + meta: round, elapsed time, step counts, stop history, what
  rebuilds S) is written after every round; a rerun resumes after the last finished round and gives the
  parameters of an uninterrupted run. The workdir is a train_gan-style workdir (config.json "config" =
  the GAN config), so ``train.pretrained.load_gan`` loads the unlearned model. Its checkpoint meta
  has ``forget`` = the SPEC forgotten; ``GANState.step`` keeps the original's training step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import checkpoint as ckpt_lib
from jaxunlearn import images as images_lib
from jaxunlearn import latents as latents_lib
from jaxunlearn import losses
from jaxunlearn import parallel
from jaxunlearn import runs
from jaxunlearn import sampling
from jaxunlearn.data import ImageDataset
from jaxunlearn.errors import UserInputError
from jaxunlearn import batching
from jaxunlearn.eval import classifiers
from jaxunlearn.eval import forgetting
from jaxunlearn.eval import mia
from jaxunlearn.eval import real_features as real_lib
from jaxunlearn.methods import substitution
from jaxunlearn.train import gan as gan_lib
from jaxunlearn.train import loop
from jaxunlearn.train import pretrained as pretrained_lib

PyTree = Any
CASCADE_STREAM = 0xCA5C  # separates the cascade's random stream from train_gan's fold_in(key, step)
ORDERS = ("interleaved", "phased")
REAL_SOURCES = ("retained", "substitutes")
OPTIMIZER_STATES = ("fresh", "restore")
FEATURE_CHUNK = 10_000  # images per classifier call when featurising D_r

# -------------------------------------------------------------------------------------------------
# Losses and pure steps.
# -------------------------------------------------------------------------------------------------


def unlearning_d_loss(substitute_logits: jax.Array, fake_logits: jax.Array,
                      forget_logits: jax.Array, *, fake_label: float, weight: float) -> jax.Array:
  """L_D^unl = mean ℓ(D(s), 1) + mean ℓ(D(G(z)), 0) + λ_u·mean ℓ(D(x_u), y_fake).

  Args:
    substitute_logits: (B_u,) D(s) on the substitutes paired with the forget batch.
    fake_logits: (B,) D(G(z)).
    forget_logits: (B_u,) D(x_u).
    fake_label: y_fake, the target of the forget images (0 = the label of generated images).
    weight: λ_u.
  """
  return (losses.discriminator_loss(substitute_logits, fake_logits)
          + weight * jnp.mean(losses.bce_with_logits(forget_logits, fake_label)))


def d_unlearn_step(state: gan_lib.GANState, batch: dict[str, jax.Array], rng: jax.Array, *,
                   gan: gan_lib.GAN, fake_batch_size: int, fake_label: float, weight: float
                   ) -> tuple[gan_lib.GANState, dict[str, jax.Array]]:
  """One unlearning D update on L_D^unl (+ γ/2·R1 on the substitutes).

  Args:
    state: the GAN state; only D's parameters and optimizer state change.
    batch: {"forget": x_u (B_u, H, W, C), "substitute": s (B_u, H, W, C)}, row i of s paired with row
      i of x_u.
    rng: key of this step; draws z ~ N(0, I) of size ``fake_batch_size`` (B).
  """
  fake = gan_lib.generated_constants(state, rng, fake_batch_size, gan=gan)
  substitute, forget = batch["substitute"], batch["forget"]

  def loss_fn(d_params):
    substitute_logits = gan.d_logits(d_params, substitute)
    fake_logits = gan.d_logits(d_params, fake)
    forget_logits = gan.d_logits(d_params, forget)
    loss = unlearning_d_loss(substitute_logits, fake_logits, forget_logits, fake_label=fake_label,
                             weight=weight)
    return loss, {"d_unlearn_loss": loss, "d_substitute": jnp.mean(substitute_logits),
                  "d_unlearn_fake": jnp.mean(fake_logits), "d_forget": jnp.mean(forget_logits)}

  return gan_lib.d_update(state, loss_fn, gan=gan, r1_images=substitute, r1_name="r1_unlearn")


def generator_step(state: gan_lib.GANState, rng: jax.Array, *, gan: gan_lib.GAN, batch_size: int
                   ) -> tuple[gan_lib.GANState, dict[str, jax.Array]]:
  """``train.gan.g_step`` with its batch size bound: (state, rng) -> (state, {"g_loss"})."""
  return gan_lib.g_step(state, batch_size, rng, gan=gan)


def fresh_optimizer_states(state: gan_lib.GANState, gan: gan_lib.GAN) -> gan_lib.GANState:
  """The state with freshly initialised G and D optimizer states (same parameters)."""
  return state.replace(g_opt_state=gan.g_optimizer.init(state.g_params),
                       d_opt_state=gan.d_optimizer.init(state.d_params))


def _initial_state(state: gan_lib.GANState, *, gan: gan_lib.GAN, fresh: bool) -> gan_lib.GANState:
  """G ← G0's EMA weights, D ← D0 (new buffers), with fresh optimizer states when ``fresh``."""
  state = jax.tree.map(jnp.copy, state)
  state = state.replace(g_params=state.g_ema_params,
                        g_ema_params=jax.tree.map(jnp.copy, state.g_ema_params))
  return fresh_optimizer_states(state, gan) if fresh else state


# -------------------------------------------------------------------------------------------------
# Schedule and stopping rules.
# -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Step counts of one round (spec §5).

  Attributes:
    batch_size: B, fake batch of every D step and real batch of learning steps; G batch.
    forget_batch: B_u, forget (and substitute) batch of an unlearning step.
    unlearn_steps: n_u unlearning D steps per round.
    learn_steps: n_l learning steps (one D and one G update each) per round.
    g_steps: n_G G steps per unlearning D step.
    order: "interleaved" or "phased".
    max_rounds: T_max.
  """
  batch_size: int
  forget_batch: int
  unlearn_steps: int
  learn_steps: int
  g_steps: int
  order: str
  max_rounds: int

  def counts(self) -> dict[str, int]:
    """Optimizer updates per round by step function."""
    return {"d_unlearn": self.unlearn_steps, "d_learn": self.learn_steps,
            "g": self.unlearn_steps * self.g_steps + self.learn_steps}

  def image_passes(self) -> int:
    """Images through D in D updates per round: n_u·(2B_u + B) + n_l·2B."""
    return (self.unlearn_steps * (2 * self.forget_batch + self.batch_size)
            + self.learn_steps * 2 * self.batch_size)


def make_schedule(num_forget: int, batch_size: int, cfg: ml_collections.ConfigDict,
                  num_devices: int) -> Schedule:
  """The round schedule for |D_u| = ``num_forget`` from config ``schedule``."""
  forget_batch = num_devices * math.ceil(min(batch_size, num_forget) / num_devices)
  unlearn_steps = max(math.ceil(num_forget / forget_batch), cfg.min_unlearn_steps)
  if cfg.max_unlearn_steps > 0:
    unlearn_steps = min(unlearn_steps, cfg.max_unlearn_steps)
  return Schedule(batch_size=batch_size, forget_batch=forget_batch, unlearn_steps=unlearn_steps,
                  learn_steps=int(round(cfg.learning_ratio * unlearn_steps)), g_steps=cfg.g_steps,
                  order=cfg.order, max_rounds=cfg.max_rounds)


@dataclasses.dataclass(frozen=True)
class StopDecision:
  """One stopping-rule check: statistic (r_c or AUC_cal), threshold, verdict and flags."""
  statistic: float
  threshold: float
  stop: bool
  over_unlearning: bool = False


def class_stop(share: float, reference_share: float | None, *, delta: float, epsilon: float
               ) -> StopDecision:
  """Class rule: r_c(G) ≤ r_c(G_R) + δ_c, or r_c(G) ≤ ε without a retrained reference."""
  threshold = epsilon if reference_share is None else reference_share + delta
  return StopDecision(share, threshold, share <= threshold)


def item_delta(num_forget: int, num_calibration: int, delta_min: float) -> float:
  """δ_i = max(δ_min, SE_0), SE_0 the null standard error of the AUC for n = |D_u|, m = |H_cal|."""
  return max(delta_min, mia.auc_null_standard_error(num_forget, num_calibration))


def item_stop(auc: float, reference_auc: float | None, *, delta: float) -> StopDecision:
  """Item rule: AUC_cal ≤ max(0.5, AUC_R) + δ_i; AUC_cal < 0.5 − δ_i stops too (over-unlearning)."""
  threshold = max(0.5, 0.5 if reference_auc is None else reference_auc) + delta
  return StopDecision(auc, threshold, auc <= threshold, auc < 0.5 - delta)


def check_config(config: ml_collections.ConfigDict, mode: str) -> None:
  """Refuses invalid unlearning configs with one message naming the field."""
  s, sched, stop = config.substitution, config.schedule, config.stop
  choices = [("substitution.source", s.source, substitution.SOURCES),
             ("substitution.selection", s.selection, substitution.SELECTIONS),
             ("schedule.order", sched.order, ORDERS),
             ("learning.real_source", config.learning.real_source, REAL_SOURCES),
             ("optimizer_state", config.optimizer_state, OPTIMIZER_STATES)]
  for name, value, valid in choices:
    if value not in valid:
      raise UserInputError(f"--config.{name}={value!r} is unknown; valid: {', '.join(valid)}")
  checks = [
      ("substitution.ratio", s.ratio > 0, "> 0"),
      ("substitution.nearest_candidates", s.nearest_candidates >= 1, ">= 1"),
      ("substitution.candidate_factor", s.candidate_factor >= 1, ">= 1"),
      ("substitution.tau_percentile", 0 <= s.tau_percentile <= 100, "in [0, 100]"),
      ("fake_label.value", 0 <= config.fake_label.value <= 1, "in [0, 1]"),
      ("fake_label.weight", config.fake_label.weight >= 0, ">= 0"),
      ("schedule.g_steps", sched.g_steps >= 1, ">= 1"),
      ("schedule.min_unlearn_steps", sched.min_unlearn_steps >= 1, ">= 1"),
      ("schedule.learning_ratio", sched.learning_ratio >= 0, ">= 0"),
      ("schedule.max_rounds", sched.max_rounds >= 1, ">= 1"),
      ("stop.min_rounds", 1 <= stop.min_rounds <= sched.max_rounds, "in [1, schedule.max_rounds]"),
      ("eval_batch_size", config.eval_batch_size >= 1, ">= 1"),
      ("ema_decay", 0 <= config.ema_decay < 1, "in [0, 1)"),
  ]
  for name, ok, valid in checks:
    if not ok:
      raise UserInputError(f"--config.{name}={_get(config, name)!r} is invalid; valid: {valid}")
  if mode == "item" and s.source == "real_retained" and s.selection == "nearest" and s.ratio != 1:
    raise UserInputError(f"--config.substitution.ratio={s.ratio} is invalid with selection=nearest "
                         "(S is index-aligned with D_u); valid: 1.0, or selection=random")
  if s.source == "none" and config.learning.real_source == "substitutes":
    raise UserInputError("--config.learning.real_source=substitutes needs substitutes; "
                         "substitution.source=none has none")


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  value = config
  for part in dotted.split("."):
    value = value[part]
  return value


def needs_classifier(config: ml_collections.ConfigDict, mode: str) -> bool:
  """The feedback classifier is needed by the class stop rule and by feature-based substitutes."""
  s = config.substitution
  return (mode == "class" or s.source == "generated_filtered"
          or (s.source == "real_retained" and s.selection == "nearest"))


def uses_nearest_substitutes(config: ml_collections.ConfigDict, mode: str) -> bool:
  """Item mode with real_retained + nearest: S is index-aligned with D_u and built from the
  feedback classifier's features of D (the only build that reads ``substitution.feature_cache``)."""
  s = config.substitution
  return mode == "item" and s.source == "real_retained" and s.selection == "nearest"


def describe(config: ml_collections.ConfigDict, mode: str) -> str:
  """The variant field of a report card, e.g. 'real_retained+nearest, y_fake 0, λ_u 1, interleaved'."""
  s = config.substitution
  source = s.source + (f"+{s.selection}" if s.source == "real_retained" and mode == "item" else "")
  return (f"{source}, y_fake {config.fake_label.value:g}, λ_u {config.fake_label.weight:g}, "
          f"{config.schedule.order}")


# -------------------------------------------------------------------------------------------------
# Image pools and substitutes (host side).
# -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImagePool:
  """Images addressed 0..size−1: dataset training images (by train index), then in-memory images.

  Attributes:
    dataset: the dataset the indices refer to.
    train_indices: int64 indices into ``dataset.train_*``.
    extra: float32 (k, 32, 32, C) images after them (generated substitutes), or None.
  """
  dataset: ImageDataset
  train_indices: np.ndarray
  extra: np.ndarray | None = None

  @property
  def size(self) -> int:
    return len(self.train_indices) + (0 if self.extra is None else len(self.extra))

  def gather(self, idx: np.ndarray) -> np.ndarray:
    """float32 (len(idx), 32, 32, C) model images."""
    idx = np.asarray(idx)
    n = len(self.train_indices)
    if self.extra is None:
      return self.dataset.model_images("train", self.train_indices[idx])
    out = np.empty((len(idx), *self.extra.shape[1:]), np.float32)
    real = idx < n
    if real.any():
      out[real] = self.dataset.model_images("train", self.train_indices[idx[real]])
    out[~real] = self.extra[idx[~real] - n]
    return out


@dataclasses.dataclass(frozen=True)
class Substitutes:
  """The substitute set S.

  Attributes:
    pool: S's images (for source none: D_r, from which random batches are drawn).
    aligned: S[i] substitutes D_u[i] (item mode, nearest).
    record: what rebuilds S exactly (stored in every checkpoint): {"positions": positions in D} for
      real substitutes, {"candidate_ids": accepted candidate indices} for generated ones, {} for none.
    info: statistics of the build (e.g. τ_nn, acceptance rate).
  """
  pool: ImagePool
  aligned: bool
  record: dict[str, Any]
  info: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Context:
  """Everything the build, the cascade and the checks read (built and validated before writing)."""
  config: ml_collections.ConfigDict
  gan_config: ml_collections.ConfigDict  # the unlearned GAN's config (unlearned_gan_config)
  mesh: Any
  data: loop.TrainingData
  mode: str
  forget_classes: tuple[int, ...]
  forget_positions: np.ndarray   # positions in D of D_u
  retain_positions: np.ndarray   # positions in D of D_r
  calibration: np.ndarray        # train indices of H_cal
  original: pretrained_lib.TrainedGAN
  gan: gan_lib.GAN
  classifier: Any                # a TrainedClassifier or None
  generate: Any                  # sampling.make_generate_fn(gan.generate)
  score: Any                     # batching.make_batched_apply(gan.d_logits)
  schedule: Schedule
  seed: int

  @property
  def eval_batch(self) -> int:
    return self.config.eval_batch_size

  def pool(self, positions: np.ndarray, extra: np.ndarray | None = None) -> ImagePool:
    return ImagePool(self.data.dataset, self.data.splits.gan_train[positions], extra)

  def predict(self, pool: ImagePool, output: str) -> np.ndarray:
    """Feedback-classifier ``output`` ('features', 'probs', 'labels') for a pool, in chunks."""
    parts = [self.classifier.predict(pool.gather(np.arange(s, min(s + FEATURE_CHUNK, pool.size))),
                                     self.mesh, self.eval_batch)[output]
             for s in range(0, pool.size, FEATURE_CHUNK)]
    return np.concatenate(parts)


def _candidates(ctx: _Context, key: jax.Array, count: int) -> tuple[np.ndarray, np.ndarray]:
  """G0's screened candidates for generated substitutes: (latents, images), from ``fold_in(key, 1)``."""
  n = substitution.num_candidates(count, ctx.config.substitution.candidate_factor)
  z = substitution.host_rng(jax.random.fold_in(key, 1)).standard_normal((n, ctx.gan.latent_dim),
                                                                        np.float32)
  state = ctx.original.state
  return z, ctx.generate(state.g_ema_params, state.g_batch_stats, z, ctx.eval_batch)


def build_substitutes(ctx: _Context, key: jax.Array) -> Substitutes:
  """BUILD_SUBSTITUTES of spec §5 for ``substitution.source`` (see :mod:`substitution`).

  A set that cannot be built as configured (too few candidates or retained images) is a
  UserInputError naming the config field to change.
  """
  try:
    return _build_substitutes(ctx, key)
  except ValueError as e:
    raise UserInputError(f"cannot build the substitutes: {e}") from None


def _forget_and_retain_features(ctx: _Context) -> tuple[np.ndarray, np.ndarray, str]:
  """Feedback-classifier features (n, d) of D_u and (m, d) of D_r, and where they came from.

  Without ``substitution.feature_cache``: computed from D_u and D_r ("computed"). With it: the
  features of all of D, read from the cache ("cache") or computed and stored there ("computed,
  stored"), then split by position.
  """
  cache_dir = ctx.config.substitution.feature_cache
  if not cache_dir:
    return (ctx.predict(ctx.pool(ctx.forget_positions), "features"),
            ctx.predict(ctx.pool(ctx.retain_positions), "features"), "computed")
  everything = real_lib.real_features(ctx.data.dataset, "train", "gan-train",
                                      ctx.data.splits.gan_train, ctx.classifier, ctx.mesh,
                                      cache_dir=cache_dir, batch_size=ctx.eval_batch)
  return (everything.features[ctx.forget_positions], everything.features[ctx.retain_positions],
          "cache" if everything.cached else "computed, stored")


def _build_substitutes(ctx: _Context, key: jax.Array) -> Substitutes:
  cfg = ctx.config.substitution
  count = substitution.substitute_count(len(ctx.forget_positions), cfg.ratio)
  dataset, gan_train = ctx.data.dataset, ctx.data.splits.gan_train
  if cfg.source == "none":
    return Substitutes(ctx.pool(ctx.retain_positions), False, {}, {"size": 0})
  if cfg.source == "real_retained":
    if ctx.mode == "class":
      labels = dataset.train_labels[gan_train[ctx.retain_positions]]
      chosen = substitution.class_balanced_substitutes(key, labels, ctx.forget_classes,
                                                       dataset.num_classes, count)
    elif cfg.selection == "random":
      chosen = substitution.random_substitutes(key, len(ctx.retain_positions), count)
    else:
      forget_features, retain_features, source = _forget_and_retain_features(ctx)
      chosen = substitution.nearest_substitutes(
          forget_features, retain_features, dataset.train_images[gan_train[ctx.forget_positions]],
          dataset.train_images[gan_train[ctx.retain_positions]], k=cfg.nearest_candidates)
    positions = ctx.retain_positions[chosen]
    aligned = uses_nearest_substitutes(ctx.config, ctx.mode)
    info = {"size": len(positions), **({"features": source} if aligned else {})}
    return Substitutes(ctx.pool(positions), aligned, {"positions": positions.tolist()}, info)
  _, images = _candidates(ctx, key, count)
  candidate_pool = ImagePool(dataset, np.zeros(0, np.int64), images)
  info: dict[str, Any] = {"size": count, "num_candidates": len(images)}
  if ctx.mode == "class":
    keep = substitution.outside_classes(ctx.predict(candidate_pool, "probs"), ctx.forget_classes,
                                        cfg.min_confidence)
  else:
    keep, info["tau_nn"] = substitution.far_from_forget(
        ctx.predict(candidate_pool, "features"),
        ctx.predict(ctx.pool(ctx.forget_positions), "features"), cfg.tau_percentile)
  info["acceptance_rate"] = float(keep.mean())
  ids = substitution.first_accepted(keep, count)
  return Substitutes(ImagePool(dataset, np.zeros(0, np.int64), images[ids]), False,
                     {"candidate_ids": ids.tolist()}, info)


def rebuild_substitutes(ctx: _Context, key: jax.Array, record: dict[str, Any],
                        info: dict[str, Any]) -> Substitutes:
  """S from a checkpoint's record, identical to the build that wrote it."""
  if "positions" in record:
    aligned = uses_nearest_substitutes(ctx.config, ctx.mode)
    return Substitutes(ctx.pool(np.asarray(record["positions"], np.int64)), aligned, record, info)
  if "candidate_ids" in record:
    _, images = _candidates(ctx, key, info["size"])
    ids = np.asarray(record["candidate_ids"], np.int64)
    return Substitutes(ImagePool(ctx.data.dataset, np.zeros(0, np.int64), images[ids]), False,
                       record, info)
  return Substitutes(ctx.pool(ctx.retain_positions), False, record, info)


def learning_pool(ctx: _Context, subs: Substitutes) -> ImagePool:
  """The learning phase's real data: D_r ∪ S (``retained``) or S alone (``substitutes``)."""
  if ctx.config.learning.real_source == "substitutes":
    return subs.pool
  return ctx.pool(ctx.retain_positions, subs.pool.extra)


# -------------------------------------------------------------------------------------------------
# Stop statistic.
# -------------------------------------------------------------------------------------------------


def stop_statistic(ctx: _Context, state: gan_lib.GANState, probe: np.ndarray) -> float:
  """r_c(G) on G(Z_stop) (class mode; ``probe`` = Z_stop), or AUC_cal of D's logit (item mode;
  ``probe`` = the D_u images followed by the H_cal images)."""
  if ctx.mode == "class":
    samples = ctx.generate(state.g_ema_params, state.g_batch_stats, probe, ctx.eval_batch)
    labels = ctx.classifier.predict(samples, ctx.mesh, ctx.eval_batch)["labels"]
    return float(sum(forgetting.class_share(labels, c) for c in ctx.forget_classes))
  scores = ctx.score(state.d_params, probe, ctx.eval_batch)
  n = len(ctx.forget_positions)
  return mia.roc_auc(scores[:n], scores[n:])


def decide(ctx: _Context, statistic: float, reference: float | None) -> StopDecision:
  stop = ctx.config.stop
  if ctx.mode == "class":
    return class_stop(statistic, reference, delta=stop.class_delta, epsilon=stop.class_epsilon)
  delta = item_delta(len(ctx.forget_positions), len(ctx.calibration), stop.item_delta_min)
  return item_stop(statistic, reference, delta=delta)


# -------------------------------------------------------------------------------------------------
# The driver.
# -------------------------------------------------------------------------------------------------


class _Stopwatch:
  """Accumulates wall time over the intervals between start() and stop()."""

  def __init__(self, seconds: float = 0.0):
    self.seconds = seconds
    self._t0: float | None = None

  def start(self) -> None:
    self._t0 = time.perf_counter()

  def stop(self) -> None:
    self.seconds += time.perf_counter() - self._t0
    self._t0 = None


def _prepare(config, *, pretrained: str, forget_spec: str, feedback_classifier: str | None,
             reference: str | None, data_dir: str | None, seed: int
             ) -> tuple[_Context, pretrained_lib.TrainedGAN | None]:
  """Validates every input and loads the models; writes nothing."""
  if not forget_spec:
    raise UserInputError("--forget is required (class:C, classes:C1,C2, items:N, items_file:PATH)")
  data = loop.prepare_data(pretrained_lib.read_config(pretrained), data_dir, seed, forget_spec)
  forget = data.forget
  check_config(config, forget.mode)
  mesh = parallel.make_mesh(config.num_devices)
  original = pretrained_lib.load_gan(pretrained, mesh)
  if original.meta.get("forget"):
    raise UserInputError(f"--pretrained={pretrained!r} was trained with --forget="
                         f"{original.meta['forget']}; pass a model trained on all of D")
  if data.dataset.fingerprint() != original.meta.get("dataset_fingerprint"):
    raise UserInputError(f"the dataset differs from the one --pretrained={pretrained!r} was trained "
                         "on (fingerprint mismatch); use the same --data_dir")
  batch_size = config.batch_size if config.batch_size > 0 else original.config.batch_size
  parallel.check_batch_size(batch_size, mesh, "batch_size")
  parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  classifier = None
  if needs_classifier(config, forget.mode) and not feedback_classifier:
    raise UserInputError("--feedback_classifier is required for this run (class mode, or "
                         "nearest/generated substitutes)")
  if feedback_classifier:
    classifier = classifiers.load_classifier(feedback_classifier, dataset=original.config.dataset,
                                             role="feedback", flag="--feedback_classifier")
  reference_gan = None
  if reference:
    reference_gan = pretrained_lib.load_gan(reference, mesh, flag="--reference")
    pretrained_lib.check_same_setup(original, reference_gan, "--reference")
    if reference_gan.meta.get("forget") != forget_spec:
      raise UserInputError(f"--reference={reference!r} was retrained with --forget="
                           f"{reference_gan.meta.get('forget')!r}, this run forgets {forget_spec!r}")
    if forget.mode == "item" and reference_gan.meta.get("seed") != seed:
      raise UserInputError(f"--reference={reference!r} has seed {reference_gan.meta.get('seed')}, this "
                           f"run {seed}: its forget items differ; pass the same --seed")
  gan_config = unlearned_gan_config(original.config, config, batch_size)
  gan = gan_lib.make_gan(gan_config)
  ctx = _Context(
      config=config, gan_config=gan_config, mesh=mesh, data=data, mode=forget.mode, forget_classes=forget.classes,
      forget_positions=forget.positions,
      retain_positions=forget.retain_positions(len(data.splits.gan_train)),
      calibration=data.splits.holdout_cal, original=original, gan=gan, classifier=classifier,
      generate=sampling.make_generate_fn(gan.generate, mesh),
      score=batching.make_batched_apply(gan.d_logits, mesh),
      schedule=make_schedule(len(forget.positions), batch_size, config.schedule,
                             parallel.data_size(mesh)),
      seed=seed)
  return ctx, reference_gan


def unlearned_gan_config(original: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                         batch_size: int) -> ml_collections.ConfigDict:
  """The GAN config of the unlearned model: the original's, with the unlearning optimizer, B and EMA
  decay, and the unlearning config under "unlearning" (config.json's "config", read by ``load_gan``)."""
  merged = original.to_dict()
  merged.update(optimizer=config.optimizer.to_dict(), batch_size=batch_size,
                ema_decay=config.ema_decay, unlearning=config.to_dict())
  return ml_collections.ConfigDict(merged)


def _compile_steps(ctx: _Context, state: gan_lib.GANState) -> tuple[dict[str, Any], float]:
  """AOT-compiles the three steps and warms up sampling/scoring/classifier; returns (steps, seconds)."""
  sched, gan, mesh, cfg = ctx.schedule, ctx.gan, ctx.mesh, ctx.config
  d_unlearn = parallel.jit_step(functools.partial(
      d_unlearn_step, gan=gan, fake_batch_size=sched.batch_size, fake_label=cfg.fake_label.value,
      weight=cfg.fake_label.weight), mesh)
  d_learn = parallel.jit_step(functools.partial(gan_lib.d_step, gan=gan), mesh)
  g = parallel.jit_step(functools.partial(generator_step, gan=gan, batch_size=sched.batch_size),
                        mesh, batch_argnums=(), num_args=2)
  shape = (32, 32, ctx.data.dataset.channels)
  images = lambda n: jax.ShapeDtypeStruct((n, *shape), jnp.float32,
                                          sharding=parallel.batch_sharding(mesh))
  key = jax.random.key(0)
  t0 = time.perf_counter()
  steps = {
      "d_unlearn": d_unlearn.lower(state, {"forget": images(sched.forget_batch),
                                           "substitute": images(sched.forget_batch)},
                                   key).compile(),
      "d_learn": d_learn.lower(state, images(sched.batch_size), key).compile(),
      "g": g.lower(state, key).compile(),
      "init": jax.jit(functools.partial(_initial_state, gan=gan, fresh=cfg.optimizer_state == "fresh"),
                      out_shardings=parallel.replicated(mesh)).lower(state).compile(),
  }
  z = latents_lib.latent_bank("stop", gan.latent_dim)[:ctx.eval_batch]
  warm = ctx.generate(state.g_ema_params, state.g_batch_stats, z, ctx.eval_batch)
  ctx.score(state.d_params, warm, ctx.eval_batch)
  if ctx.classifier is not None:
    ctx.classifier.predict(warm, mesh, ctx.eval_batch)
  return steps, time.perf_counter() - t0


def _run_round(ctx: _Context, steps: dict[str, Any], state: gan_lib.GANState, round_key: jax.Array,
               forget_pool: ImagePool, subs: Substitutes, learn_pool: ImagePool, step0: int
               ) -> tuple[gan_lib.GANState, dict[str, float]]:
  """One round of spec §5: the unlearning phase (D, then G against it) and the learning phase."""
  sched, mesh = ctx.schedule, ctx.mesh
  forget_idx, sub_idx = substitution.paired_batches(
      jax.random.fold_in(round_key, 0), forget_pool.size, subs.pool.size, sched.forget_batch,
      sched.unlearn_steps, subs.aligned)
  learn_idx = substitution.batch_indices(jax.random.fold_in(round_key, 1), learn_pool.size,
                                         sched.batch_size, sched.learn_steps)
  step_key = jax.random.fold_in(round_key, 2)
  totals: dict[str, list[float]] = {}
  calls = 0

  def run(name, *args):
    nonlocal state, calls
    state, metrics = parallel.run_step(steps[name], state, *args,
                                       jax.random.fold_in(step_key, calls))
    calls += 1
    loop.check_finite(step0 + calls, metrics)
    for k, v in metrics.items():
      totals.setdefault(k, []).append(v)

  for i in range(sched.unlearn_steps):
    run("d_unlearn", parallel.shard_batch(mesh, {"forget": forget_pool.gather(forget_idx[i]),
                                                 "substitute": subs.pool.gather(sub_idx[i])}))
    if sched.order == "interleaved":
      for _ in range(sched.g_steps):
        run("g")
  if sched.order == "phased":
    for _ in range(sched.unlearn_steps * sched.g_steps):
      run("g")
  for i in range(sched.learn_steps):
    run("d_learn", parallel.shard_batch(mesh, learn_pool.gather(learn_idx[i])))
    run("g")
  return state, {k: float(np.mean(v)) for k, v in totals.items()}


def _identity_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config a resumed run must match: all of it but where features are cached."""
  out = config.to_dict()
  out["substitution"] = {k: v for k, v in out["substitution"].items() if k != "feature_cache"}
  return out


def unlearn(config: ml_collections.ConfigDict, workdir: str, *, pretrained: str, forget_spec: str,
            feedback_classifier: str | None = None, reference: str | None = None,
            data_dir: str | None = None, seed: int = 0, flags: dict[str, Any] | None = None
            ) -> dict[str, Any]:
  """CASCADE_UNLEARN of spec §5 on a train_gan model; writes the workdir and returns results.json."""
  ctx, reference_gan = _prepare(config, pretrained=pretrained, forget_spec=forget_spec,
                                feedback_classifier=feedback_classifier, reference=reference,
                                data_dir=data_dir, seed=seed)
  original = ctx.original
  workdir = runs.prepare_workdir(workdir)
  if os.path.abspath(workdir) == original.workdir:
    raise UserInputError("--workdir must differ from --pretrained (the original would be overwritten)")
  finished = runs.finished_results(workdir)
  if finished is not None:
    return finished
  runs.write_config(workdir, ctx.gan_config, {**(flags or {}), "seed": seed, "forget": forget_spec,
                                          "pretrained": original.workdir,
                                          "feedback_classifier": feedback_classifier,
                                          "reference": reference})
  identity = {"kind": "gan", "method": "cascaded", "architecture": original.meta["architecture"],
              "dataset": original.meta["dataset"],
              "dataset_fingerprint": original.meta["dataset_fingerprint"], "forget": forget_spec,
              "seed": seed, "pretrained": original.workdir, "pretrained_step": original.step,
              "reference": reference_gan.workdir if reference_gan else None,
              "feedback_classifier": os.path.abspath(feedback_classifier) if feedback_classifier else None,
              "unlearning_config": _identity_config(config)}
  rep = parallel.replicated(ctx.mesh)
  checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(original.state, rep))
  metrics_log = runs.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  progress: dict[str, Any] = {"round": 0, "unlearn_s": 0.0, "stop_check_s": 0.0, "substitute_s": 0.0,
                              "counts": {"d_unlearn": 0, "d_learn": 0, "g": 0}, "image_passes": 0,
                              "history": [], "finished": False}
  if restored is not None:
    _, state, meta = restored
    for key in identity:
      if meta.get(key) != identity[key]:
        raise UserInputError(f"the checkpoint in {checkpointer.directory} was written with {key}="
                             f"{meta.get(key)!r}, this run has {key}={identity[key]!r}; use a fresh "
                             "--workdir")
    progress = {k: meta[k] for k in progress}
    runs.notice(f"resuming after round {progress['round']}")
  metrics_log.truncate_after(progress["round"])

  # Before the clock: compile, reference and original statistics, the "before" grid.
  steps, compile_s = _compile_steps(ctx, original.state)
  grid_z = latents_lib.latent_bank("grid", ctx.gan.latent_dim)
  before = ctx.generate(original.state.g_ema_params, original.state.g_batch_stats, grid_z,
                        ctx.eval_batch)
  forget_pool = ctx.pool(ctx.forget_positions)
  if ctx.mode == "class":
    probe = latents_lib.latent_bank("stop", ctx.gan.latent_dim)
  else:
    probe = np.concatenate([forget_pool.gather(np.arange(forget_pool.size)),
                            ctx.data.dataset.model_images("train", ctx.calibration)])
  original_statistic = stop_statistic(ctx, original.state, probe)
  reference_statistic = stop_statistic(ctx, reference_gan.state, probe) if reference_gan else None

  base_key = jax.random.fold_in(jax.random.key(seed), CASCADE_STREAM)
  build_key = jax.random.fold_in(base_key, 0)
  clock = _Stopwatch(progress["unlearn_s"])
  if restored is None:
    clock.start()  # T_U starts with the substitute build.
    build_t0 = time.perf_counter()
    subs = build_substitutes(ctx, build_key)
    progress["substitute_s"] = time.perf_counter() - build_t0
    state = steps["init"](original.state)  # new buffers: original.state stays valid
  else:
    subs = rebuild_substitutes(ctx, build_key, restored[2]["substitutes"],
                               restored[2]["substitute_info"])
    if not progress["finished"]:
      clock.start()
  learn_pool = learning_pool(ctx, subs)
  sched = ctx.schedule

  # A SIGTERM/SIGINT is honoured after the round in flight: rounds are the checkpoint unit.
  with runs.StopSignal() as stop, runs.progress(sched.max_rounds, progress["round"],
                                                 "cascaded") as bar:
    while not progress["finished"]:
      t = progress["round"] + 1
      step0 = sum(progress["counts"].values())
      state, round_metrics = _run_round(ctx, steps, state, jax.random.fold_in(base_key, t),
                                        forget_pool, subs, learn_pool, step0)
      check_t0 = time.perf_counter()
      statistic = stop_statistic(ctx, state, probe)
      check_s = time.perf_counter() - check_t0
      decision = decide(ctx, statistic, reference_statistic)
      clock.stop()
      progress["round"] = t
      progress["stop_check_s"] += check_s
      progress["counts"] = {k: progress["counts"][k] + v for k, v in sched.counts().items()}
      progress["image_passes"] += sched.image_passes()
      progress["history"].append({"round": t, "statistic": statistic, "threshold": decision.threshold,
                                  "stop": decision.stop, "over_unlearning": decision.over_unlearning,
                                  "check_s": check_s})
      progress["finished"] = (decision.stop and t >= config.stop.min_rounds) or t >= sched.max_rounds
      progress["unlearn_s"] = clock.seconds
      checkpointer.save(t, state, {**identity, **progress, "substitutes": subs.record,
                                   "substitute_info": subs.info})
      metrics_log.write({"step": t, "round": t, **round_metrics, "stop_statistic": statistic,
                         "stop_threshold": decision.threshold, "unlearn_s": round(clock.seconds, 3)})
      bar.update(1)
      bar.set_postfix({"statistic": f"{statistic:.4f}", "threshold": f"{decision.threshold:.4f}"})
      if not progress["finished"]:
        stop.stop_if_received(f"round {t}", checkpointer.close)  # round t is saved above
        clock.start()
  checkpointer.close()

  after = ctx.generate(state.g_ema_params, state.g_batch_stats, grid_z, ctx.eval_batch)
  images_lib.save_grid(os.path.join(workdir, "grid_before.png"), before)
  images_lib.save_grid(os.path.join(workdir, "grid_after.png"), after)
  images_lib.save_side_by_side(os.path.join(workdir, "grid_compare.png"), before, after)
  last = progress["history"][-1]
  met = bool(last["stop"])
  flags_out = ([] if met else ["stop rule not met"]) + (
      ["over-unlearning"] if last["over_unlearning"] else []) + (
      ["smoke"] if config.smoke else [])
  results = {
      "method": "cascaded", "variant": describe(config, ctx.mode), "dataset": original.meta["dataset"],
      "provenance": ctx.data.dataset.provenance, "forget": forget_spec, "mode": ctx.mode,
      "forget_classes": list(ctx.forget_classes), "num_forget": int(len(ctx.forget_positions)),
      "seed": seed, "pretrained": original.workdir, "pretrained_step": original.step,
      "reference": identity["reference"],
      "feedback_classifier": ({"workdir": identity["feedback_classifier"], **{
          k: ctx.classifier.meta.get(k) for k in ("id", "test_accuracy", "feature_dim")}}
          if ctx.classifier is not None else None),
      "smoke": bool(config.smoke),
      "timing": {"unlearn_s": progress["unlearn_s"], "compile_s": compile_s,
                 "steps": progress["counts"]["d_unlearn"] + progress["counts"]["d_learn"],
                 "image_passes": progress["image_passes"], "step_counts": progress["counts"],
                 "substitute_s": progress["substitute_s"], "stop_check_s": progress["stop_check_s"]},
      "rounds": progress["round"],
      "schedule": dataclasses.asdict(sched),
      "substitution": {"source": config.substitution.source, **subs.info, **(
          {"selection": config.substitution.selection}
          if ctx.mode == "item" and config.substitution.source == "real_retained" else {})},
      "fake_label": config.fake_label.to_dict(),
      "stop": {"rule": "class_share_feedback" if ctx.mode == "class" else "d_logit_auc_cal",
               "statistic": last["statistic"], "threshold": last["threshold"], "met": met,
               "stop_rule_not_met": not met, "over_unlearning": bool(last["over_unlearning"]),
               "original": original_statistic, "reference": reference_statistic,
               "history": progress["history"]},
      "flags": flags_out,
      "devices": [str(d) for d in ctx.mesh.devices.flat], "environment": runs.environment(),
  }
  runs.write_results(workdir, results)
  return results
