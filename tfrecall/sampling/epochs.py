"""The index pipeline every `tfrecall.sampling.dataset.TrainingSamples` view shares.

An epoch is a permutation of the example rows cut into batches; a view's ``make_batch``
turns each batch of row numbers and its seed into ``(x, y)``. Kept apart from the views so
that the views' module holds the sampling logic only.
"""

from __future__ import annotations

from typing import Callable, Optional

from tfrecall._backend import tf
from tfrecall.sampling.config import SamplingConfig


def epoch_batches(num_rows: int, batch_size: int, config: SamplingConfig,
                  make_batch: Callable, post: Optional[Callable], shard=(1, 0)
                  ) -> tf.data.Dataset:
    """Index pipeline: one epoch key per iteration -> permutation -> batches -> one map.

    ``Dataset.random(seed, rerandomize_each_iteration=True)`` gives each iteration
    (epoch) a new key, deterministically from the seed; the permutation and every
    batch's negatives are stateless functions of ``(key, batch number)``; a shard keeps
    its batch numbers (``Dataset.shard``) before any batch is built.
    """
    if num_rows == 0:
        raise ValueError("no training example: the view found nothing to build samples from")
    num_batches = num_rows // batch_size if config.drop_remainder else -(-num_rows // batch_size)
    if num_batches == 0:
        raise ValueError(f"drop_remainder with batch_size={batch_size} > {num_rows} examples "
                         "leaves no batch")
    static_batch = batch_size if config.drop_remainder else None

    def epoch(key):
        if config.shuffle:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(num_rows, dtype=tf.int64), seed=tf.stack([key, -1]))
        else:
            order = tf.range(num_rows, dtype=tf.int64)

        def rows_of(b):
            rows = order[b * batch_size:tf.minimum((b + 1) * batch_size, num_rows)]
            if static_batch is not None:
                rows = tf.ensure_shape(rows, [static_batch])
            return rows, tf.stack([key, b])

        return tf.data.Dataset.range(num_batches).shard(*shard).map(rows_of)

    keys = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).take(1)
    ds = keys.flat_map(epoch).map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True)
    if post is not None:
        ds = ds.map(post)  # sequential: it updates a stateful estimator in batch order
    return ds.prefetch(tf.data.AUTOTUNE)


__all__ = ["epoch_batches"]
