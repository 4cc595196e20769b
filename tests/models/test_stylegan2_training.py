"""StyleGAN2 training: R1 and path-length penalties by hand, lazy intervals, style mixing, lazy
Adam, jit == no-jit; then train_gan, cascaded unlearning and Adapt-then-Unlearn on a smoke
StyleGAN2.

The unit tests use a 8x8 StyleGAN2 with 4 channels (cheap to compile); the end-to-end tests run the
entry points as subprocesses with XLA's backend optimisation level 0 (it halves compile times).
"""

import functools
import json
import math
import os
import shutil

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import run_module, write_stub_classifier
from experiments.configs import mnist_dcgan, mnist_stylegan2
from jaxunlearn import parallel
from jaxunlearn.eval import report
from jaxunlearn.models import stylegan2 as sg
from jaxunlearn.train import gan as gan_lib
from jaxunlearn.train import loop
from jaxunlearn.train import pretrained
from jaxunlearn.train import stylegan2 as sg_train

OPTIMIZER = ml_collections.ConfigDict({"learning_rate": 2e-3, "b1": 0.0, "b2": 0.99})
REG = sg_train.Regularization(d_reg_every=2, g_reg_every=3)


@functools.cache
def _tiny(r1_gamma: float = 10.0, ema_decay: float = 0.9, reg: sg_train.Regularization = REG):
  """A 8x8 StyleGAN2 collaborator with lazy Adam, and its state at step 0 (built once)."""
  gan = gan_lib.GAN(
      generator=sg.Generator(resolution=8, style_dim=8, n_mlp=1, channel_max=4),
      discriminator=sg.Discriminator(channel_max=4),
      g_optimizer=sg_train.lazy_adam(OPTIMIZER, reg.g_reg_every),
      d_optimizer=sg_train.lazy_adam(OPTIMIZER, reg.d_reg_every), latent_dim=8,
      r1_gamma=r1_gamma, ema_decay=ema_decay)
  return gan, jax.jit(lambda k: gan.init(k, (8, 8, 1)))(jax.random.key(0, impl="unsafe_rbg"))


@functools.cache
def _jitted_step():
  """The jitted train step of ``_tiny()`` with ``REG`` (compiled once for the module)."""
  return jax.jit(functools.partial(sg_train.train_step, gan=_tiny()[0], reg=REG))


def _real(n: int = 4) -> jax.Array:
  return jax.random.uniform(jax.random.key(1), (n, 8, 8, 1), minval=-1, maxval=1)


# ------------------------------------------------------------------------------------------------
# Penalties against hand-derived values.
# ------------------------------------------------------------------------------------------------

class _QuadraticD(nn.Module):
  """D(x) = ½·a·Σ x² per image: ∇_x D = a·x."""

  @nn.compact
  def __call__(self, x):
    return 0.5 * self.param("a", nn.initializers.constant(1.5), ()) * jnp.sum(x ** 2, (1, 2, 3))


def test_lazy_r1_update_by_hand():
  """R1 = a²·mean_i ‖x_i‖²; the lazy loss (γ/2)·k·R1 has d/da = γ·k·a·mean ‖x‖² (SGD, lr 1)."""
  gamma, every, a = 0.3, 4, 1.5
  gan = gan_lib.GAN(generator=None, discriminator=_QuadraticD(), g_optimizer=optax.sgd(1.0),
                    d_optimizer=optax.sgd(1.0), latent_dim=2, r1_gamma=gamma)
  x = jnp.arange(24.0).reshape(3, 2, 2, 2) / 20
  state = gan_lib.GANState(step=jnp.zeros((), jnp.int32), g_params={}, g_batch_stats={},
                           g_ema_params={}, d_params={"a": jnp.float32(a)}, g_opt_state=(),
                           d_opt_state=gan.d_optimizer.init({"a": jnp.float32(a)}),
                           rng=jnp.zeros(2, jnp.uint32))
  sq_norm = float(np.mean(np.sum(np.asarray(x) ** 2, axis=(1, 2, 3))))
  new, metrics = sg_train.r1_step(state, x, gan=gan, every=every)
  np.testing.assert_allclose(metrics["r1"], a ** 2 * sq_norm, rtol=1e-6)
  np.testing.assert_allclose(new.d_params["a"], a - gamma * every * a * sq_norm, rtol=1e-6)


