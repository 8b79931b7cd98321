"""The README's library example runs as written (a fresh process, like a user's script)."""

import re
import subprocess
import sys

from conftest import REPO


def test_readme_python_example_runs(subprocess_env):
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    env = {k: v for k, v in subprocess_env.items() if k != "TF_USE_LEGACY_KERAS"}
    for code in blocks:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=300, cwd=REPO)
        assert out.returncode == 0, out.stderr[-3000:]
