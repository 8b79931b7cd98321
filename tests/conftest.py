"""Shared test fixtures: the shared MovieLens copy (skipped where absent)."""

from __future__ import annotations

import os
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
