"""The README's code example runs as written (so it never goes stale)."""

import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_python_example_runs(capsys):
  blocks = re.findall(r"```python\n(.*?)```", open(README).read(), flags=re.S)
  assert blocks, "the README has no python example"
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert "d_unlearn_loss" in out and "g_loss" in out
