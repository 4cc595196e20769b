"""The 2-D mixture-of-Gaussians toy end to end (adapt_then_unlearn.md §9, §11).

An MLP GAN learns an 8-mode ring; Adapt-then-Unlearn, with a mode-assignment predicate as the
"classifier", must then remove modes 0 and 1 (together < 5 % of samples) while each of the six kept
modes keeps at least 8 %. Stage 1 and Stage 2 run through the library's own functions.
"""

import jax
import numpy as np
import pytest

from experiments.configs.adapt_then_unlearn import get_config
from jaxunlearn import parallel, sampling
from jaxunlearn.methods import adapt_then_unlearn as atu
from jaxunlearn.methods import feedback as feedback_lib
from jaxunlearn.methods import mog_toy

FORGET = (0, 1)
NUM_SAMPLES = 4000


@pytest.fixture(scope="module")
def toy():
  """(mesh, gan, pre-trained state, sampler) of a ring GAN trained for 1,500 steps."""
  mesh = parallel.make_mesh(1)
  gan = mog_toy.make_toy_gan()
  state = mog_toy.pretrain(gan, jax.random.key(0), mesh, num_steps=1500)
  generate = sampling.make_generate_fn(gan.generate, mesh)
  z = np.asarray(jax.random.normal(jax.random.key(9), (NUM_SAMPLES, gan.latent_dim)))
  shares = lambda params, stats: mog_toy.mode_shares(generate(params, stats, z, 1000))
  return mesh, gan, state, shares


def toy_config(baseline: str = "none"):
  c = get_config("smoke")
  c.baseline = baseline
  c.sample_batch_size = 500
  c.feedback.update(dict(n_neg=256, n_pos=2000, batch_size=500))
  c.adapt.update(dict(num_models=2, num_steps=300, batch_size=64, learning_rate=1e-3, r1_gamma=0.1,
                      sanity_samples=1000))
  c.ewc.update(dict(lam=1e3, num_samples=32))
  c.unlearn.update(dict(num_steps=600, batch_size=256, learning_rate=1e-3, r1_gamma=0.1,
                        eval_every=100))
  c.selection.num_val = 2000
  return c


def forget_modes() -> feedback_lib.Feedback:
  return feedback_lib.predicate_feedback(
      lambda points: np.isin(mog_toy.assign_modes(points), FORGET), description="modes 0, 1")


def test_pretrained_ring_covers_every_mode(toy):
  _, _, state, shares = toy
  assert np.all(shares(state.g_params, state.g_batch_stats) > 0.06)


def test_adapt_then_unlearn_removes_two_modes_and_keeps_six(toy):
  mesh, gan, state, shares = toy
  result = atu.adapt_then_unlearn(gan, state, forget_modes(), toy_config(), key=jax.random.key(1),
                                  mesh=mesh)
  # Stage 1: each adapted model produces mostly the forgotten modes.
  for theta_n in result.adapted:
    assert shares(theta_n, state.g_batch_stats)[list(FORGET)].sum() > 0.5
  after = shares(result.selected.g_params, result.selected.g_batch_stats)
  assert after[list(FORGET)].sum() < 0.05, after
  kept = np.delete(after, FORGET)
  assert np.all(kept >= 0.08), after
  info = result.info
  assert info["selected"]["pul_val"] > 80
  assert info["selected"]["fid_sel_val"] <= info["validation"]["fid_limit"]
  assert info["repulsion"]["d0"] > 0 and info["fisher"]["mean"] > 0
  assert [h["step"] for h in info["history"]] == list(range(0, 601, 100))


def test_baselines_share_the_code_path(toy):
  mesh, gan, state, _ = toy
  config = toy_config("extrapolation")
  config.adapt.num_models = 1
  config.adapt.num_steps = 100
  config.extrapolation.scales = (0.0, -0.5, -1.0, 0.5)
  result = atu.adapt_then_unlearn(gan, state, forget_modes(), config, key=jax.random.key(1),
                                  mesh=mesh)
  points = result.info["extrapolation"]["points"]
  assert [p["s"] for p in points] == [0.0, -0.5, 0.5, -1.0]  # |s| ascending, negative first
  assert points[0]["pul_val"] == 0.0  # θ(0) = θ_G
  assert points[2]["pul_val"] < 0  # s > 0 moves towards the negatives: more of them
  assert result.info["selected"]["fid_sel_val"] <= result.info["validation"]["fid_limit"]
  for baseline in ("positives_only", "ewc_finetune"):
    config = toy_config(baseline)
    config.unlearn.update(dict(num_steps=40, eval_every=20))
    result = atu.adapt_then_unlearn(gan, state, forget_modes(), config, key=jax.random.key(1),
                                    mesh=mesh)
    assert result.adapted == [] and "stage1" not in result.info
    assert ("ewc" in result.info["history"][-1]) == (baseline == "ewc_finetune")
    assert "repulsion" not in result.info["history"][-1]
