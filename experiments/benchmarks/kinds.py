"""The step kinds experiments.benchmark can time: one registry, one builder per kind.

A builder ``builder(setup, batch_size, mesh) -> benchmarking.Case`` returns a jitted step (built
with ``parallel.jit_step`` or an equivalent ``MeshJitted``) and fresh arguments for it: a state
made for this case alone (steps donate it), a batch sharded along ``data`` and a key. Builders
import method modules inside their body, so a kind whose module is missing or broken is reported
as skipped instead of stopping the benchmark.

To add a kind, write a builder next to the others and decorate it with :func:`register`;
``unlearning=True`` adds it to the unlearning-versus-retraining ratios, where its step time is
divided by that of ``retrain_kind`` at the same batch size.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from jaxunlearn import parallel
from jaxunlearn.benchmarking import Case
from jaxunlearn.ops import onednn
from jaxunlearn.train import gan as gan_lib


@dataclasses.dataclass(frozen=True)
class Setup:
  """What every builder shares: the benchmark config and the GAN collaborator it describes."""
  config: ml_collections.ConfigDict
  gan: gan_lib.GAN

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (32, 32, 1 if self.config.gan.dataset == "mnist" else 3)

  def gan_state(self, mesh: Mesh) -> gan_lib.GANState:
    """A fresh GAN state, replicated over ``mesh`` (its own buffers: steps donate it)."""
    return _gan_init(self.gan, self.image_shape, mesh)(jax.random.key(0))

  def images(self, mesh: Mesh, batch_size: int, seed: int = 1) -> jax.Array:
    """(batch_size, 32, 32, C) uniform images in [-1, 1], sharded along ``data``."""
    x = jax.random.uniform(jax.random.key(seed), (batch_size, *self.image_shape), jnp.float32,
                           -1.0, 1.0)
    return parallel.shard_batch(mesh, jax.device_get(x))


@functools.lru_cache(maxsize=None)
def _gan_init(gan: gan_lib.GAN, image_shape: tuple[int, int, int], mesh: Mesh):
  """``GAN.init`` jitted once per (GAN, shape, mesh), its output replicated over the mesh."""
  return jax.jit(functools.partial(gan.init, image_shape=image_shape),
                 out_shardings=parallel.replicated(mesh))


Builder = Callable[[Setup, int, Mesh], Case]


@dataclasses.dataclass(frozen=True)
class Kind:
  builder: Builder
  description: str
  unlearning: bool = False
  retrain_kind: str = "gan_train_step"


KINDS: dict[str, Kind] = {}


def register(name: str, description: str, *, unlearning: bool = False,
             retrain_kind: str = "gan_train_step") -> Callable[[Builder], Builder]:
  """Adds a builder to :data:`KINDS` under ``name``."""

  def add(builder: Builder) -> Builder:
    if name in KINDS:
      raise ValueError(f"step kind {name!r} registered twice")
    KINDS[name] = Kind(builder, description, unlearning, retrain_kind)
    return builder

  return add


# ------------------------------------------------------------------------------------------------
# GAN training (train_gan, and the retrain-from-scratch baseline).
# ------------------------------------------------------------------------------------------------

@register("gan_train_step", "train.gan.train_step: D update then G update (fused in one jit)")
def _gan_train_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  step = parallel.jit_step(functools.partial(gan_lib.train_step, gan=setup.gan), mesh)
  return Case(step, (setup.gan_state(mesh), setup.images(mesh, batch_size), jax.random.key(2)),
              batch_size)


@register("gan_train_step_plain_convtranspose",
          "gan_train_step with G's transposed convs in the plain form of flax.linen.ConvTranspose "
          "(lhs-dilated conv, XLA's autodiff) instead of the custom VJP: the formulation A/B")
def _gan_train_step_plain_convtranspose(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  config = setup.config.gan.copy_and_resolve_references()
  config.dcgan.conv_transpose = "plain"
  return _gan_train_step(dataclasses.replace(setup, gan=gan_lib.make_gan(config)), batch_size, mesh)


@register("gan_train_step_onednn",
          "gan_train_step with conv_backend='onednn': every convolution (but G's image-layer "
          "forward) on oneDNN's kernels through XLA's FFI (jaxunlearn/ops/onednn.py); 1 device")
def _gan_train_step_onednn(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  onednn.register()  # raises OnednnUnavailable (the kind is skipped) without oneDNN or g++
  config = setup.config.gan.copy_and_resolve_references()
  config.dcgan.conv_backend = "onednn"
  return _gan_train_step(dataclasses.replace(setup, gan=gan_lib.make_gan(config)), batch_size, mesh)


@register("gan_d_step", "train.gan.d_step: one D update against a fresh fake batch")
def _gan_d_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  step = parallel.jit_step(functools.partial(gan_lib.d_step, gan=setup.gan), mesh)
  return Case(step, (setup.gan_state(mesh), setup.images(mesh, batch_size), jax.random.key(2)),
              batch_size)


def _g_step(state, rng, *, gan, batch_size):
  return gan_lib.g_step(state, batch_size, rng, gan=gan)


@register("gan_g_step", "train.gan.g_step: one G update (non-saturating loss)")
def _gan_g_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  step = parallel.jit_step(functools.partial(_g_step, gan=setup.gan, batch_size=batch_size), mesh,
                           batch_argnums=(), num_args=2)
  return Case(step, (setup.gan_state(mesh), jax.random.key(2)), batch_size)


@register("sample", "GAN.generate: G in inference mode on a batch of latents (sampling)")
def _sample(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  # The jitted generation of sampling.make_generate_fn, without its host loop.
  rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  generate = parallel.MeshJitted(jax.jit(setup.gan.generate, in_shardings=(rep, rep, bat),
                                         out_shardings=bat), mesh)
  state = setup.gan_state(mesh)
  z = parallel.shard_batch(mesh, jax.device_get(
      jax.random.normal(jax.random.key(3), (batch_size, setup.gan.latent_dim))))
  return Case(generate, (state.g_ema_params, state.g_batch_stats, z), batch_size, carry=False)


def _stylegan2_case(setup: Setup, batch_size: int, mesh: Mesh, every: int | None) -> Case:
  """The StyleGAN2 training step of ``config.stylegan2`` (both lazy intervals = ``every``, if
  given), on a state of its own."""
  config = setup.config.stylegan2
  if every is not None:
    config = config.copy_and_resolve_references()
    config.stylegan2_reg.d_reg_every = config.stylegan2_reg.g_reg_every = every
  gan = gan_lib.make_gan(config)
  state = _gan_init(gan, setup.image_shape, mesh)(jax.random.key(0))
  step = parallel.jit_step(gan_lib.make_train_step(config, gan), mesh)
  return Case(step, (state, setup.images(mesh, batch_size), jax.random.key(2)), batch_size)


@register("stylegan2_train_step", "train.stylegan2.train_step of config.stylegan2: D, lazy R1, G, "
          "lazy path length, EMA (one jit; the regularizers run on every 16th / 4th call only, "
          "so the median is an unregularized iteration)")
def _stylegan2_train_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  return _stylegan2_case(setup, batch_size, mesh, every=None)


@register("stylegan2_regularized_step", "train.stylegan2.train_step with R1 and path length on "
          "every call (a regularized iteration; the lazy intervals amortize its extra cost)")
def _stylegan2_regularized_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  return _stylegan2_case(setup, batch_size, mesh, every=1)


# ------------------------------------------------------------------------------------------------
# Unlearning methods.
# ------------------------------------------------------------------------------------------------

def _cascaded_step(state, batch, rng, *, d_unlearn_step, generator_step):
  """The cascade's interleaved unit: one unlearning D update on (x_u, s) pairs, one G update."""
  state, d_metrics = d_unlearn_step(state, batch, jax.random.fold_in(rng, 0))
  state, g_metrics = generator_step(state, jax.random.fold_in(rng, 1))
  return state, {**d_metrics, **g_metrics}