def test_path_length_penalty_and_its_gradient_by_hand():
  """g(ws) = c·M ws (linear): ℓ_i = c·u_i, u_i = √(mean_l Σ_d (M^T y_i)²_{l,d}); with λ = decay,
  ā' = ā + λ(c·ū − ā), P(c) = mean_i (c(u_i − λū) − (1 − λ)ā)², and
  dP/dc = 2·mean_i (c(u_i − λū) − (1 − λ)ā)·(u_i − λū)."""
  rng = np.random.default_rng(0)
  n, num_layers, dim, h, w = 3, 4, 5, 2, 3
  m = rng.normal(size=(num_layers, dim, h * w)).astype(np.float32)
  ws = rng.normal(size=(n, num_layers, dim)).astype(np.float32)
  y = np.asarray(sg_train.path_length_noise(jax.random.key(0), (n, h, w, 1)))
  assert y.shape == (n, h, w, 1)
  synth = lambda c: lambda ws: c * jnp.einsum("nld,ldp->np", ws, m).reshape(n, h, w, 1)
  u = np.sqrt(np.mean(np.sum(np.einsum("ldp,np->nld", m, y.reshape(n, -1)) ** 2, 2), 1))
  c, pl_mean, decay = 1.7, 0.4, 0.25

  lengths = sg_train.path_lengths(synth(c), ws, y)
  np.testing.assert_allclose(lengths, c * u, rtol=1e-5)
  penalty, new_mean = sg_train.path_length_penalty(lengths, jnp.float32(pl_mean), decay)
  expected_mean = pl_mean + decay * (c * u.mean() - pl_mean)
  np.testing.assert_allclose(new_mean, expected_mean, rtol=1e-5)
  np.testing.assert_allclose(penalty, np.mean((c * u - expected_mean) ** 2), rtol=1e-5)

  grad = jax.grad(lambda c: sg_train.path_length_penalty(
      sg_train.path_lengths(synth(c), ws, y), jnp.float32(pl_mean), decay)[0])(jnp.float32(c))
  v = u - decay * u.mean()
  np.testing.assert_allclose(grad, 2 * np.mean((c * v - (1 - decay) * pl_mean) * v), rtol=1e-4)


