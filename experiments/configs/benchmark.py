"""Step-throughput benchmark (experiments.benchmark): every step kind, the PyTorch peer, scaling.

Variants:
  (default) the MNIST DCGAN at the repo's default widths (g_width = d_width = 32, mnist_dcgan.py),
            and for the stylegan2_* kinds the CPU-sized MNIST StyleGAN2 (mnist_stylegan2.py),
            batch sizes 32/64/128/256, every registered kind, the PyTorch peer;
  spec      the same at the spec's widths (64: G 512/256/128, D 128/256/512);
  fastcpu   the default with the XLA:CPU flags that NOTES.md found fastest (YNNPACK convolutions
            off, so XLA's Eigen ones run; dots as oneDNN fusions) and the CPU split into one JAX
            device per core;
  onednn    fastcpu, timing gan_train_step (XLA's convolutions, on 1 and 2 devices) and
            gan_train_step_onednn (oneDNN's, jaxunlearn/ops/onednn.py, 1 device) beside the
            PyTorch peer at batch 64 and 128 (NOTES.md, attempt 25);
  smoke     seconds on 2 CPU cores: tiny widths, one batch size, 2 timed calls (tests).

  End to end (unlearning vs retraining from scratch, whole runs in the same process; spec §9): set
  --config.end_to_end.pretrained=ORIGINAL_WORKDIR --config.end_to_end.feedback_classifier=CLF_WORKDIR
  (any variant; see experiments/benchmarks/end_to_end.py). Retraining runs the original's recipe in
  full unless --config.end_to_end.retrain_steps=N (then extrapolated, and the table says so).

  python -m experiments.benchmark --workdir=W --config=experiments/configs/benchmark.py \
      [--config.batch_sizes=64,128] [--config.kinds=gan_train_step]
"""

import ml_collections

from experiments.configs import adapt_then_unlearn, cascaded_unlearning, mnist_dcgan, mnist_stylegan2


# XLA:CPU computes convolutions with Eigen instead of YNNPACK, and dots with oneDNN. The
# individual_convolution entry of the oneDNN fusion type has no effect in jaxlib 0.10.2 (NOTES.md,
# attempt 24); it is kept so the recorded runs' flags stay reproducible.
FAST_CPU_XLA_FLAGS = (
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_ynn_fusion_type=-individual_convolution "
    "--xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.gan = mnist_dcgan.get_config()  # make_gan reads it: widths, latent_dim, optimizer, dataset
  c.gan.ema_decay = 0.0           # as the PyTorch peer (no EMA), and the recorded results
  c.stylegan2 = mnist_stylegan2.get_config()  # the stylegan2_* kinds' GAN (same dataset as c.gan)
  c.kinds = "all"                 # comma-separated step kinds to time, or "all" (registered)
  c.batch_sizes = (32, 64, 128, 256)
  c.warmup = 3                    # untimed calls after compilation
  c.iters = 20                    # timed calls per case (median reported)
  c.rounds = 5                    # all steps of a batch size (and the peer) alternate in rounds
  c.matmul_size = 1024            # float32 matmul measured for the machine's peak FLOP/s
  c.device_counts = (1, 2, 4, 8)  # images/s of gan_train_step on this many devices, where present
  c.scaling_batch_size = 128      # global batch of the scaling rows (divisible by the counts)
  c.xla_flags = ""                # appended to $XLA_FLAGS before JAX starts (benchmarks/NOTES.md)
  c.cpu_devices = 0               # > 0: this many JAX CPU devices; -1: one per core; 0: as is
  c.torch_peer = True             # time the PyTorch DCGAN (skipped, and said so, without torch)
  c.torch_threads = -1            # torch.set_num_threads; -1 = os.cpu_count()
  c.classifier = ml_collections.ConfigDict({"model": "lenet", "widths": (32, 64, 128)})
  c.atu = ml_collections.ConfigDict({"num_adapted": 5, "ewc_lam": 5e8, "repulsion": "el2"})
  c.end_to_end = ml_collections.ConfigDict()
  c.end_to_end.pretrained = ""          # train_gan workdir of the original; "" skips the section
  c.end_to_end.feedback_classifier = ""  # train_classifier workdir (stop rule, substitutes, PUL)
  c.end_to_end.forget = "class:8,items:64,items:256,items:1024"  # forget SPECs, comma-separated
  c.end_to_end.methods = "cascaded,cascaded_warm,adapt_then_unlearn"  # end_to_end.METHODS
  c.end_to_end.repeats = 3              # T_U = median of this many unlearning runs (spec §9)
  c.end_to_end.adapt_then_unlearn_repeats = 1  # its runs take minutes on a CPU; no repeat rule
  c.end_to_end.retrain_steps = 0        # 0: the whole retraining recipe; N: N steps, extrapolated
  c.end_to_end.cascaded = cascaded_unlearning.get_config()
  c.end_to_end.adapt_then_unlearn = adapt_then_unlearn.get_config("cpu")  # the README's MNIST run:
  c.end_to_end.adapt_then_unlearn.adapt.num_models = 2                     # K = 2, EL2
  if variant == "":
    return c
  if variant == "fastcpu":
    c.xla_flags = FAST_CPU_XLA_FLAGS
    c.cpu_devices = -1
    return c
  if variant == "onednn":
    c.xla_flags = FAST_CPU_XLA_FLAGS
    c.cpu_devices = -1
    c.kinds = "gan_train_step,gan_train_step_onednn"
    c.batch_sizes = (64, 128)
    return c
  if variant == "spec":
    c.gan.dcgan.g_width = 64
    c.gan.dcgan.d_width = 64
    return c
  if variant == "smoke":
    c.gan.dcgan.g_width = 4
    c.gan.dcgan.d_width = 4
    c.stylegan2 = mnist_stylegan2.get_config("smoke")
    c.batch_sizes = (8,)
    c.warmup = 1
    c.iters = 2
    c.rounds = 2
    c.matmul_size = 128
    c.device_counts = (1, 2)
    c.scaling_batch_size = 8
    c.classifier.widths = (4, 8, 16)
    c.atu.num_adapted = 2
    c.end_to_end.forget = "class:8"  # one SPEC keeps CI short; item mode is tested in test_cascaded
    c.end_to_end.methods = "cascaded,cascaded_warm"  # the warm cascade: skipped for a class SPEC
    c.end_to_end.repeats = 1
    c.end_to_end.retrain_steps = 2
    c.end_to_end.cascaded = cascaded_unlearning.get_config("smoke")
    c.end_to_end.adapt_then_unlearn = adapt_then_unlearn.get_config("smoke")
    return c
  raise ValueError(f"unknown variant {variant!r}; valid: '', 'fastcpu', 'onednn', 'spec', 'smoke'")
