"""Shared test fixtures: the shared MovieLens copy (skipped where absent)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import tfrecall  # noqa: F401  (selects Keras 2 before any test imports TensorFlow)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"


@pytest.fixture(scope="session")
def ml_latest_small() -> Path:
    """Path of ../shared/data/ml-latest-small; skips where a fresh clone has no ../shared."""
    if not (ML_LATEST_SMALL / "ratings.csv").exists():
        pytest.skip(f"MovieLens ml-latest-small not found at {ML_LATEST_SMALL} "
                    "(a fresh clone has no ../shared; CI provides it)")
    return ML_LATEST_SMALL


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for fresh-process round trips: repo importable, quiet TensorFlow."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_until(cmd, env, marker: Path, timeout: float = 300, **popen) -> subprocess.Popen:
    """Starts `cmd` in the repository root; returns it, still running, once `marker` exists.

    The child starts with SIGINT's default disposition and unblocked, as a shell's
    foreground job does: a child inherits an ignored (or blocked) SIGINT from the test
    worker, and Python then installs no KeyboardInterrupt handler; on some test orders
    of the full suite the Ctrl-C test's run finished normally (status 0).
    """
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_default_sigint, **popen)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the command ended before {marker} appeared"
    return proc


def assert_one_line_error(out: subprocess.CompletedProcess, *parts: str) -> None:
    """A user's mistake: exit status 2 and one line on stderr, `error: ...`, naming `parts`
    (so no traceback and no start-up noise such as the CUDA probe's line)."""
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    for part in parts:
        assert part in lines[0], (part, lines[0])
