"""Crash safety: SIGKILL pipelines.train mid-run, run the same command again, it resumes."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, start_until


@pytest.mark.slow
def test_hard_kill_then_same_command_resumes_from_last_epoch(tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipelines.train", f"--model_dir={model_dir}", "--epochs=8",
           "--validation_fraction=0", "--noexport", "--baselines=popularity", "--verbose=0"]
    # Without a validation slice one stage ("final") trains, with its own folders.
    proc = start_until(cmd, subprocess_env, model_dir / "checkpoints" / "final" / "ckpt-002.index",
                       start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill: no cleanup, no atexit
    proc.wait(timeout=60)
    assert (model_dir / "backup").is_dir(), "no backup left behind to resume from"

    out = subprocess.run(cmd, cwd=REPO, env=subprocess_env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming from the backup" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("resumed: trained epochs"))
    first = int(line.split("epochs ")[1].split("..")[0])
    assert 3 <= first <= 8 and line.endswith("..8")
    assert (model_dir / "checkpoints" / "final" / "ckpt-008.index").exists()
    backup = model_dir / "backup"
    assert not backup.exists() or not any(backup.iterdir())  # emptied once fit completed
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    m, pop = summary["metrics"], summary["baselines"]["popularity"]
    assert m["recall@100"] > pop["recall@100"]  # a healthy model, not a fresh one
