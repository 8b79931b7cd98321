"""Input-pipeline throughput of every sample builder beside the default model's training rate.

For the synthetic default world (with its ranker lists) and ml-latest-small (skipped
with a message when absent), prints samples/s and batches/s of each view/negative mix
of `tfrecall.sampling.dataset`, each timed over whole epochs (iterator creation included:
Keras makes one per epoch), and the training step rate of the recipe's default model
(in-batch softmax, the recipe's default batch) over 20 steps, fed once by batches held in
memory and once by the live input pipeline in the same process, interleaved (the real
question: does the model ever wait for data?). The acceptance bar: the default input
pipeline delivers >= 5x the batches the model consumes.

    python benchmarks/samples.py [--epochs=3] [--steps=20]

The machine is shared (2 cores, other jobs running): figures are noisy; each is the
best of ``--epochs`` timed passes after a warm-up pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np

import tfrecall  # noqa: F401  (Keras 2 before TensorFlow)
from tfrecall import recipe
from tfrecall._backend import tf
from tfrecall.data import synthetic
from tfrecall.io.movielens import read_movielens
from tfrecall.recipe.config import run_sampling, with_batch
from tfrecall.sampling.config import SamplingConfig
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore

ML_LATEST_SMALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-latest-small"

BUILDERS = [
    # First: the recipe's default (`tfrecall.recipe.config.run_sampling`), the reference.
    ("in_batch + uniform x256 (recipe default)", dict(negatives="in_batch,uniform",
                                                      num_negatives=256)),
    ("in_batch only", dict()),
    ("in_batch + uniform x1024 (mixed)", dict(negatives="in_batch,uniform", num_negatives=1024)),
    ("in_batch + popularity + hard", dict(negatives="in_batch,popularity,hard",
                                          num_negatives=1024)),
    ("in_batch, streaming log Q", dict(frequency="streaming")),
    ("pointwise 1:3 uniform", dict(view="pointwise")),
    ("pointwise 1:3 uniform+hard 1:1", dict(view="pointwise", negatives="uniform,hard",
                                            easy_hard_ratio=1.0)),
    ("pairwise random", dict(view="pairwise")),
    ("pairwise not_exposed", dict(view="pairwise", pairwise_mode="not_exposed")),
    ("pairwise head_tail", dict(view="pairwise", pairwise_mode="head_tail")),
    ("pairwise segments", dict(view="pairwise", pairwise_mode="segments")),
    ("listwise sampled L=8", dict(view="listwise")),
    ("listwise popularity L=8", dict(view="listwise", negatives="popularity")),
    ("listwise graded L=8", dict(view="listwise", list_mode="graded")),
    ("distill L=8 of top 400", dict(view="distill")),
]


def _setup(data, config: recipe.RecipeConfig):
    """The split, tables and stores, and `config` with the batch size a run would take."""
    train, _ = recipe.split_data(data, config)
    config = with_batch(config, int(train.interactions["positive"].sum()))
    catalogue, user_ids = data.item_catalogue(), data.user_ids()
    user_table = recipe.user_feature_table(data, train, user_ids, config)
    stores = (FeatureStore(user_table, "user_id", user_ids),
              FeatureStore(data.items, "item_id", catalogue))
    return config, train, catalogue, user_ids, user_table, stores


def _time_epochs(dataset, epochs: int):
    """Rows and batches per second over whole epochs, after a warm-up pass.

    Returns ``(rows/epoch, (rows/s, batches/s) with a new iterator per epoch (what
    ``model.fit(ds)`` does; best of ``epochs``), (rows/s, batches/s) over
    ``ds.repeat(epochs)`` (one iterator: ``model.fit(ds.repeat(), steps_per_epoch=n)``))``.
    """
    for _ in dataset:
        pass
    best, rows, batches = float("inf"), 0, 0
    for _ in range(epochs):
        start, rows, batches = time.perf_counter(), 0, 0
        for _, y in dataset:
            rows += int(y.shape[0])
            batches += 1
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    for _ in dataset.repeat(epochs):
        pass
    repeated = time.perf_counter() - start
    return rows, (rows / best, batches / best), (rows * epochs / repeated,
                                                  batches * epochs / repeated)


def train_rates(data, config: recipe.RecipeConfig, steps: int, repeats: int = 3):
    """Steps/s of the recipe's default model fed (a) the batches held in memory and (b) the
    live input pipeline (the recipe's own: samples, then history leave-one-out), the same
    model and the same number of steps, interleaved, medians. (b) / (a) below 1 means the
    model waits for its input: input and training share the cores, which a separate
    input-only rate cannot show."""
    from tfrecall._backend import keras
    from tfrecall.sampling.history import drop_candidates_from_history

    keras.utils.set_random_seed(config.seed)
    config, train, catalogue, user_ids, user_table, (users, items) = _setup(data, config)
    model = recipe.compiled_model(config, data, train, catalogue, user_table)
    live = TrainingSamples(train, catalogue, users, items,
                           dataclasses.replace(run_sampling(config, len(catalogue)),
                                               drop_remainder=True),
                           config.batch_size).dataset
    live = live.map(lambda x, y: (drop_candidates_from_history(x), y),
                    num_parallel_calls=tf.data.AUTOTUNE).repeat().prefetch(tf.data.AUTOTUNE)
    batches = list(live.take(steps))
    cached = tf.data.Dataset.from_tensor_slices(
        tf.nest.map_structure(lambda *t: tf.stack(t), *batches)).cache()
    runs = {"memory": [], "live": []}
    fits = {"memory": lambda: model.fit(cached, epochs=1, verbose=0),
            "live": lambda: model.fit(live, epochs=1, steps_per_epoch=steps, verbose=0)}
    for fit in fits.values():
        fit()  # trace + warm up
    for _ in range(repeats):
        for name, fit in fits.items():
            start = time.perf_counter()
            fit()
            runs[name].append(steps / (time.perf_counter() - start))
    return statistics.median(runs["memory"]), statistics.median(runs["live"]), runs


def bench(name: str, data, ranker, args) -> None:
    config, train, catalogue, _, _, (users, items) = _setup(data, recipe.RecipeConfig())
    print(f"\n### {name}: {train.num_interactions} training rows, "
          f"{int(train.interactions['positive'].sum())} positives, {len(catalogue)} items\n")
    print("| builder | build s | rows/epoch | samples/s (iterator per epoch) | batches/s | "
          "samples/s (repeat) | batches/s |")
    print("|---|---|---|---|---|---|---|")
    default = None
    for label, options in BUILDERS:
        try:
            start = time.perf_counter()
            samples = TrainingSamples(train, catalogue, users, items, SamplingConfig(**options),
                                      config.batch_size, ranker_lists=ranker)
            built = time.perf_counter() - start
        except ValueError as err:
            print(f"| {label} | n/a: {str(err)[:70]} | | | | | |", flush=True)
            continue
        rows, fresh, repeated = _time_epochs(samples.dataset, args.epochs)
        default = default or (fresh[1], repeated[1])
        print(f"| {label} | {built:.2f} | {rows} | {fresh[0]:,.0f} | {fresh[1]:,.1f} | "
              f"{repeated[0]:,.0f} | {repeated[1]:,.1f} |", flush=True)
    steps, live, runs = train_rates(data, recipe.RecipeConfig(), args.steps)
    print(f"\ndefault model training: {steps:.1f} steps/s on batches in memory "
          f"({steps * config.batch_size:,.0f} examples/s, batch {config.batch_size}); "
          f"{live:.1f} steps/s fed by the live pipeline in the same process (live / memory "
          f"{live / steps:.2f}; runs {[round(v, 1) for v in runs['memory']]} vs "
          f"{[round(v, 1) for v in runs['live']]})")
    for how, rate in (("iterator per epoch", default[0]), ("repeat", default[1])):
        ratio = rate / steps
        print(f"default input pipeline ({how}): {rate:.1f} batches/s = {ratio:.1f}x the "
              f"training step rate ({'meets' if ratio >= 5 else 'BELOW'} the 5x bar)",
              flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per builder")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    args = parser.parse_args()
    print("Input pipeline vs training step rate (2 shared CPU cores: noisy; best of "
          f"{args.epochs} passes).")
    cfg = recipe.RecipeConfig()
    world = recipe.synthetic_world(cfg)
    bench("synthetic default (+ ranker top-500 lists)", world.data,
          synthetic.ranker_lists(world, top_n=500), args)
    if (ML_LATEST_SMALL / "ratings.csv").exists():
        bench("ml-latest-small", read_movielens(ML_LATEST_SMALL), None, args)
    else:
        print(f"\nml-latest-small not found at {ML_LATEST_SMALL}: skipped")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
