r"""Adapt-then-Unlearn (Tiwary et al.) on a GAN trained by experiments.train_gan.

  python -m experiments.adapt_then_unlearn --pretrained=/work/runs/mnist_gan --forget=class:8 \
      --repulsion=el2 --num_adapted=5 --feedback_classifier=/work/runs/classifiers/mnist_feedback \
      --workdir=/tmp/atu --config=experiments/configs/adapt_then_unlearn.py[:smoke|:cpu]

The method sees no training data: only the pre-trained GAN and the feedback classifier (role
'feedback'; ``--config.feedback.classifier=eval`` accepts the evaluation classifier instead, as the
official MNIST code does, and results.json says so). ``--config.baseline=extrapolation|
positives_only|ewc_finetune`` runs a baseline through the same code.

The files it writes are described in jaxunlearn/methods/atu_experiment.py.
"""

from absl import flags

from experiments import common
from jaxunlearn.methods.atu_experiment import apply_flags, run_experiment

FLAGS = flags.FLAGS
common.define_config("experiments/configs/adapt_then_unlearn.py", "Adapt-then-Unlearn config.")
flags.DEFINE_string("pretrained", None, "Workdir of the experiments.train_gan run to unlearn.")
flags.DEFINE_string("forget", None, "What to unlearn: class:C or classes:C1,C2.")
flags.DEFINE_string("repulsion", None, "Repulsion el2 | nl2 | il2 (sets config.repulsion.kind).")
flags.DEFINE_integer("num_adapted", None, "K, the number of adapted models (sets "
                     "config.adapt.num_models).")
flags.DEFINE_string("feedback_classifier", None, "Workdir of the experiments.train_classifier run "
                    "that judges generated samples (role feedback).")


def main():
  apply_flags(FLAGS.config, FLAGS.repulsion, FLAGS.num_adapted)
  run_experiment(FLAGS.config, FLAGS.workdir, pretrained=FLAGS.pretrained, forget=FLAGS.forget,
                 feedback_classifier=FLAGS.feedback_classifier, seed=FLAGS.seed,
                 flags_record={**common.standard_flags(), "repulsion": FLAGS.repulsion,
                               "num_adapted": FLAGS.num_adapted})


if __name__ == "__main__":
  common.run(main)
