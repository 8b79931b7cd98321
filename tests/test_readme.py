"""The README runs as written: its library example, and its commands in the order a
newcomer runs them (the main job, evaluation, own data, freshness), in a fresh directory."""

import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from main_job import check_main_job

README = (REPO / "README.md").read_text()


def test_readme_python_example_runs(subprocess_env):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python example"
    env = {k: v for k, v in subprocess_env.items() if k != "TF_USE_LEGACY_KERAS"}
    for code in blocks:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=300, cwd=REPO)
        assert out.returncode == 0, out.stderr[-3000:]


def readme_commands():
    """The `python -m pipelines.*` commands of the README's bash blocks, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("&&")[-1].strip()
            if command.startswith("python -m pipelines."):
                commands.append(command)
    return commands


def write_own_data(root):
    """The files the README's own-data and freshness commands name."""
    rng = np.random.default_rng(0)
    users, items = [f"u{i}" for i in range(60)], [f"i{j}" for j in range(40)]
    events = ["user_id,item_id,event,timestamp"]
    for t in range(2400):
        u = rng.integers(60)
        j = (u % 8) * 5 + rng.integers(5)  # each user group likes 5 items
        events.append(f"{users[u]},{items[j]},{rng.choice(['click', 'order', 'impression'])},"
                      f"{t}")
    (root / "events.csv").write_text("\n".join(events) + "\n")
    new = ["user_id,item_id,event,timestamp"] + [
        f"{users[u]},{items[(u % 8) * 5 + u % 5]},click,{3000 + u}" for u in range(60)] + [
        f"{users[u]},i40,order,{3100 + u}" for u in range(0, 60, 4)]
    (root / "new.csv").write_text("\n".join(new) + "\n")
    (root / "users.csv").write_text("user_id,age,zip\n" + "\n".join(
        f"{u},{20 + i % 40},{75000 + i}" for i, u in enumerate(users)) + "\n")
    item_rows = [f"{j},{1.5 * k:.1f},a|b{k % 8}" for k, j in enumerate(items + ["i40"])]
    (root / "items.csv").write_text("item_id,price,tags\n" + "\n".join(item_rows) + "\n")
    (root / "catalogue.csv").write_text("item_id,price,tags\n" + "\n".join(
        item_rows + ["i41,2.0,a|b1"]) + "\n")
    (root / "features.json").write_text(re.search(r"`(\{\"items\": .*?\})`", README)[1])


@pytest.mark.slow
def test_readme_commands_run_in_order_as_written(tmp_path, subprocess_env):
    commands = readme_commands()
    modules = [c.split()[2] for c in commands]
    assert modules == ["pipelines.train", "pipelines.evaluate", "pipelines.evaluate",
                       "pipelines.train", "pipelines.train", "pipelines.export"], commands
    write_own_data(tmp_path)
    for number, command in enumerate(commands):
        args = shlex.split(command)
        out = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True,
                             env=subprocess_env, cwd=tmp_path, timeout=900)
        assert out.returncode == 0, (command, out.stderr[-3000:])
        if number == 0:  # the main job: the figures README and BENCHMARKS claim
            assert args[1:] == ["-m", "pipelines.train"], command
            check_main_job(out, tmp_path / "runs" / "default", subprocess_env, tmp_path)
        assert "Traceback" not in out.stderr and "cuInit" not in out.stderr, command
        print(command, "->", out.stdout.strip().splitlines()[-1][:200])
    # Each training run has its own model_dir; the exports of one model share a base dir.
    assert (tmp_path / "runs" / "default" / "export" / "1" / "saved_model.pb").exists()
    assert sorted(p.name for p in (tmp_path / "models" / "recall").iterdir()) == ["1", "2", "3"]
