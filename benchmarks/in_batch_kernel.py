"""The in-batch softmax kernel against the dense path, kernel vs kernel on the same input.

One thing varies: how the per-row loss and its gradients are computed from the same
(B, D) queries and (G, D) candidates with per-candidate log Q and accidental-hit keys:
`tfrecall.losses.in_batch.in_batch_softmax` (blocked, no (B, G) tensor) against
``q @ c.T - log Q``, the hit mask, and TensorFlow's fused dense softmax cross-entropy.
Both as `tf.function`s, forward + backward, the first call (tracing) excluded;
interleaved runs, medians.

    python benchmarks/in_batch_kernel.py [--sizes=1024,8192] [--dim=32] [--repeats=5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import tfrecall  # noqa: E402,F401  (Keras 2 before TensorFlow)
from tfrecall._backend import tf  # noqa: E402
from tfrecall.losses.in_batch import in_batch_softmax  # noqa: E402
from tfrecall.losses.lists import MIN_FLOAT  # noqa: E402


def dense_loss(q, c, log_q, keys):
    logits = tf.matmul(q, c, transpose_b=True) - log_q[tf.newaxis, :]
    eye = tf.eye(tf.shape(q)[0], tf.shape(c)[0], dtype=tf.bool)
    hits = tf.logical_and(tf.equal(keys[:, tf.newaxis], keys[tf.newaxis, :]), ~eye)
    logits = tf.where(hits, MIN_FLOAT, logits)
    labels = tf.eye(tf.shape(q)[0], tf.shape(c)[0])
    return tf.nn.softmax_cross_entropy_with_logits(labels, logits)


def step_fn(loss_fn):
    @tf.function
    def step(q, c, log_q, keys):
        with tf.GradientTape() as tape:
            tape.watch([q, c])
            loss = tf.reduce_sum(loss_fn(q, c, log_q, keys))
        dq, dc = tape.gradient(loss, [q, c])
        return loss, dq, dc

    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1024,8192")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fused = step_fn(lambda q, c, lq, k: in_batch_softmax(q, c, None, lq, k, k))
    dense = step_fn(dense_loss)
    print("| B = G | D | fused fwd+bwd s (median) | dense fwd+bwd s (median) | dense / fused |"
          " max abs loss difference |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(0)
        q = tf.constant(rng.normal(size=(size, args.dim)) / 4, tf.float32)
        c = tf.constant(rng.normal(size=(size, args.dim)) / 4, tf.float32)
        log_q = tf.constant(np.log(rng.uniform(0.01, 1.0, size)), tf.float32)
        keys = tf.constant(rng.integers(0, size // 2, size), tf.int64)  # accidental hits
        a, b = fused(q, c, log_q, keys), dense(q, c, log_q, keys)  # trace both
        diff = abs(float(a[0]) - float(b[0]))
        times = {"fused": [], "dense": []}
        for _ in range(args.repeats):
            for name, fn in (("fused", fused), ("dense", dense)):
                start = time.perf_counter()
                out = fn(q, c, log_q, keys)
                _ = out[1].numpy()  # wait for the result
                times[name].append(time.perf_counter() - start)
        f, d = statistics.median(times["fused"]), statistics.median(times["dense"])
        print(f"| {size} | {args.dim} | {f:.3f} | {d:.3f} | {d / f:.2f} | {diff:.2e} |",
              flush=True)


if __name__ == "__main__":
    main()