def test_lazy_adam_scales_lr_and_betas_by_k_over_k_plus_1():
  """Adam with b1 = 0: step 1 moves by lr·c; step 2 by lr·c·g2/√(v2/(1 − β²)), β = 0.99^c."""
  tx, c = sg_train.lazy_adam(OPTIMIZER, 4), 4 / 5
  beta = 0.99 ** c
  p, (g1, g2) = jnp.float32(0.0), (3.0, -1.0)
  state = tx.init(p)
  u1, state = tx.update(jnp.float32(g1), state)
  np.testing.assert_allclose(u1, -2e-3 * c, rtol=1e-5)
  u2, _ = tx.update(jnp.float32(g2), state)
  v2 = beta * (1 - beta) * g1 ** 2 + (1 - beta) * g2 ** 2
  np.testing.assert_allclose(u2, -2e-3 * c * g2 / (math.sqrt(v2 / (1 - beta ** 2)) + 1e-8),
                             rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Style mixing.
# ------------------------------------------------------------------------------------------------

def test_mixing_at_crossover_k_uses_the_second_styles_from_k_on():
  w1, w2 = jnp.ones((2, 3)), 2 * jnp.ones((2, 3))
  for k in range(1, 5):
    ws = np.asarray(sg_train.mix_styles(w1, w2, jnp.int32(k), 5))
    assert ws.shape == (2, 5, 3)
    np.testing.assert_array_equal(ws[:, :k], 1.0)
    np.testing.assert_array_equal(ws[:, k:], 2.0)
  np.testing.assert_array_equal(sg_train.mix_styles(w1, w2, 5, 5), 1.0)  # k = L: no mixing
  keys = jax.random.split(jax.random.key(0), 400)
  draws = jax.vmap(lambda k, p: sg_train.crossover_layer(k, 5, p), (0, None))
  assert set(np.asarray(draws(keys, 1.0)).tolist()) == {1, 2, 3, 4}
  assert set(np.asarray(draws(keys, 0.0)).tolist()) == {5}
  assert 0.85 < float(np.mean(np.asarray(draws(keys, 0.9)) < 5)) < 0.95


def test_sampled_styles_switch_latent_once_at_the_same_layer_for_the_batch():
  gan, state = _tiny()
  ws = np.asarray(sg_train.sample_styles(state.g_params, state.g_batch_stats, jax.random.key(3),
                                         6, gan=gan, mixing_prob=1.0))
  assert ws.shape == (6, sg.num_ws(8), 8)
  changes = [np.flatnonzero(np.any(ws[i, 1:] != ws[i, :-1], axis=-1)) for i in range(6)]
  assert all(len(c) == 1 for c in changes) and len({int(c[0]) for c in changes}) == 1
  plain = np.asarray(sg_train.sample_styles(state.g_params, state.g_batch_stats,
                                            jax.random.key(3), 6, gan=gan, mixing_prob=0.0))
  np.testing.assert_array_equal(plain, np.broadcast_to(plain[:, :1], plain.shape))


# ------------------------------------------------------------------------------------------------
# The train step.
# ------------------------------------------------------------------------------------------------

def test_lazy_regularizers_run_exactly_on_their_steps():
  """k_D = 2, k_G = 3: R1 on steps 1, 3, 5 and path length on 2, 5 ((i + 1) mod k = 0; an extra
  Adam update each); ā moves only then; the EMA follows θ_G after every step; the main D update
  has no R1."""
  gan, state = _tiny()
  step = _jitted_step()
  real = _real()
  for i in range(6):
    old = state
    state, metrics = step(state, real, jax.random.key(i))
    r1_due, pl_due = (i + 1) % 2 == 0, (i + 1) % 3 == 0
    assert (float(metrics["r1"]) > 0) == r1_due, i
    assert (float(metrics["pl_penalty"]) > 0) == pl_due, i
    assert (float(metrics["path_length"]) > 0) == pl_due, i
    assert int(state.d_opt_state[0].count) - int(old.d_opt_state[0].count) == 1 + r1_due, i
    assert int(state.g_opt_state[0].count) - int(old.g_opt_state[0].count) == 1 + pl_due, i
    pl_mean = state.g_batch_stats[sg.PL_MEAN]
    assert (float(pl_mean) != float(old.g_batch_stats[sg.PL_MEAN])) == pl_due, i
    assert float(metrics["pl_mean"]) == float(pl_mean)
    chex.assert_trees_all_close(
        state.g_ema_params, jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, old.g_ema_params,
                                         state.g_params), rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_equal(state.g_batch_stats["synthesis"], old.g_batch_stats["synthesis"])
    assert int(state.step) == i + 1
  _, d_metrics = sg_train.d_step(state, real, jax.random.key(9), gan=gan, mixing_prob=0.9)
  assert set(d_metrics) == {"d_loss", "d_real", "d_fake"}


def test_regularizers_switched_off_leave_no_trace():
  reg = sg_train.Regularization(pl_weight=0.0, mixing_prob=0.0)
  gan, state = _tiny(r1_gamma=0.0, reg=reg)
  new, metrics = jax.jit(functools.partial(sg_train.train_step, gan=gan, reg=reg))(
      state, _real(), jax.random.key(0))
  assert set(metrics) == {"d_loss", "d_real", "d_fake", "g_loss"}
  assert int(new.d_opt_state[0].count) == int(new.g_opt_state[0].count) == 1


class StepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_train_step_jit_equals_no_jit(self):
    gan, state = _tiny()
    step = self.variant(functools.partial(sg_train.train_step, gan=gan, reg=REG))
    for start in (5, 0):  # both lazy regularizers, then none of them
      s = state.replace(step=jnp.int32(start))
      new, metrics = step(s, _real(), jax.random.key(2))
      ref, ref_metrics = _jitted_step()(s, _real(), jax.random.key(2))
      chex.assert_trees_all_close(new, ref, rtol=2e-5, atol=2e-6)
      chex.assert_trees_all_close(metrics, ref_metrics, rtol=2e-5, atol=2e-6)
      chex.assert_tree_all_finite(new)


def test_bad_regularizer_settings_are_refused():
  with pytest.raises(ValueError, match="stylegan2_reg.d_reg_every=0 must be >= 1"):
    sg_train.Regularization(d_reg_every=0)
  with pytest.raises(ValueError, match="mixing_prob=1.5"):
    sg_train.Regularization(mixing_prob=1.5)


# ------------------------------------------------------------------------------------------------
# Configs, architecture records and the report's model line.
# ------------------------------------------------------------------------------------------------

def test_architecture_keeps_the_dcgan_record_and_names_the_stylegan2_one():
  dcgan_config = mnist_dcgan.get_config()
  dcgan = loop.architecture(dcgan_config)
  assert dcgan == {"model": "dcgan", "dataset": "mnist", "latent_dim": 100,
                   "dcgan": {"g_width": 32, "d_width": 32}}  # as in every existing checkpoint
  dcgan_config.dcgan.conv_transpose = "plain"  # a formulation, not an architecture
  assert loop.architecture(dcgan_config) == dcgan
  config = mnist_stylegan2.get_config()
  assert loop.architecture(config) == {
      "model": "stylegan2", "dataset": "mnist", "latent_dim": 128,
      "stylegan2": {"n_mlp": 8, "channel_multiplier": 2, "channel_max": 32, "mbstd": False}}
  assert report.model_description(config).startswith(
      "STYLEGAN2 32×32, z = w = 128, mapping 8 layers, channels 32 / 32 / 32 / 32")
  assert report.model_description(mnist_dcgan.get_config()) == (
      "DCGAN 32×32, z = 100, widths G 32 / D 32")


def test_make_train_step_binds_lazy_adam_and_the_config_regularizers():
  config = mnist_stylegan2.get_config("smoke")
  step = gan_lib.make_train_step(config, gan_lib.make_gan(config))
  assert step.func is sg_train.train_step
  assert step.keywords["reg"] == sg_train.Regularization(d_reg_every=2, g_reg_every=2)
  dcgan = mnist_dcgan.get_config("smoke")
  assert gan_lib.make_train_step(dcgan, gan_lib.make_gan(dcgan)).func is gan_lib.train_step


# ------------------------------------------------------------------------------------------------
# End to end on the smoke StyleGAN2.
# ------------------------------------------------------------------------------------------------

SMOKE = "--config=experiments/configs/mnist_stylegan2.py:smoke"
FAST_COMPILE = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}


