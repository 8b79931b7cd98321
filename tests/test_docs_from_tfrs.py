"""docs/from_tfrs.md runs as written: train the TFRS tutorial model, export it, serve it from a
fresh process with TensorFlow only, train it again with a tfrecall loss and log Q.

The page's ``python`` blocks run in a subprocess in a temporary directory (its exports land
there); the block starting ``# serve.py`` runs in a second, fresh process that must not
import tfrecall, TFRS or ScaNN. The page's data path is pointed at ml-latest-small in
``../shared/data`` (skipped where absent) or at a tiny synthetic copy in the same format,
so a fresh clone still runs the page.
"""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

PAGE = REPO / "docs" / "from_tfrs.md"
PAGE_DATA = '"../shared/data/ml-latest-small"'
PAGE_ROWS = 'rows = read("ratings.csv")'
# Appended to the serve block: what it imported, and its answers as JSON.
REPORT = """
import json, sys
print("MODULES", sorted(set(sys.modules) & {"tfrecall", "tensorflow_recommenders", "scann"}))
print("RESULT", json.dumps({name: [t.decode() for t in out["item_ids"][0].numpy()]
                            for name, out in (("top", top), ("fresh", fresh))}))
"""


def page_blocks():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    serve = [b for b in blocks if b.startswith("# serve.py")]
    assert len(serve) == 1 and len(blocks) >= 3, "the page lost its train/export/serve blocks"
    return [b for b in blocks if b is not serve[0]], serve[0]


def run(code, cwd, env):
    env = {k: v for k, v in env.items() if k != "TF_USE_LEGACY_KERAS"}  # as a user's shell
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def run_page(data_dir, tmp_path, env, max_ratings=None):
    train, serve = page_blocks()
    assert PAGE_DATA in train[0] and PAGE_ROWS in train[0]
    code = "\n".join(train).replace(PAGE_DATA, repr(str(data_dir)))
    if max_ratings:  # the first ratings only, to keep the test short (2 x 1 epoch)
        code = code.replace(PAGE_ROWS, f"{PAGE_ROWS}[:{max_ratings}]")
    printed = run(code, tmp_path, env)
    # The export block printed its path, recall@10 and the chosen index parameters.
    path_line = next(line for line in printed.splitlines() if "exports/movielens/1" in line)
    recall = float(path_line.split()[1])
    served = run(serve + REPORT, tmp_path, env)
    assert "MODULES []" in served  # TensorFlow only
    result = json.loads(served.split("RESULT ", 1)[1])
    top, fresh = result["top"], result["fresh"]
    # K titles with and without exclusion; excluding the best two moves the rest up.
    assert len(top) == len(fresh) == 10 and "" not in top + fresh
    assert fresh[:8] == top[2:] and not set(fresh) & set(top[:2])
    return recall, path_line


def write_synthetic_movielens(path):
    """ml-latest-small's two files, in its format, 300 movies x 60 users (user 42 included).

    Like the real files: quoted titles with commas, a non-ASCII title, and one title held
    by two movie ids (the tutorial keys movies by title).
    """
    path.mkdir()
    rng = np.random.default_rng(0)
    titles = [f"Movie {j}, The ({1950 + j % 70})" for j in range(300)]
    titles[7] = "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    titles[8] = titles[9]
    with open(path / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        w.writerows([j + 1, t, "Drama|Comedy"] for j, t in enumerate(titles))
    with open(path / "ratings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for n in range(3000):
            user = int(rng.integers(1, 61))
            movie = (user * 5 + int(rng.integers(0, 20))) % 300 + 1
            w.writerow([user, movie, 4.0, 964982703 + n])


@pytest.mark.slow  # three TensorFlow processes (about a minute on 2 shared cores)
def test_page_runs_on_synthetic_movielens(tmp_path, subprocess_env):
    data = tmp_path / "ml-synthetic"
    write_synthetic_movielens(data)
    recall, _ = run_page(data, tmp_path, subprocess_env)
    assert recall == 1.0  # 299 titles: under exact_below=1_000, searched exactly


@pytest.mark.slow  # trains twice on 25,000 ratings (about a minute on 2 shared cores)
def test_page_runs_on_ml_latest_small(ml_latest_small, tmp_path, subprocess_env):
    # Every title (movies.csv) is indexed; the towers train on the first 25,000 ratings.
    recall, path_line = run_page(ml_latest_small, tmp_path, subprocess_env, 25_000)
    assert "nprobe" in path_line  # 9,737 titles over exact_below: the partitioned index
    assert recall >= 0.95
