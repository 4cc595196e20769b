r"""Trains an evaluation or feedback classifier (evaluation.md §1).

  python -m experiments.train_classifier --workdir=/tmp/clf_eval \
      --config=experiments/configs/mnist_classifier.py --config.role=eval

--seed defaults to the role's seed (eval 0, feedback 1); an explicit --seed overrides it.
"""

from absl import flags

from experiments import common
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import classifier_training, classifiers

FLAGS = flags.FLAGS
common.define_config("experiments/configs/mnist_classifier.py", "Classifier training config.")


def main():
  role = FLAGS.config.role
  if role not in classifiers.ROLE_SEEDS:
    raise UserInputError(f"unknown --config.role={role!r}; valid: {', '.join(classifiers.ROLES)}")
  seed = FLAGS.seed if FLAGS["seed"].present else classifiers.ROLE_SEEDS[role]
  classifier_training.train_and_evaluate(FLAGS.config, FLAGS.workdir, data_dir=FLAGS.data_dir,
                                         seed=seed, flags={**common.standard_flags(), "seed": seed})


if __name__ == "__main__":
  common.run(main)
