"""Fields shared by every GAN training config (dataset-specific files override a few)."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = "mnist"
  c.cifar10_variant = "jpeg_full"  # local CIFAR-10 source: jpeg_full (lossy) | exact_subset
  c.holdout_size = 5000           # non-member pool H, held out of all GAN training
  c.split_seed = 0                # fixes H for every model of a comparison (not --seed)
  c.model = "dcgan"
  # conv_transpose: G's transposed-convolution formulation (jaxunlearn/models/layers.py FORMS):
  # "custom_vjp" (fast on XLA:CPU) or "plain" (lhs-dilated conv, XLA's autodiff; same parameters).
  # conv_backend: "xla", or "onednn" (oneDNN's kernels through XLA's FFI, jaxunlearn/ops/onednn.py;
  # optional packages, one JAX device per process; same parameters, same function).
  c.dcgan = ml_collections.ConfigDict({"g_width": 64, "d_width": 64, "conv_transpose": "custom_vjp",
                                       "conv_backend": "xla"})
  # model = "stylegan2" (jaxunlearn/models/stylegan2.py): mapping layers, rosinality's channel
  # table (multiplier, cap) and D's minibatch-stddev (off: each D score depends on its image only).
  c.stylegan2 = ml_collections.ConfigDict(
      {"n_mlp": 8, "channel_multiplier": 2, "channel_max": 512, "mbstd": False})
  # StyleGAN2's training regularizers (jaxunlearn/train/stylegan2.py; R1's weight is r1_gamma).
  c.stylegan2_reg = ml_collections.ConfigDict(
      {"d_reg_every": 16, "g_reg_every": 4, "pl_weight": 2.0, "pl_decay": 0.01,
       "pl_batch_shrink": 2, "mixing_prob": 0.9})
  c.latent_dim = 100
  c.batch_size = 64
  c.num_epochs = 25               # passes over the model's own training set
  c.num_steps = -1                # > 0 overrides num_epochs
  c.optimizer = ml_collections.ConfigDict({"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999})
  c.r1_gamma = 0.0
  c.ema_decay = 0.0
  c.nonfinite_policy = "stop"     # a NaN/Inf loss: "stop" the run, or "skip" the step (counted)
  c.num_devices = -1              # -1: every device of the mesh
  c.log_every = 50
  c.grid_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Seconds on 2 CPU cores: tiny widths, a few steps."""
  c.dcgan.g_width = 8
  c.dcgan.d_width = 8
  c.batch_size = 16
  c.num_steps = 6
  c.holdout_size = 1000
  c.log_every = 2
  c.grid_every = 4
  c.checkpoint_every = 2
  return c
