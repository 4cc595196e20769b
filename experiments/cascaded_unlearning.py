r"""Cascaded unlearning (Sun et al.) of a GAN trained by experiments.train_gan.

  python -m experiments.cascaded_unlearning --pretrained=/work/runs/mnist_gan --forget=class:8 \
      --workdir=/tmp/cu --feedback_classifier=/work/runs/classifiers/mnist_feedback \
      --config=experiments/configs/cascaded_unlearning.py [--reference=RETRAINED_WORKDIR]

The workdir receives a train_gan-style checkpoint of the unlearned GAN, grid_{before,after,compare}.png,
metrics.jsonl (one line per round) and results.json; rerunning the command resumes after the last round.
"""

from absl import flags

from experiments import common
from jaxunlearn.methods import cascaded

FLAGS = flags.FLAGS
common.define_config("experiments/configs/cascaded_unlearning.py", "Cascaded unlearning config.")
flags.DEFINE_string("pretrained", None, "Workdir of the experiments.train_gan model to unlearn.")
flags.DEFINE_string("forget", None, "Forget SPEC: class:C, classes:C1,C2, items:N, items_file:PATH.")
flags.DEFINE_string("feedback_classifier", None, "Workdir of the feedback classifier (stop rule, "
                    "nearest and generated substitutes).")
flags.DEFINE_string("reference", None, "Optional workdir of the retrained model (train_gan --forget) "
                    "that sets the stop threshold r_c(G_R) or AUC_R.")


def main():
  cascaded.unlearn(FLAGS.config, FLAGS.workdir, pretrained=FLAGS.pretrained, forget_spec=FLAGS.forget,
                   feedback_classifier=FLAGS.feedback_classifier, reference=FLAGS.reference,
                   data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                   flags=common.standard_flags())


if __name__ == "__main__":
  common.run(main)
