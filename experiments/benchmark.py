r"""Step throughput: every jitted step kind, the PyTorch DCGAN peer, unlearning vs retraining.

  python -m experiments.benchmark --workdir=/tmp/bench \
      --config=experiments/configs/benchmark.py[:spec|:smoke] [--config.batch_sizes=64,128]

Writes config.json, results.json (atomically, once) and benchmark.md to the workdir; see
experiments/benchmarks/NOTES.md for how to read the numbers on a shared machine.

With ``--config.end_to_end.pretrained=ORIGINAL --config.end_to_end.feedback_classifier=CLF`` the
same run then retrains from scratch and runs each unlearning method as whole runs, per forget SPEC
(experiments/benchmarks/end_to_end.py); their sub-workdirs are under WORKDIR/end_to_end.
"""

import os
import tempfile

from absl import flags

from experiments import common
from experiments.benchmarks import end_to_end, suite
from jaxunlearn import runs

FLAGS = flags.FLAGS
common.define_config("experiments/configs/benchmark.py", "Benchmark config.")


def _write_text_atomic(path: str, text: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_", suffix=".md")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def main():
  suite.check_config(FLAGS.config)
  end_to_end.check_config(FLAGS.config.end_to_end)
  suite.configure_backend(FLAGS.config)
  if FLAGS.config.end_to_end.pretrained:
    end_to_end.check_forget_specs(FLAGS.config.end_to_end, FLAGS.data_dir, FLAGS.seed)
  workdir = runs.prepare_workdir(FLAGS.workdir)
  runs.write_config(workdir, FLAGS.config, common.standard_flags())
  results = suite.run(FLAGS.config, notice=runs.notice)
  text = suite.markdown(results)
  if FLAGS.config.end_to_end.pretrained:
    results["end_to_end"] = end_to_end.run(FLAGS.config.end_to_end, workdir,
                                           data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                                           notice=runs.notice)
    text += "\n".join(end_to_end.markdown(results["end_to_end"])) + "\n"
  runs.write_results(workdir, results)
  _write_text_atomic(os.path.join(workdir, "benchmark.md"), text)
  runs.notice(f"wrote {os.path.join(workdir, 'benchmark.md')}")


if __name__ == "__main__":
  common.run(main)
