"""The TFRS tutorial model served by tfrecall's exports vs TFRS' own BruteForce layer.

    python benchmarks/tfrs_serving.py [--data=../shared/data/ml-latest-small] [--epochs=1]
        [--extra_items=0] [--seconds=3] [--batch_size=256]

Trains the TFRS basic-retrieval tutorial model (`docs/from_tfrs.md`: user and title id
embeddings of 32, `tfrs.tasks.Retrieval`, batch 8192, Adagrad 0.1) on ml-latest-small,
then serves the same user tower over the same candidates from SavedModels loaded with
`tf.saved_model.load`, as a server would:

- `tfrs BruteForce`: `tfrs.layers.factorized_top_k.BruteForce(user_model)` indexed on
  the candidates and saved with `tf.saved_model.save` (the tutorial's export);
- `tfrecall brute_force`: `export_query_model(..., index="brute_force")`;
- `tfrecall partitioned @1.0` / `@0.95`: `index="partitioned"` tuned on every user to
  recall@10 1.0 (so the top 10 equals brute force's on every measured user) and 0.95.

Candidates are the 9,737 distinct titles; `--extra_items=N` adds N synthetic items, each
a trained title's embedding plus Gaussian noise (0.3 x the title's norm / sqrt(32) per
dimension), to show a catalogue where a scan of everything costs more. The partitioned
index is forced above `exact_below` either way.

For each server, on all 610 users: top-10 agreement with `tfrs BruteForce` (recall@10,
an item counting when its exact score reaches BruteForce's 10th score, and the share of
users with the identical set of 10 ids), QPS of single-user calls and of
`--batch_size`-user calls over `--seconds` each, and p50 latency of single calls. The
servers are timed interleaved (one round each, then again, `--rounds` times) and the
median QPS is reported with the ratio to BruteForce. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time

import numpy as np

import tfrecall  # noqa: F401  (Keras 2 before TensorFlow)
from tfrecall._backend import keras, tf
from tfrecall.serving import export_query_model

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                            "ml-latest-small")
K = 10


def read(data, name):
    with open(os.path.join(data, name), encoding="utf-8") as f:
        return list(csv.DictReader(f))


def train_tutorial_model(data, epochs):
    """The tutorial's towers, trained with `tfrs.tasks.Retrieval` on every rating."""
    import tensorflow_recommenders as tfrs

    titles = {row["movieId"]: row["title"] for row in read(data, "movies.csv")}
    rows = read(data, "ratings.csv")
    ratings = tf.data.Dataset.from_tensor_slices({
        "user_id": [row["userId"] for row in rows],
        "movie_title": [titles[row["movieId"]] for row in rows]})
    user_ids = np.unique([row["userId"] for row in rows])
    movie_titles = np.unique(list(titles.values()))
    keras.utils.set_random_seed(42)
    user_model = keras.Sequential([
        keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
        keras.layers.Embedding(len(user_ids) + 1, 32)])
    movie_model = keras.Sequential([
        keras.layers.StringLookup(vocabulary=movie_titles, mask_token=None),
        keras.layers.Embedding(len(movie_titles) + 1, 32)])

    class MovielensModel(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user_model, self.movie_model = user_model, movie_model
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]),
                             self.movie_model(features["movie_title"]))

    model = MovielensModel()
    model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=0.1))
    start = time.time()
    model.fit(ratings.shuffle(len(rows), seed=42).batch(8192), epochs=epochs, verbose=0)
    print(f"trained {epochs} epoch(s) on {len(rows):,} ratings in {time.time() - start:.1f}s")
    return user_model, movie_model, user_ids, movie_titles


def candidates(movie_model, movie_titles, extra_items, seed=0):
    """`(ids, embeddings)`: every title, plus `extra_items` noisy copies of random titles."""
    emb = movie_model(tf.constant(movie_titles)).numpy()
    ids = movie_titles.astype(object)
    if extra_items:
        rng = np.random.default_rng(seed)
        src = rng.integers(0, len(emb), extra_items)
        scale = 0.3 * np.linalg.norm(emb[src], axis=1, keepdims=True) / np.sqrt(emb.shape[1])
        extra = emb[src] + scale * rng.normal(size=(extra_items, emb.shape[1]))
        emb = np.concatenate([emb, extra.astype(np.float32)])
        ids = np.concatenate([ids, np.array([f"extra-{j}" for j in range(extra_items)], object)])
    return ids, emb


def tfrs_brute_force(user_model, ids, emb, path):
    """TFRS' BruteForce over the candidates, saved and loaded as the tutorial does."""
    import tensorflow_recommenders as tfrs

    index = tfrs.layers.factorized_top_k.BruteForce(user_model, k=K)
    index.index(tf.constant(emb), tf.constant(ids.astype(str)))
    index(tf.constant(["42"]))
    tf.saved_model.save(index, path)
    loaded = tf.saved_model.load(path)

    def query(users):
        scores, found = loaded(users)
        return found, scores

    return query


