r"""Trains a GAN; with --forget=SPEC, the retrain-from-scratch baseline on D_r.

  python -m experiments.train_gan --workdir=/tmp/gan \
      --config=experiments/configs/mnist_dcgan.py [--forget=class:8]
"""

from absl import flags

from experiments import common
from jaxunlearn.train import loop

FLAGS = flags.FLAGS
common.define_config("experiments/configs/mnist_dcgan.py", "GAN training config.")
flags.DEFINE_string("forget", None, "Forget SPEC: train on the retained data only (class:C, "
                    "classes:C1,C2, items:N, items_file:PATH).")


def main():
  loop.train_and_evaluate(FLAGS.config, FLAGS.workdir, data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                          forget_spec=FLAGS.forget,
                          flags={**common.standard_flags(), "forget": FLAGS.forget})


if __name__ == "__main__":
  common.run(main)
