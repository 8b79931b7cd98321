"""ItemCF at catalogue scale: fit time, peak memory and scoring time on a synthetic log.

Builds a power-law interaction log (default 100k items x 200k users x 2M interactions;
item and user activity drawn from Zipf-like laws p(rank) ~ rank^-exponent, ranks
shuffled so popular items are spread over the index range), fits `ItemCF` and scores
batches of users. Dense alternatives for comparison: a users x items float32 matrix is
num_users * num_items * 4 bytes (80 GB at the defaults), items x items 40 GB.

Fit cost grows with P = sum over users of (distinct items)^2, printed below; the user
exponent controls it (0.5 -> P ~ 4e7, 0.8 -> P ~ 6e8 at the default sizes).

Usage:
  python benchmarks/itemcf_scale.py [--num_items=100000 --num_users=200000 ...]

Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from tfrecall.evaluation.baselines import ItemCF  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_items", 100_000, "Catalogue size.")
flags.DEFINE_integer("num_users", 200_000, "Number of users.")
flags.DEFINE_integer("num_interactions", 2_000_000, "Interaction rows drawn (with repeats).")
flags.DEFINE_float("item_exponent", 1.0, "Zipf exponent of item popularity.")
flags.DEFINE_float("user_exponent", 0.5, "Zipf exponent of user activity.")
flags.DEFINE_integer("num_neighbors", 200, "ItemCF neighbours kept per item.")
flags.DEFINE_integer("num_score_users", 4096, "Users scored for the timing.")
flags.DEFINE_integer("batch_size", 512, "Users per score call (evaluate_ranking's default).")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic log.")


def _zipf(rng: np.random.Generator, n: int, exponent: float, size: int) -> np.ndarray:
    """`size` draws from p(rank) ~ rank^-exponent over n ids, ranks shuffled."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return rng.permutation(n)[rng.choice(n, size, p=p / p.sum())]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv):
    del argv
    rng = np.random.default_rng(FLAGS.seed)
    items = _zipf(rng, FLAGS.num_items, FLAGS.item_exponent, FLAGS.num_interactions)
    users = _zipf(rng, FLAGS.num_users, FLAGS.user_exponent, FLAGS.num_interactions)
    pairs = np.unique(users.astype(np.int64) * FLAGS.num_items + items)
    degree = np.bincount(pairs // FLAGS.num_items, minlength=FLAGS.num_users)
    print(f"log: {FLAGS.num_items} items x {FLAGS.num_users} users, "
          f"{FLAGS.num_interactions} rows, {len(pairs)} distinct pairs, "
          f"{int((np.bincount(pairs % FLAGS.num_items) > 0).sum())} items with data, "
          f"max user items {degree.max()}, P = sum d_u^2 = {(degree.astype(float) ** 2).sum():.3g}")
    del pairs, degree
    print(f"RSS before fit: {_rss_mb():.0f} MB (imports incl. TensorFlow + log), "
          f"peak so far {_peak_rss_mb():.0f} MB")

    cf = ItemCF(num_neighbors=FLAGS.num_neighbors)
    t0 = time.perf_counter()
    cf.fit(users, items, FLAGS.num_users, FLAGS.num_items)
    fit_s = time.perf_counter() - t0
    model_mb = (cf.neighbor_items.nbytes + cf.neighbor_weights.nbytes
                + cf.neighbor_indptr.nbytes) / 2**20
    print(f"fit: {fit_s:.1f} s, peak RSS {_peak_rss_mb():.0f} MB, "
          f"{len(cf.neighbor_items)} neighbour entries ({model_mb:.0f} MB)")

    active = np.flatnonzero(np.bincount(users, minlength=FLAGS.num_users))
    chosen = rng.choice(active, min(FLAGS.num_score_users, len(active)), replace=False)
    t0 = time.perf_counter()
    for start in range(0, len(chosen), FLAGS.batch_size):
        scores = cf.score(chosen[start:start + FLAGS.batch_size])
    score_s = time.perf_counter() - t0
    print(f"score: {1000 * score_s / len(chosen):.2f} s per 1000 users "
          f"(batches of {FLAGS.batch_size}, output {scores.nbytes / 2**20:.0f} MB per batch), "
          f"peak RSS {_peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    app.run(main)