@register("cascaded_unlearn_step", "methods.cascaded: d_unlearn_step (B forget + B substitutes + "
          "B fakes) then generator_step (order=interleaved, g_steps=1)", unlearning=True)
def _cascaded_unlearn_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  from jaxunlearn.methods import cascaded  # pylint: disable=g-import-not-at-top
  d_unlearn = functools.partial(cascaded.d_unlearn_step, gan=setup.gan, fake_batch_size=batch_size,
                                fake_label=0.0, weight=1.0)
  g = functools.partial(cascaded.generator_step, gan=setup.gan, batch_size=batch_size)
  step = parallel.jit_step(functools.partial(_cascaded_step, d_unlearn_step=d_unlearn,
                                             generator_step=g), mesh)
  batch = {"forget": setup.images(mesh, batch_size, seed=4),
           "substitute": setup.images(mesh, batch_size, seed=5)}
  return Case(step, (setup.gan_state(mesh), batch, jax.random.key(2)), batch_size)


def _atu_case(setup: Setup, batch_size: int, mesh: Mesh, stage: int) -> Case:
  from jaxunlearn.methods import adapt_then_unlearn as atu  # pylint: disable=g-import-not-at-top
  from jaxunlearn.methods import repulsion  # pylint: disable=g-import-not-at-top
  cfg = setup.config.atu
  state = setup.gan_state(mesh)
  theta_g = jax.tree.map(jnp.copy, state.g_params)  # the step donates the state's own buffers
  if stage == 1:
    consts = atu.EWCConsts(anchor=theta_g, fisher=jax.tree.map(jnp.ones_like, theta_g))
    regularizer = functools.partial(atu.ewc_regularizer, lam=cfg.ewc_lam)
  else:
    adapted = [jax.tree.map(lambda p, j=j: p + 0.01 * (j + 1), theta_g)
               for j in range(cfg.num_adapted)]
    consts = atu.RepulsionConsts(repulsion.mean_model(adapted), jnp.float32(1.0),
                                 jnp.float32(1.0), jnp.float32(1e-12))
    regularizer = functools.partial(atu.repulsion_regularizer, kind=cfg.repulsion,
                                    distance_form="paper", aggregate="distance")
  step = parallel.jit_step(functools.partial(atu.atu_step, gan=setup.gan, regularizer=regularizer),
                           mesh, num_args=4)
  consts = parallel.replicate(mesh, consts)
  return Case(step, (state, setup.images(mesh, batch_size), jax.random.key(2), consts), batch_size)


