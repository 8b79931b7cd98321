"""Streaming a log larger than memory: rows/s and peak RSS of the one-pass statistics and
of `csv_dataset`, on generated interaction logs of several sizes (issue 7).

    python benchmarks/streaming.py [--rows=1000000,5000000] [--batch_size=8192]

Each measurement runs in a fresh process, so its peak RSS (`ru_maxrss`) is its own; the
first line is the RSS of a process that only imported TensorFlow and tfrecall, the
floor every measurement starts from. The log is written to a temporary directory a
chunk at a time and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

EVENTS = np.array(["impression", "impression", "impression", "click", "click", "cart", "order"])


def generate(path: str, rows: int, users: int, items: int, seed: int = 0) -> None:
    """Writes `rows` interactions, 200k at a time: Zipf items, uniform users."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.1
    popularity /= popularity.sum()
    with open(path, "w", encoding="utf-8") as f:
        f.write("user_id,item_id,event,timestamp,ranker_score\n")
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            user = rng.integers(0, users, n)
            item = rng.choice(items, n, p=popularity)
            event = EVENTS[rng.integers(0, len(EVENTS), n)]
            stamp = 1_700_000_000 + start + np.arange(n)
            score = np.round(rng.normal(size=n), 4)
            columns = (user.tolist(), item.tolist(), event.tolist(), stamp.tolist(),
                       score.tolist())
            f.write("".join(f"u{u},i{i},{e},{t},{s}\n"
                            for u, i, e, t, s in zip(*columns, strict=True)))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(phase: str, path: str, batch_size: int) -> dict:
    """One phase in this process: rows, seconds, peak RSS."""
    from tfrecall.io import streaming
    from tfrecall.io.stats import StreamingStats

    def new_stats():
        return StreamingStats(strings=["user_id", "item_id"], numbers=["timestamp",
                                                                       "ranker_score"])

    start = time.perf_counter()
    rows, extra = 0, {}
    if phase == "stats_python":  # the readers' chunked parser and checks
        stats = streaming.scan_interactions_csv(path, new_stats())
        rows = stats.rows
    elif phase == "csv_dataset":  # one pass of the tf.data pipeline, tensors as fit sees them
        with streaming.data_errors():
            for batch in streaming.csv_dataset(path, batch_size):
                rows += int(batch["user_id"].shape[0])
    elif phase == "stats_tf":  # the tf.data pipeline feeding the statistics
        stats = streaming.scan_dataset(streaming.csv_dataset(path, batch_size), new_stats())
        rows = stats.rows
    if phase.startswith("stats"):
        extra = {"users": len(stats.token_stats("user_id")),
                 "items": len(stats.token_stats("item_id")),
                 "exact": stats.token_stats("item_id").exact}
    seconds = time.perf_counter() - start
    return {"phase": phase, "rows": rows, "seconds": seconds, "rss_mb": _peak_rss_mb(), **extra}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000000,5000000")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--batch_size", type=int, default=8192)
    parser.add_argument("--phases", default="stats_python,csv_dataset,stats_tf")
    parser.add_argument("--child", nargs=3, metavar=("PHASE", "PATH", "BATCH"))
    args = parser.parse_args()
    if args.child:
        import tfrecall  # noqa: F401
        phase, path, batch = args.child
        if phase == "import":
            from tfrecall.io import streaming  # noqa: F401
            print(json.dumps({"phase": "import", "rss_mb": _peak_rss_mb()}))
        else:
            print(json.dumps(measure(phase, path, int(batch))))
        return
    print(f"floor (import TF + tfrecall): peak RSS {_child('import', '-', '0')['rss_mb']:.0f} MB")
    print("| rows | phase | rows/s | seconds | peak RSS MB | file MB |")
    print("|---|---|---|---|---|---|")
    for rows in [int(r) for r in args.rows.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "log.csv")
            generate(path, rows, args.users, args.items)
            size = os.path.getsize(path) / 2**20
            for phase in args.phases.split(","):
                r = _child(phase, path, str(args.batch_size))
                assert r["rows"] == rows, r
                print(f"| {rows:,} | {phase} | {rows / r['seconds']:,.0f} | {r['seconds']:.1f} | "
                      f"{r['rss_mb']:.0f} | {size:.0f} |", flush=True)


if __name__ == "__main__":
    main()