def tfrecall_server(path):
    signature = tf.saved_model.load(path).signatures["serving_default"]

    def query(users):
        out = signature(user_id=users)
        return out["item_ids"], out["scores"]

    return query


def decode(ids) -> np.ndarray:
    """`(B, K)` str from a tensor or array of UTF-8 bytes."""
    ids = ids.numpy() if isinstance(ids, tf.Tensor) else ids
    return np.array([[i.decode() for i in row] for row in ids], dtype=object)


def qps(query, users, batch, seconds):
    """Calls per second x batch over `seconds`, and the p50 latency of a call (ms)."""
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.choice(users, batch)) for _ in range(64)]
    for b in batches[:3]:
        query(b)  # warm-up
    times, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        query(batches[i % len(batches)])
        times.append(time.perf_counter() - t)
        i += 1
    return len(times) * batch / (time.perf_counter() - start), 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--extra_items", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    user_model, movie_model, user_ids, movie_titles = train_tutorial_model(args.data,
                                                                           args.epochs)
    ids, emb = candidates(movie_model, movie_titles, args.extra_items)
    print(f"candidates: {len(ids):,} ({len(movie_titles):,} titles + {args.extra_items:,} "
          f"synthetic), users: {len(user_ids)}")
    tmp = tempfile.mkdtemp(prefix="tfrs_serving_")
    try:
        measure(args, user_model, user_ids, ids, emb, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # 1M candidates: hundreds of MB per export


def measure(args, user_model, user_ids, ids, emb, tmp):
    """Exports, loads, checks and times every server; prints the table."""
    servers = {"tfrs BruteForce": tfrs_brute_force(user_model, ids, emb,
                                                   os.path.join(tmp, "tfrs"))}
    signature = tf.TensorSpec([None], tf.string, name="user_id")
    for name, kind, target in (("tfrecall brute_force", "brute_force", 1.0),
                               ("tfrecall partitioned @1.0", "partitioned", 1.0),
                               ("tfrecall partitioned @0.95", "partitioned", 0.95)):
        path = export_query_model(
            user_model, os.path.join(tmp, name.split()[1] + str(target)), ids, emb, k=K,
            index=kind, input_signature=signature, tuning_queries=user_ids,
            target_recall=target, exact_below=1_000)
        print(f"{name}: build {path.info['index_build_seconds']:.2f}s, "
              f"params {path.info['index_report']['params']}")
        servers[name] = tfrecall_server(path)

    users = tf.constant(user_ids)
    ref_ids, ref_scores = (t.numpy() for t in servers["tfrs BruteForce"](users))
    user_emb = user_model(users).numpy()
    row = {i: r for r, i in enumerate(ids.astype(str))}
    quality = {}
    for name, query in servers.items():
        found = decode(query(users)[0])
        rows = np.vectorize(row.get)(found)
        scores = np.einsum("qd,qkd->qk", user_emb, emb[rows])
        recall = float((scores >= ref_scores[:, K - 1 : K] - 1e-4).mean())
        same = float(np.mean([set(a) == set(b) for a, b in
                              zip(found, decode(ref_ids), strict=True)]))
        quality[name] = (recall, same)

    timings = {name: {"single": [], "batch": [], "p50": []} for name in servers}
    for _ in range(args.rounds):  # interleaved rounds: load on the machine hits every server
        for name, query in servers.items():
            single, p50 = qps(query, user_ids, 1, args.seconds)
            batched, _ = qps(query, user_ids, args.batch_size, args.seconds)
            timings[name]["single"].append(single)
            timings[name]["batch"].append(batched)
            timings[name]["p50"].append(p50)

    base = {m: np.median(timings["tfrs BruteForce"][m]) for m in ("single", "batch")}
    print(f"\n{'server':28s} {'recall@10':>9s} {'same top10':>10s} {'QPS b=1':>9s} "
          f"{'x BF':>6s} {'p50 ms':>7s} {f'QPS b={args.batch_size}':>10s} {'x BF':>6s}")
    for name in servers:
        t = {m: float(np.median(v)) for m, v in timings[name].items()}
        print(f"{name:28s} {quality[name][0]:9.4f} {quality[name][1]:10.3f} "
              f"{t['single']:9.0f} {t['single'] / base['single']:6.2f} {t['p50']:7.2f} "
              f"{t['batch']:10.0f} {t['batch'] / base['batch']:6.2f}")


if __name__ == "__main__":
    main()