@register("atu_stage1_step", "methods.adapt_then_unlearn.atu_step with the EWC penalty (Adapt)",
          unlearning=True)
def _atu_stage1(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  return _atu_case(setup, batch_size, mesh, stage=1)


@register("atu_stage2_step", "methods.adapt_then_unlearn.atu_step with the repulsion (Unlearn; "
          "mean model of K adapted generators)", unlearning=True)
def _atu_stage2(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  return _atu_case(setup, batch_size, mesh, stage=2)


# ------------------------------------------------------------------------------------------------
# Classifiers (evaluation and feedback).
# ------------------------------------------------------------------------------------------------

def _classifier(setup: Setup):
  """The classifier module of ``config.classifier`` for the GAN's dataset."""
  from jaxunlearn.eval import classifiers as clf  # pylint: disable=g-import-not-at-top
  cfg = setup.config.classifier
  return clf.make_classifier(clf.architecture({"model": cfg.model, "widths": cfg.widths,
                                               "dataset": setup.config.gan.dataset}))


@functools.lru_cache(maxsize=None)
def _classifier_init(module, image_shape: tuple[int, int, int], mesh: Mesh):
  """``module.init`` jitted once per (module, shape, mesh), replicated: {'params', ...}."""
  return jax.jit(lambda key: module.init(key, jnp.zeros((1, *image_shape)), train=False),
                 out_shardings=parallel.replicated(mesh))


@register("classifier_train_step", "eval.classifier_training.train_step (Adam, ±2 px shifts)")
def _classifier_train_step(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  from jaxunlearn.eval import classifier_training  # pylint: disable=g-import-not-at-top
  from jaxunlearn.eval import classifiers as clf  # pylint: disable=g-import-not-at-top
  module = _classifier(setup)
  optimizer = clf.make_optimizer({"name": "adam", "learning_rate": 1e-3, "momentum": 0.9,
                                  "weight_decay": 0.0, "schedule": "constant"}, 1)
  variables = _classifier_init(module, setup.image_shape, mesh)(jax.random.key(0))
  state = clf.ClassifierState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                              batch_stats=variables.get("batch_stats", {}),
                              opt_state=optimizer.init(variables["params"]))
  step = parallel.jit_step(functools.partial(classifier_training.train_step, module=module,
                                             optimizer=optimizer, shift=2), mesh)
  labels = jax.device_get(jax.random.randint(jax.random.key(6), (batch_size,), 0, 10))
  batch = {"images": setup.images(mesh, batch_size), "labels": parallel.shard_batch(mesh, labels)}
  return Case(step, (state, batch, jax.random.key(2)), batch_size)


@register("classifier_features", "classifier inference: (logits, penultimate features) per image "
          "(FID/PRDC features, feedback)")
def _classifier_features(setup: Setup, batch_size: int, mesh: Mesh) -> Case:
  module = _classifier(setup)
  variables = _classifier_init(module, setup.image_shape, mesh)(jax.random.key(0))
  rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  apply = parallel.MeshJitted(jax.jit(lambda v, x: module.apply(v, x, train=False),
                                      in_shardings=(rep, bat), out_shardings=bat), mesh)
  return Case(apply, (variables, setup.images(mesh, batch_size)), batch_size, carry=False)
