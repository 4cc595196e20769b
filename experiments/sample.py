r"""Draws samples from a trained GAN in inference mode.

  python -m experiments.sample --checkpoint=/tmp/gan --num_samples=1000 --output=/tmp/s.npz

Writes ``images`` (uint8, N×H×W×C, 0..255) and ``latents`` (float32, N×latent_dim). Latents are
drawn with --seed (``--bank=eval|ref|val|stop|grid`` uses a fixed latent bank instead).
"""

import os

import numpy as np
from absl import flags

from experiments import common
from jaxunlearn import images, latents, parallel, sampling
from jaxunlearn.errors import UserInputError
from jaxunlearn.train import pretrained

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Workdir of an experiments.train_gan run (or an "
                    "unlearning run).")
flags.DEFINE_integer("num_samples", 64, "How many samples.")
flags.DEFINE_string("output", None, "Output .npz path.")
flags.DEFINE_string("bank", None, "Use a fixed latent bank (eval, ref, val, stop, grid).")
flags.DEFINE_integer("batch_size", 256, "Sampling batch (a multiple of the device count).")
flags.DEFINE_bool("ema", True, "Sample from the EMA generator weights.")


def main():
  if not FLAGS.output or not FLAGS.output.endswith(".npz"):
    raise UserInputError(f"--output={FLAGS.output!r} must name a .npz file")
  if FLAGS.num_samples < 1:
    raise UserInputError(f"--num_samples={FLAGS.num_samples} must be at least 1")
  mesh = parallel.make_mesh()
  trained = pretrained.load_gan(FLAGS.checkpoint, mesh, flag="--checkpoint")
  dim = trained.gan.latent_dim
  if FLAGS.bank:
    z = latents.latent_bank(FLAGS.bank, dim)[:FLAGS.num_samples]
    if len(z) < FLAGS.num_samples:
      raise UserInputError(f"bank {FLAGS.bank!r} has {len(z)} latents < --num_samples")
  else:
    z = np.random.default_rng(FLAGS.seed).standard_normal((FLAGS.num_samples, dim), np.float32)
  generate = sampling.make_generate_fn(trained.gan.generate, mesh)
  params = trained.state.g_ema_params if FLAGS.ema else trained.state.g_params
  x = generate(params, trained.state.g_batch_stats, z, FLAGS.batch_size)
  out_dir = os.path.dirname(os.path.abspath(FLAGS.output))
  os.makedirs(out_dir, exist_ok=True)
  tmp = FLAGS.output[:-4] + ".tmp.npz"
  np.savez(tmp, images=images.model_to_uint8(x), latents=z)
  os.replace(tmp, FLAGS.output)
  print(f"wrote {len(z)} samples to {FLAGS.output}")


if __name__ == "__main__":
  common.run(main)
