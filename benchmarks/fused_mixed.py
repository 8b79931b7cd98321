"""The default recipe's training step with and without the fused mixed kernel.

One thing varies: `fused_in_batch` (the blocked in-batch softmax over the batch's
positives plus the S = 256 shared uniform negatives, vs the dense (B, B + S) logits ->
SoftmaxLoss path). Same model (the recipe's towers, history feature), same batches: the
recipe's own pipeline (`TrainingSamples` of `run_sampling`) on the synthetic default,
materialized in memory first, so the timed fits measure the training step, not the
input. Runs are interleaved (fused, dense, fused, ...) and medians reported.

    python benchmarks/fused_mixed.py [--batches=128,1024] [--repeats=5] [--steps=40]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tfrecall  # noqa: E402,F401  (Keras 2 before TensorFlow)
from tfrecall import recipe  # noqa: E402
from tfrecall._backend import keras, tf  # noqa: E402
from tfrecall.recipe.config import run_sampling  # noqa: E402
from tfrecall.sampling.dataset import TrainingSamples  # noqa: E402
from tfrecall.sampling.features import FeatureStore  # noqa: E402
from tfrecall.sampling.history import drop_candidates_from_history  # noqa: E402


def batches_of(config, data, steps):
    train, _ = recipe.split_data(data, config)
    catalogue, user_ids = data.item_catalogue(), data.user_ids()
    user_table = recipe.user_feature_table(data, train, user_ids, config)
    samples = TrainingSamples(
        train, catalogue, FeatureStore(user_table, "user_id", user_ids),
        FeatureStore(data.items, "item_id", catalogue),
        dataclasses.replace(run_sampling(config, len(catalogue)), drop_remainder=True),
        config.batch_size)
    ds = samples.dataset.map(lambda x, y: (drop_candidates_from_history(x), y))
    batches = list(ds.repeat().take(steps))
    cached = tf.data.Dataset.from_tensor_slices(
        tf.nest.map_structure(lambda *t: tf.stack(t), *batches)).cache()
    return train, catalogue, user_ids, user_table, cached


def examples_per_second(config, data, setup, steps):
    train, catalogue, user_ids, user_table, cached = setup
    keras.utils.set_random_seed(config.seed)
    model = recipe.compiled_model(config, data, train, catalogue, user_table)
    assert model._fuses(next(iter(cached))[0]) == config.fused_in_batch
    model.fit(cached, epochs=1, verbose=0)  # trace + warm up
    start = time.perf_counter()
    model.fit(cached, epochs=1, verbose=0)
    return steps * config.batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="128,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    data = recipe.synthetic_world(recipe.RecipeConfig()).data
    print("| batch | fused examples/s (median) | dense examples/s (median) | fused / dense | "
          "fused runs | dense runs |")
    print("|---|---|---|---|---|---|")
    for batch in (int(b) for b in args.batches.split(",")):
        base = recipe.RecipeConfig.from_flat(batch_size=batch)
        setup = batches_of(base, data, args.steps)
        runs = {True: [], False: []}
        for _ in range(args.repeats):
            for fused in (True, False):
                config = dataclasses.replace(base, fused_in_batch=fused)
                runs[fused].append(examples_per_second(config, data, setup, args.steps))
        f, d = statistics.median(runs[True]), statistics.median(runs[False])
        print(f"| {batch} | {f:,.0f} | {d:,.0f} | {f / d:.2f} | "
              f"{', '.join(f'{v:,.0f}' for v in runs[True])} | "
              f"{', '.join(f'{v:,.0f}' for v in runs[False])} |", flush=True)


if __name__ == "__main__":
    main()
