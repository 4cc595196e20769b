"""User feedback for Adapt-then-Unlearn (spec §2): negative and positive banks of generated samples.

The method never sees training data. Feedback is simulated: samples are drawn from the pre-trained
generator G_{θ_G} (inference mode) and judged by a classifier's argmax (or by any user predicate
images -> bool, e.g. a feature detector, which is the same code path). Samples judged to show the
undesired class/feature are *negatives*, the others *positives*; both are generated images.

Banks store the kept latents, their positions in the drawn stream and the realised negative rate, so
a rerun reloads them instead of drawing again; images are regenerated from the latents with θ_G.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxunlearn.errors import UserInputError

NEGATIVE, POSITIVE, EXCLUDED = 1, 0, -1
BANK_KINDS = {"negative": NEGATIVE, "positive": POSITIVE}
MODES = ("fixed_count", "fixed_draws")

Images = np.ndarray
"""float32 (N, H, W, C) in [-1, 1] (the 2-D toy uses (N, 1, 1, 2) points)."""


@dataclasses.dataclass(frozen=True)
class Feedback:
  """A judge of generated images.

  Attributes:
    judge: images (N, H, W, C) -> (verdicts int (N,), features float (N, d)). Verdicts are
      ``NEGATIVE`` (1, shows the undesired class/feature), ``POSITIVE`` (0) or ``EXCLUDED`` (-1, too
      uncertain for either bank). Features feed the selection FID (spec §4.5).
    description: what judges (logged in results.json).
    counting_judge: the judge PUL counts with when it differs from ``judge`` (a confidence filter
      thins the banks, never the count: spec §7 counts every sample whose argmax is negative);
      None = ``judge``.
  """
  judge: Callable[[Images], tuple[np.ndarray, np.ndarray]]
  description: str
  counting_judge: Callable[[Images], tuple[np.ndarray, np.ndarray]] | None = None

  @property
  def count_judge(self) -> Callable[[Images], tuple[np.ndarray, np.ndarray]]:
    """The judge of N_c (PUL's count): ``counting_judge`` if set, else ``judge``."""
    return self.counting_judge or self.judge


def classifier_feedback(classifier, classes: Sequence[int], mesh: Mesh, *,
                        min_confidence: float = 0.0, batch_size: int = 500) -> Feedback:
  """Feedback from a trained classifier (jaxunlearn.eval.classifiers.TrainedClassifier).

  Negative iff argmax_y p(y|x) ∈ ``classes`` (the official rule). With ``min_confidence`` > 0 a
  sample counts only when p(argmax|x) ≥ min_confidence; below it, it is EXCLUDED from both banks
  (PUL's count on Z_val still uses the plain argmax, ``Feedback.count_judge``).
  Features are the classifier's penultimate features (inference mode).
  """
  classes = np.asarray(sorted(classes), np.int64)

  def judge_at(threshold: float) -> Callable[[Images], tuple[np.ndarray, np.ndarray]]:
    def judge(images: Images) -> tuple[np.ndarray, np.ndarray]:
      out = classifier.predict(images, mesh, batch_size=batch_size)
      verdicts = np.where(np.isin(out["labels"], classes), NEGATIVE, POSITIVE)
      if threshold > 0:
        confident = out["probs"].max(axis=1) >= threshold
        verdicts = np.where(confident, verdicts, EXCLUDED)
      return verdicts.astype(np.int8), np.asarray(out["features"], np.float32)
    return judge

  meta = classifier.meta
  name = meta.get("id") or f"{meta.get('dataset')}/{meta.get('role')}/seed{meta.get('seed')}"
  confidence = f", p ≥ {min_confidence}" if min_confidence > 0 else ""
  return Feedback(judge_at(min_confidence),
                  f"classifier {name}: argmax in {classes.tolist()}{confidence}",
                  counting_judge=judge_at(0.0) if min_confidence > 0 else None)


def predicate_feedback(predicate: Callable[[Images], np.ndarray],
                       features: Callable[[Images], np.ndarray] | None = None,
                       description: str = "predicate") -> Feedback:
  """Feedback from a user predicate images -> bool (N,) (True = negative, shows the feature).

  ``features`` (images -> (N, d)) defaults to the flattened images (fine for the 2-D toy).
  """
  def judge(images: Images) -> tuple[np.ndarray, np.ndarray]:
    negative = np.asarray(predicate(images), bool)
    feats = features(images) if features is not None else np.reshape(images, (len(images), -1))
    return np.where(negative, NEGATIVE, POSITIVE).astype(np.int8), np.asarray(feats, np.float32)

  return Feedback(judge, description)


@dataclasses.dataclass(frozen=True)
class FeedbackBank:
  """The kept latents of one feedback draw.

  Attributes:
    kind: 'negative' or 'positive'.
    latents: float32 (n, latent_dim), the kept latents in draw order.
    indices: int64 (n,), their positions in the stream of drawn latents.
    num_drawn: how many latents were drawn and judged.
    num_negative: how many of the drawn were judged negative.
    draw_s: wall time of drawing and judging.
    signature: identifies the settings it was drawn with (checked when a run reloads it).
  """
  kind: str
  latents: np.ndarray
  indices: np.ndarray
  num_drawn: int
  num_negative: int
  draw_s: float
  signature: str = ""

  @property
  def negative_rate(self) -> float:
    """Realised share of negatives among all drawn samples."""
    return self.num_negative / self.num_drawn

  def summary(self) -> dict:
    return {"kind": self.kind, "count": int(len(self.latents)), "num_drawn": self.num_drawn,
            "num_negative": self.num_negative, "negative_rate": self.negative_rate,
            "draw_s": self.draw_s}

  def save(self, path: str) -> None:
    """Writes an .npz atomically (temp file + rename)."""
    tmp = path[:-4] + ".tmp.npz"
    np.savez(tmp, kind=self.kind, latents=self.latents, indices=self.indices,
             num_drawn=self.num_drawn, num_negative=self.num_negative, draw_s=self.draw_s,
             signature=self.signature)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> FeedbackBank:
    with np.load(path, allow_pickle=False) as f:
      return cls(str(f["kind"]), f["latents"], f["indices"], int(f["num_drawn"]),
                 int(f["num_negative"]), float(f["draw_s"]), str(f["signature"]))


def draw_bank(key: jax.Array, *, kind: str, latent_dim: int, sample: Callable[[np.ndarray], Images],
              feedback: Feedback, mode: str = "fixed_count", count: int = 0, num_draws: int = 0,
              batch_size: int = 256, max_draws: int | None = None) -> FeedbackBank:
  """Draws latents z ~ N(0, I) from ``key`` in batches, judges G_{θ_G}(z) and keeps one kind.

  Batch b is ``jax.random.normal(fold_in(key, b), (batch_size, latent_dim))``, so the stream does
  not depend on the mode or the target.

  Args:
    key: the draw's key (each adapted model has its own).
    kind: 'negative' or 'positive'.
    latent_dim: z's size.
    sample: latents (n, latent_dim) -> images, the pre-trained generator in inference mode.
    feedback: the judge.
    mode: 'fixed_count' keeps exactly ``count`` samples of ``kind``, drawing until it has them;
      'fixed_draws' draws ``num_draws`` latents and keeps every one of ``kind`` (the official
      behaviour: a variable count).
    count: fixed_count's target.
    num_draws: fixed_draws' number of latents.
    batch_size: latents drawn per batch.
    max_draws: fixed_count gives up after this many drawn latents (default 200·count).

  Raises:
    UserInputError: too few samples of ``kind`` were found (fixed_count: fewer than ``count``;
      fixed_draws: none); the message says how many and what to change.
  """
  if kind not in BANK_KINDS:
    raise UserInputError(f"unknown feedback bank kind {kind!r}; valid: {', '.join(BANK_KINDS)}")
  if mode not in MODES:
    raise UserInputError(f"unknown feedback.mode {mode!r}; valid: {', '.join(MODES)}")
  target, limit = (count, max_draws or 200 * count) if mode == "fixed_count" else (1, num_draws)
  if target < 1 or limit < 1 or batch_size < 1:
    raise UserInputError(f"feedback ({mode}, {kind}) needs a positive count/num_draws and batch "
                         f"size; got count={count}, num_draws={num_draws}, batch_size={batch_size}")
  wanted = BANK_KINDS[kind]
  start = time.perf_counter()
  kept_z, kept_idx = [], []
  num_kept = num_drawn = num_negative = 0
  while num_drawn < limit and (mode == "fixed_draws" or num_kept < count):
    batch_key = jax.random.fold_in(key, num_drawn // batch_size)
    z = np.asarray(jax.random.normal(batch_key, (batch_size, latent_dim)), np.float32)
    z = z[:limit - num_drawn]
    verdicts, _ = feedback.judge(sample(z))
    hits = np.flatnonzero(verdicts == wanted)
    kept_z.append(z[hits])
    kept_idx.append(num_drawn + hits)
    num_kept += len(hits)
    num_negative += int(np.sum(verdicts == NEGATIVE))
    num_drawn += len(z)
  latents = np.concatenate(kept_z)[:count if mode == "fixed_count" else None]
  indices = np.concatenate(kept_idx).astype(np.int64)[:len(latents)]
  if len(latents) < target:
    what = (f"lower feedback.n_{kind[:3]} or raise feedback.max_draws_factor"
            if mode == "fixed_count" else f"raise feedback.draws_{kind[:3]}")
    if kind == "negative":
      what += ("; check that the generator produces the --forget class and that the classifier "
               "recognises it")
    raise UserInputError(
        f"found only {len(latents)} {kind} samples (need {target}) in {num_drawn} draws from the "
        f"pre-trained generator (negative rate {num_negative / num_drawn:.2%}; "
        f"{feedback.description}); {what}")
  return FeedbackBank(kind, latents, indices, num_drawn, num_negative, time.perf_counter() - start)
