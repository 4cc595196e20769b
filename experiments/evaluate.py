r"""The report card of a trained or unlearned GAN (evaluation.md §11).

  python -m experiments.evaluate --checkpoint=/tmp/unlearned --reference=/tmp/retrained \
      --forget=class:8 --eval_classifier=/tmp/clf_eval --workdir=/tmp/eval \
      --config=experiments/configs/evaluate.py[:smoke]

Writes report_card.json (the source of truth), report_card.md, results.json and config.json
in --workdir. --reference is the retrained-from-scratch model; --original the model before
unlearning (for PUL and the MIA power check). Without --forget the reference's SPEC is used.
"""

from absl import flags

from experiments import common
from jaxunlearn.eval import report

FLAGS = flags.FLAGS
common.define_config("experiments/configs/evaluate.py", "Evaluation config.")
flags.DEFINE_string("checkpoint", None, "Workdir of the GAN under test (train_gan or an "
                    "unlearning run).")
flags.DEFINE_string("reference", None, "Workdir of the retrained-from-scratch GAN "
                    "(train_gan --forget=SPEC).")
flags.DEFINE_string("original", None, "Workdir of the original GAN G0 (before unlearning).")
flags.DEFINE_string("forget", None, "Forget SPEC (class:C, classes:C1,C2, items:N, "
                    "items_file:PATH); default: the reference's.")
flags.DEFINE_string("eval_classifier", None, "Workdir of the eval classifier "
                    "(experiments.train_classifier --config.role=eval).")


def main():
  report.run_evaluation(FLAGS.config, FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                        eval_classifier=FLAGS.eval_classifier, reference=FLAGS.reference,
                        original=FLAGS.original, forget_spec=FLAGS.forget,
                        data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                        flags={**common.standard_flags(), "checkpoint": FLAGS.checkpoint,
                               "reference": FLAGS.reference, "original": FLAGS.original,
                               "forget": FLAGS.forget, "eval_classifier": FLAGS.eval_classifier})


if __name__ == "__main__":
  common.run(main)