@pytest.fixture(scope="module")
def sg2_gan(tmp_path_factory, data_dir) -> str:
  workdir = str(tmp_path_factory.mktemp("sg2_gan"))
  run_module("experiments.train_gan", f"--workdir={workdir}", SMOKE, f"--data_dir={data_dir}",
             env=FAST_COMPILE)
  return workdir


def _state(workdir):
  state = pretrained.load_gan(workdir, parallel.make_mesh(1)).state
  return {"g_params": state.g_params, "g_batch_stats": state.g_batch_stats,
          "g_ema_params": state.g_ema_params, "d_params": state.d_params}


@pytest.mark.slow
def test_train_gan_smoke_writes_results_and_resumes(sg2_gan, data_dir, tmp_path):
  files = set(os.listdir(sg2_gan))
  assert {"config.json", "metrics.jsonl", "results.json", "grid_final.png", "checkpoints"} <= files
  results = json.load(open(os.path.join(sg2_gan, "results.json")))
  assert results["steps"] == 6 and results["method"] == "train_gan"
  records = [json.loads(line) for line in open(os.path.join(sg2_gan, "metrics.jsonl"))]
  assert [r["step"] for r in records] == [2, 4, 6]
  assert {"d_loss", "g_loss", "r1", "pl_penalty", "path_length", "pl_mean"} <= set(records[0])
  trained = pretrained.load_gan(sg2_gan, parallel.make_mesh(1))
  assert trained.meta["architecture"]["stylegan2"]["channel_max"] == 16
  assert all(r["r1"] > 0 and r["pl_penalty"] > 0 for r in records)  # k_D = k_G = 2
  assert float(trained.state.g_batch_stats[sg.PL_MEAN]) > 0
  # Resume: drop the last checkpoint and the results; the rerun continues from step 4.
  resumed = str(tmp_path / "resumed")
  shutil.copytree(sg2_gan, resumed)
  os.remove(os.path.join(resumed, "results.json"))
  shutil.rmtree(os.path.join(resumed, "checkpoints", "6"))
  proc = run_module("experiments.train_gan", f"--workdir={resumed}", SMOKE,
                    f"--data_dir={data_dir}", env=FAST_COMPILE)
  assert "resuming from the checkpoint at step 4" in proc.stderr
  chex.assert_trees_all_close(_state(resumed), _state(sg2_gan), rtol=1e-5, atol=1e-6)
  assert [json.loads(line)["step"] for line in open(os.path.join(resumed, "metrics.jsonl"))] == [
      2, 4, 6]


