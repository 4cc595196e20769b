"""The bad-input table: each wrong input to an entry point ends in one clear line, exit 2, no results.

Every row starts a real entry point in a subprocess and checks that stderr's last line is
``error: ...`` with the expected text (what was wrong, and what is valid), that nothing else but
progress went to stderr after the error, that the exit status is 2, and that the workdir holds no
results (it is absent or empty, or holds no results.json when the row needs an existing workdir).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import run_module

GAN = "experiments.train_gan"
CLF = "experiments.train_classifier"
CASCADED = "experiments.cascaded_unlearning"
ATU = "experiments.adapt_then_unlearn"
EVALUATE = "experiments.evaluate"
GAN_SMOKE = "--config=experiments/configs/mnist_dcgan.py:smoke"
CLF_SMOKE = "--config=experiments/configs/mnist_classifier.py:smoke"
CASCADED_SMOKE = "--config=experiments/configs/cascaded_unlearning.py:smoke"
ATU_SMOKE = "--config=experiments/configs/adapt_then_unlearn.py:smoke"
EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}

# (id, entry point, flags other than --workdir, expected text of the error line, environment).
# Placeholders: {gan} smoke GAN workdir, {clf} a classifier workdir, {tmp} a scratch folder,
# {empty_npy} / {dup_npy} / {big_npy} items files, {bad_data} / {no_data} data folders.
TABLE = [
    ("unknown dataset", GAN, [GAN_SMOKE, "--config.dataset=svhn"],
     "unknown dataset 'svhn'; valid datasets: mnist, cifar10", None),
    ("unknown model", GAN, [GAN_SMOKE, "--config.model=biggan"],
     "unknown model 'biggan'; valid: 'dcgan', 'stylegan2'", None),
    ("classifier: unknown dataset", CLF, [CLF_SMOKE, "--config.dataset=svhn"],
     "unknown dataset 'svhn'", None),
    ("missing data file", GAN, [GAN_SMOKE, "--data_dir={no_data}"], "not found", None),
    ("corrupt data file", GAN, [GAN_SMOKE, "--data_dir={bad_data}"], "train-images", None),
    ("unknown class", CASCADED, [CASCADED_SMOKE, "--pretrained={gan}", "--forget=class:11"],
     "unknown class 11; valid classes: 0..9", None),
    ("unknown class (train_gan)", GAN, [GAN_SMOKE, "--forget=class:11"],
     "unknown class 11; valid classes: 0..9", None),
    ("empty items", GAN, [GAN_SMOKE, "--forget=items_file:{empty_npy}"],
     "selects no training image", None),
    ("duplicate items", CASCADED, [CASCADED_SMOKE, "--pretrained={gan}",
                                   "--forget=items_file:{dup_npy}"], "duplicate", None),
    ("out-of-range items", GAN, [GAN_SMOKE, "--forget=items_file:{big_npy}"], "valid: 0..", None),
    ("zero items", GAN, [GAN_SMOKE, "--forget=items:0"], "out of range; valid: 1..", None),
    ("forget everything", GAN, [GAN_SMOKE, "--forget=classes:0,1,2,3,4,5,6,7,8,9"],
     "whole GAN training split", None),
    ("pretrained not a workdir", CASCADED, [CASCADED_SMOKE, "--pretrained={tmp}/nowhere",
                                            "--forget=class:3"], "nowhere", None),
    ("pretrained holds a classifier", ATU, [ATU_SMOKE, "--pretrained={clf}", "--forget=class:3",
                                            "--feedback_classifier={clf}"], "holds no GAN", None),
    ("reference of another architecture", EVALUATE,
     ["--config=experiments/configs/evaluate.py:smoke", "--checkpoint={gan}",
      "--reference={gan_wide}", "--eval_classifier={clf}", "--forget=class:3"],
     "architecture", None),
    ("batch size vs devices", GAN, [GAN_SMOKE, "--config.batch_size=12"],
     "batch_size=12 does not divide by the 8 devices", EIGHT_DEVICES),
    ("unwritable workdir", GAN, [GAN_SMOKE, "--workdir={tmp}/a_file/w"], "not writable", None),
    ("unknown config field", GAN, [GAN_SMOKE, "--config.dcgan.depth=3"],
     "--config.dcgan has no field 'depth'; valid fields: conv_backend, conv_transpose, d_width, g_width", None),
    ("unknown config field (ATU)", ATU, [ATU_SMOKE, "--config.repulsion.strength=3"],
     "--config.repulsion has no field 'strength'", None),
    ("unknown repulsion", ATU, [ATU_SMOKE, "--pretrained={gan}", "--forget=class:3",
                                "--feedback_classifier={clf}", "--repulsion=xl2"],
     "unknown --repulsion='xl2'; valid: el2, nl2, il2", None),
    ("too few negatives", ATU, [ATU_SMOKE, "--pretrained={gan}", "--forget=class:3",
                                "--feedback_classifier={clf}", "--config.feedback.n_neg=40",
                                "--config.feedback.n_pos=8", "--config.feedback.max_draws_factor=2"],
     "negative samples (need 40)", None),
    ("items for a class-only method", ATU, [ATU_SMOKE, "--pretrained={gan}", "--forget=items:5",
                                            "--feedback_classifier={clf}"],
     "Adapt-then-Unlearn unlearns classes", None),
    ("no forget set", CASCADED, [CASCADED_SMOKE, "--pretrained={gan}"], "--forget is required",
     None),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, smoke_gan, stub_classifier, data_dir) -> dict[str, str]:
  tmp = tmp_path_factory.mktemp("bad_input")
  (tmp / "a_file").write_text("a file, so a_file/w cannot be created")
  for name, items in (("empty_npy", []), ("dup_npy", [4, 4]), ("big_npy", [10 ** 7])):
    np.save(tmp / f"{name}.npy", np.array(items, np.int64))
  no_data, bad_data = tmp / "no_data", tmp / "bad_data"
  (no_data / "mnist").mkdir(parents=True)
  (bad_data / "mnist").mkdir(parents=True)
  for name in os.listdir(os.path.join(data_dir, "mnist")):
    source = os.path.join(data_dir, "mnist", name)
    if name.startswith("train-images"):
      with open(source, "rb") as f:
        (bad_data / "mnist" / name).write_bytes(f.read(4096))  # truncated
    else:
      os.symlink(source, bad_data / "mnist" / name)
  gan_wide = tmp / "gan_wide"
  run_module(GAN, f"--workdir={gan_wide}", GAN_SMOKE, "--config.num_steps=2",
             "--config.dcgan.g_width=16")
  return {"gan": smoke_gan, "clf": stub_classifier, "tmp": str(tmp), "no_data": str(no_data),
          "bad_data": str(bad_data), "gan_wide": str(gan_wide),
          **{k: str(tmp / f"{k}.npy") for k in ("empty_npy", "dup_npy", "big_npy")}}


@pytest.mark.parametrize("case, module, args, message, env", TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_is_one_line_exit_2_and_no_results(case, module, args, message, env, places,
                                                     tmp_path):
  del case
  args = [a.format(**places) for a in args]
  workdir = tmp_path / "w"
  if not any(a.startswith("--workdir=") for a in args):
    args.append(f"--workdir={workdir}")
  proc = run_module(module, *args, env=env, check=False)
  lines = [l for l in proc.stderr.strip().splitlines() if not l.startswith(("W1", "I1"))]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert lines and lines[-1].startswith("error: ") and message in lines[-1], proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert not workdir.exists() or not (workdir / "results.json").exists()
  assert not workdir.exists() or not any(p.name == "results.json" for p in workdir.rglob("*"))
