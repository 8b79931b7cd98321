"""Serving at catalogue scale: each index kind exported, loaded and queried via its signature.

For every kind (brute_force, scann, partitioned) in one run: export a SavedModel over
the same catalogue (index built and tuned to --target_recall on held-out tuning
users), load it with `tf.saved_model.load` as a server would, and measure through
`serving_default`:

- build: index build + tuning seconds (from the export report; tuning = exact search on
  the tuning users + recall measurements), and the whole export (embedding, build,
  tracing, writing);
- size: the index's tensors and the SavedModel directory on disk;
- recall@10 against exact numpy search, on evaluation users distinct from the tuning
  users (an item counts when its exact score reaches the exact 10th score);
- single-query latency p50/p99 (one user per call, after warm-up);
- batched QPS (--batch_size users per call, for --qps_seconds).

With --reference (default), issue 16's yardstick is timed in the same run: one matmul
plus one `top_k` over the whole catalogue (a `tf.function` on the query embeddings, no
SavedModel), so "x reference" compares with the exact search before `brute_force`
selected its top by blocks ("x brute" compares with `brute_force` as it is now).

The catalogue (default 1M items x 64 dims) comes from a hierarchical mixture of
Gaussians on the unit sphere, the shape of trained retrieval embeddings (genres >
sub-topics > items) rather than uniform noise, on which no index beats brute force:
`genres` directions uniform on the sphere; each genre has `subtopics` sub-topic
directions normalize(genre + s1 * N(0, I)); an item is normalize(subtopic + s2 *
N(0, I)) with sub-topic popularity Zipf(0.7) (popular topics hold more items, so
partitions are unbalanced, as in real catalogues). A user query mixes a favourite
sub-topic (0.8) and another of the same genre (0.2) plus noise qs. With the defaults
(s1 = 0.1, s2 = 0.1, qs = 0.1) an exact inverted file with sqrt(n) cells needs about
1% of its cells for recall@10 = 0.95, close to what IVF needs on SIFT1M; larger
--item_noise makes the catalogue harder (0.15 with --query_noise=0.15 needs about 10x
more).

`--catalogue=hard` is the catalogue of issue 16, on which the partitioned index
needs several % of the data per query: `--centres` (1000) topic centres uniform on
the sphere with Zipf(`--zipf`, 1.0) popularity (the largest topic holds 13% of the
items), items normalize(centre + `--item_noise` N(0, I)), queries normalize(centre +
`--query_noise` N(0, I)) with the centre drawn by popularity. A query near the centre
of a large isotropic topic has its best items scattered over every cell of it.

The model is a real `TwoTowerModel`: the user tower is an id embedding (the
query vectors) followed by an identity projection and L2 normalization, so the
signature takes raw user ids.

Usage:
  python benchmarks/serving.py [--num_items=1000000 --dim=64 --k=100 --kinds=...]

Prints a table; nothing is asserted. Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from tfrecall._backend import keras, tf  # noqa: E402
from tfrecall.config import FeatureSpec, TowerConfig  # noqa: E402
from tfrecall.models import TwoTowerModel  # noqa: E402
from tfrecall.serving import export_embeddings  # noqa: E402
from tfrecall.serving.tuning import exact_top_k, recall_at_k  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_items", 1_000_000, "Catalogue size.")
flags.DEFINE_integer("dim", 64, "Embedding width.")
flags.DEFINE_integer("num_users", 3000, "Users: the first half tune the index, the rest "
                     "measure recall and latency.")
flags.DEFINE_integer("k", 100, "Items returned per query.")
flags.DEFINE_list("kinds", ["brute_force", "scann", "partitioned"], "Index kinds to measure.")
flags.DEFINE_float("target_recall", 0.95, "Recall@10 the approximate indexes are tuned to.")
flags.DEFINE_enum("catalogue", "topics", ["topics", "hard"],
                  "topics: genres > sub-topics > items; hard: Zipf-sized isotropic topics.")
flags.DEFINE_integer("centres", 1000, "Hard generator: topic centres.")
flags.DEFINE_float("zipf", 1.0, "Hard generator: Zipf exponent of topic sizes.")
flags.DEFINE_integer("genres", 64, "Generator: genres.")
flags.DEFINE_integer("subtopics", 32, "Generator: sub-topics per genre.")
flags.DEFINE_float("subtopic_noise", 0.1, "Generator: s1, sub-topic spread around its genre.")
flags.DEFINE_float("item_noise", 0.1, "Generator: s2, item spread around its sub-topic.")
flags.DEFINE_float("query_noise", 0.1, "Generator: qs, query noise.")
flags.DEFINE_integer("single_queries", 1000, "Single-user calls timed per kind.")
flags.DEFINE_integer("batch_size", 256, "Users per call for QPS.")
flags.DEFINE_float("qps_seconds", 5.0, "Seconds of batched calls per kind.")
flags.DEFINE_integer("seed", 0, "Generator seed.")
flags.DEFINE_bool("reference", True, "Also time the issue-16 reference exact search: one "
                  "matmul + one top_k over the whole catalogue (a tf.function on the query "
                  "embeddings, no SavedModel: it skips the user tower the exports run).")
flags.DEFINE_string("export_dir", None, "Where the exports go (default: a temp dir, removed).")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _sample_items(rng, n, centres, p, noise):
    """`(n, d)` unit items normalize(centres[a] + noise N(0, I)), a ~ p, in chunks."""
    d = centres.shape[1]
    items = np.empty((n, d), np.float32)
    for s in range(0, n, 262_144):
        m = min(n, s + 262_144) - s
        a = rng.choice(len(centres), size=m, p=p)
        items[s : s + m] = _unit(centres[a] + noise * rng.standard_normal((m, d), dtype=np.float32))
    return items


def generate(n, d, genres, subtopics, s1, s2, qs, num_queries, seed):
    """`(n, d)` items and `(num_queries, d)` queries, float32 unit rows (see module doc)."""
    rng = np.random.default_rng(seed)
    g = _unit(rng.standard_normal((genres, d), dtype=np.float32))
    sub = _unit(np.repeat(g, subtopics, 0)
                + s1 * rng.standard_normal((genres * subtopics, d), dtype=np.float32))
    t = len(sub)
    p = 1.0 / np.arange(1, t + 1) ** 0.7
    p = (p / p.sum())[rng.permutation(t)]
    items = _sample_items(rng, n, sub, p, s2)
    a = rng.choice(t, size=num_queries, p=p)
    b = (a // subtopics) * subtopics + rng.integers(0, subtopics, num_queries)
    q = _unit(0.8 * sub[a] + 0.2 * sub[b]
              + qs * rng.standard_normal((num_queries, d), dtype=np.float32))
    return items, q.astype(np.float32)


def generate_hard(n, d, centres, zipf, s2, qs, num_queries, seed):
    """`(n, d)` items and `(num_queries, d)` queries of the hard catalogue (module doc)."""
    rng = np.random.default_rng(seed)
    c = _unit(rng.standard_normal((centres, d), dtype=np.float32))
    p = 1.0 / np.arange(1, centres + 1) ** zipf
    p /= p.sum()
    items = _sample_items(rng, n, c, p, s2)
    b = rng.choice(centres, size=num_queries, p=p)
    q = _unit(c[b] + qs * rng.standard_normal((num_queries, d), dtype=np.float32))
    return items, q.astype(np.float32)


def query_model(queries: np.ndarray) -> TwoTowerModel:
    """A TwoTowerModel whose user tower maps "u<i>" to queries[i] exactly."""
    d = queries.shape[1]
    model = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=d)],
        [FeatureSpec("item_id", "id", embedding_dim=d)],
        tower=TowerConfig(hidden_units=(), output_dim=d),
    )
    users = np.array([f"u{i}" for i in range(len(queries))], object)
    model.adapt({"user_id": users}, {"item_id": np.array(["i0", "i1"], object)})
    model.user_tower({"user_id": tf.constant(["u0"])})
    model.item_tower({"item_id": tf.constant(["i0"])})
    layer = model.user_tower.encoder.feature_layers[0]
    table = np.zeros((layer.vocabulary_size, d), np.float32)
    # Row num_oov + j holds vocabulary[j] (ordered by the vocabulary, not by i).
    user_index = np.array([int(u[1:]) for u in layer.vocabulary])
    table[layer.num_oov_buckets :] = queries[user_index]
    layer.embeddings.assign(table)
    model.user_tower.projection.set_weights([np.eye(d, dtype=np.float32), np.zeros(d, np.float32)])
    return model


def measure(path, kind, items, users, queries, exact_scores):
    if kind == "scann":
        import scann  # noqa: F401  (registers the ScaNN ops before loading)
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures["serving_default"]
    row_of = {f"i{j}": j for j in range(len(items))}
    found = []
    for s in range(0, len(users), 256):
        ids = sig(user_id=tf.constant(users[s : s + 256]))["item_ids"].numpy()[:, :10]
        found.append([[row_of.get(i.decode(), -1) for i in r] for r in ids])
    recall = recall_at_k(np.concatenate(found), queries, items, exact_scores, 10)
    singles = [tf.constant([u]) for u in users]
    p50, p99, qps = time_calls(lambda x: sig(user_id=x)["item_ids"].numpy(), singles,
                               tf.constant(np.resize(users, FLAGS.batch_size)))
    return recall, p50, p99, qps


def time_calls(fn, singles, batch):
    """`(p50 ms, p99 ms, QPS)`: `fn` on one input of `singles` a call, then on `batch`."""
    for x in singles[:20]:  # warm-up
        fn(x)
    lat = []
    for i in range(FLAGS.single_queries):
        feed = singles[i % len(singles)]
        t = time.perf_counter()
        fn(feed)
        lat.append(time.perf_counter() - t)
    lat = np.array(lat) * 1e3
    fn(batch)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < FLAGS.qps_seconds or calls < 2:
        fn(batch)
        calls += 1
    qps = calls * len(batch) / (time.perf_counter() - t0)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), qps


def measure_reference(items, queries):
    """The exact search of issue 16's table: matmul + `top_k` over all n, K results."""
    db = tf.constant(items)

    @tf.function(input_signature=[tf.TensorSpec([None, items.shape[1]], tf.float32)])
    def search(q):
        return tf.math.top_k(tf.matmul(q, db, transpose_b=True), k=FLAGS.k).indices

    singles = [tf.constant(queries[i : i + 1]) for i in range(len(queries))]
    batch = tf.constant(np.resize(queries, (FLAGS.batch_size, queries.shape[1])))
    return time_calls(lambda x: search(x).numpy(), singles, batch)


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs pages at INFO
    tf.get_logger().setLevel("ERROR")
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores visible")
    t = time.time()
    if FLAGS.catalogue == "hard":
        items, queries = generate_hard(
            FLAGS.num_items, FLAGS.dim, FLAGS.centres, FLAGS.zipf, FLAGS.item_noise,
            FLAGS.query_noise, FLAGS.num_users, FLAGS.seed,
        )
    else:
        items, queries = generate(
            FLAGS.num_items, FLAGS.dim, FLAGS.genres, FLAGS.subtopics, FLAGS.subtopic_noise,
            FLAGS.item_noise, FLAGS.query_noise, FLAGS.num_users, FLAGS.seed,
        )
    half = FLAGS.num_users // 2
    users = np.array([f"u{i}" for i in range(FLAGS.num_users)])
    print(f"generated {FLAGS.num_items} x {FLAGS.dim} items, {FLAGS.num_users} users "
          f"in {time.time() - t:.1f}s")
    model = query_model(queries)
    item_ids = np.array([f"i{j}" for j in range(FLAGS.num_items)], object)
    t = time.time()
    _, exact_scores = exact_top_k(queries[half:], items, 10)
    print(f"exact top-10 of {FLAGS.num_users - half} evaluation users: {time.time() - t:.1f}s")
    base = FLAGS.export_dir or tempfile.mkdtemp(prefix="tfrecall-serving-bench-")
    rows = []
    try:
        for kind in FLAGS.kinds:
            t = time.time()
            path = export_embeddings(
                model, item_ids, items, os.path.join(base, kind), k=FLAGS.k, index=kind,
                tuning_queries=queries[:half], target_recall=FLAGS.target_recall,
                seed=FLAGS.seed, log=print,
            )
            export_s = time.time() - t
            info = path.info
            load = os.getloadavg()[0]
            recall, p50, p99, qps = measure(path, kind, items, users[half:], queries[half:],
                                            exact_scores)
            load = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
            report = info["index_report"]
            rows.append((kind, report["mode"], info["index_build_seconds"],
                         export_s, info["index_bytes"] / 2**20,
                         info["saved_model_bytes"] / 2**20, info["recall_at_10"], recall, p50,
                         p99, qps, report["params"], report["tuning_seconds"], load))
            print(rows[-1], flush=True)
        if FLAGS.reference:
            load = os.getloadavg()[0]
            p50, p99, qps = measure_reference(items, queries[half:])
            load = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
            rows.append(("reference: matmul + top_k", "exact", float("nan"), float("nan"),
                         items.nbytes / 2**20, float("nan"), 1.0, 1.0, p50, p99, qps, {},
                         float("nan"), load))
            print(rows[-1], flush=True)
    finally:
        if FLAGS.export_dir is None:
            shutil.rmtree(base, ignore_errors=True)

    bf_qps = next((r[10] for r in rows if r[0] == "brute_force"), float("nan"))
    scann_qps = next((r[10] for r in rows if r[0] == "scann"), float("nan"))
    ref_qps = next((r[10] for r in rows if r[0].startswith("reference")), float("nan"))
    header = ("index", "mode", "build s", "of it tuning s", "export s", "index MiB",
              "SavedModel MiB",
              "recall@10 tune", "recall@10 eval", "p50 ms", "p99 ms", "QPS", "x brute",
              "x reference", "x scann", "load")
    print()
    print(f"{FLAGS.catalogue} catalogue, {FLAGS.num_items} items x {FLAGS.dim} dims, "
          f"K={FLAGS.k}, batch {FLAGS.batch_size}, "
          f"target recall@10 {FLAGS.target_recall}, through serving_default")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = (r[0], r[1], f"{r[2]:.1f}", f"{r[12]:.1f}", f"{r[3]:.1f}", f"{r[4]:.0f}",
                 f"{r[5]:.0f}",
                 f"{r[6]:.4f}", f"{r[7]:.4f}", f"{r[8]:.2f}", f"{r[9]:.2f}", f"{r[10]:.0f}",
                 f"{r[10] / bf_qps:.1f}", f"{r[10] / ref_qps:.1f}", f"{r[10] / scann_qps:.2f}",
                 r[13])
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        print(f"{r[0]} params: {r[11]}")


if __name__ == "__main__":
    app.run(main)