def test_bad_regularizer_setting_stops_train_gan_before_writing(tmp_path, data_dir):
  workdir = tmp_path / "bad"
  proc = run_module("experiments.train_gan", f"--workdir={workdir}", SMOKE,
                    f"--data_dir={data_dir}", "--config.stylegan2_reg.pl_batch_shrink=0",
                    check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --config.stylegan2_reg.pl_batch_shrink=0 must be >= 1")
  assert not workdir.exists() or not os.listdir(workdir)


@pytest.mark.slow
def test_cascaded_unlearning_runs_on_stylegan2(sg2_gan, tmp_path):
  workdir = str(tmp_path / "cascaded")
  run_module("experiments.cascaded_unlearning", f"--pretrained={sg2_gan}", "--forget=items:7",
             f"--workdir={workdir}", "--config=experiments/configs/cascaded_unlearning.py:smoke",
             "--config.substitution.selection=random", env=FAST_COMPILE)
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["method"] == "cascaded" and results["num_forget"] == 7
  mesh = parallel.make_mesh(1)
  unlearned, original = pretrained.load_gan(workdir, mesh), pretrained.load_gan(sg2_gan, mesh)
  pretrained.check_same_setup(original, unlearned, "the unlearned model")
  assert unlearned.meta["architecture"]["model"] == "stylegan2"
  key = ("final_linear_1", "weight")
  assert not np.allclose(unlearned.state.d_params[key[0]][key[1]],
                         original.state.d_params[key[0]][key[1]])


@pytest.mark.slow
def test_adapt_then_unlearn_runs_on_stylegan2_with_the_official_ewc_set(sg2_gan, tmp_path):
  (tmp_path / "stub").mkdir()
  classifier = write_stub_classifier(str(tmp_path / "stub"), sg2_gan)
  workdir = str(tmp_path / "atu")
  run_module("experiments.adapt_then_unlearn", f"--workdir={workdir}", f"--pretrained={sg2_gan}",
             f"--feedback_classifier={classifier}", "--forget=class:8", "--repulsion=el2",
             "--num_adapted=2", "--config=experiments/configs/adapt_then_unlearn.py:smoke",
             f"--config.ewc.param_filter={sg.SYNTHESIS_CONVS_REGEX}", env=FAST_COMPILE)
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["method"] == "adapt_then_unlearn" and results["forget_classes"] == [8]
  fisher = results["atu"]["fisher"]
  assert fisher["param_filter"] == sg.SYNTHESIS_CONVS_REGEX and fisher["mean"] > 0
  trained = pretrained.load_gan(workdir, parallel.make_mesh(1))
  original = pretrained.load_gan(sg2_gan, parallel.make_mesh(1))
  pretrained.check_same_setup(original, trained, "the unlearned model")
