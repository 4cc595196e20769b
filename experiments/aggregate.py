r"""A report card aggregated over seeds: every cell as mean ± std (evaluation.md §0, §11).

  python -m experiments.aggregate --cards=/tmp/eval_s0,/tmp/eval_s1,/tmp/eval_s2 \
      --workdir=/tmp/eval_agg [--config=experiments/configs/aggregate.py]

Each --cards folder is the workdir of a finished experiments.evaluate run of the same experiment
(same dataset, forget spec, N, method, variant, tables) with its own seed. Writes
report_card.json (cells {mean, std, n_seeds, values}; jaxunlearn/eval/aggregate.py),
report_card.md, results.json and config.json in --workdir.
"""

from absl import flags

from experiments import common
from jaxunlearn.eval import aggregate

FLAGS = flags.FLAGS
common.define_config("experiments/configs/aggregate.py", "Aggregation config.")
flags.DEFINE_list("cards", None, "Comma-separated experiments.evaluate workdirs, one per seed.")


def main():
  aggregate.run_aggregation(FLAGS.config, FLAGS.workdir, FLAGS.cards,
                            flags={**common.standard_flags(), "cards": FLAGS.cards})


if __name__ == "__main__":
  common.run(main)
