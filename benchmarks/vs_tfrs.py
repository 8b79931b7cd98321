"""tfrecall vs the TFRS basic-retrieval recipe, same data, same split, one invocation.

    python benchmarks/vs_tfrs.py [--data=../shared/data/ml-latest-small] [--epochs=3]

Both train user and item id embeddings of 32 with in-batch softmax (TFRS:
`tfrs.tasks.Retrieval`, SUM-reduced categorical cross-entropy; tfrecall: `SoftmaxLoss`
with reduction="sum" on a bare-embedding `TwoTowerModel`, dot product, temperature 1, no
log Q, no accidental-hit masking, as TFRS' defaults), batch 8192, Adagrad 0.1. tfrecall
runs twice: its default fused in-batch softmax (`tfrecall.losses.in_batch`, no (B, B)
matrix) and, as the ablation, the dense path (`fused_in_batch=False`). Prints
examples/s, wall time and held-out Recall@10/50/100 (random 80/20 split, seed 42, every
rating an interaction, training items excluded) for both, and the ratios. Then runs the
default tfrecall recipe (`python -m pipelines.train` defaults) for its time-to-quality.

Both sides read the same cached `tf.data` batches (the TFRS tutorial's shuffle, batch,
cache), so the table varies the model and its loss kernel only; the end-to-end line
after it is the default recipe as a user runs it (its own pipeline, validation, refit).

A fit here is ~30 steps of ~0.3 s, so one timing moves +-30% with whatever else the two
cores do; `--repeats` (default 3) fits every model that many times, interleaved (TFRS,
tfrecall, dense, TFRS, ...), each from a fresh model, and reports the median time and
the ratio of medians beside every per-round ratio. Quality is the same in every round
(same seed), and is reported from the first.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import tfrecall  # noqa: F401  (Keras 2 before TensorFlow)
from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec
from tfrecall.data import splits
from tfrecall.evaluation.harness import evaluate_embeddings_on, make_eval_set
from tfrecall.io.readers import load_data
from tfrecall.losses import SoftmaxLoss
from tfrecall.models import Tower, TwoTowerModel
from tfrecall.recipe import RecipeConfig, run

KS = (10, 50, 100)
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                            "ml-latest-small")


def tfrs_retrieval(user_ids, item_ids, dim):
    """The TFRS basic-retrieval tutorial model, without the FactorizedTopK metric in fit."""
    # Imported here, never at the top: an import sorter would put it before tfrecall,
    # and TFRS refuses to load once TensorFlow has resolved Keras 3.
    import tensorflow_recommenders as tfrs

    class TFRSRetrieval(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user_model = keras.Sequential([
                keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
                keras.layers.Embedding(len(user_ids) + 1, dim)])
            self.item_model = keras.Sequential([
                keras.layers.StringLookup(vocabulary=item_ids, mask_token=None),
                keras.layers.Embedding(len(item_ids) + 1, dim)])
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]),
                             self.item_model(features["item_id"]))

    return TFRSRetrieval()


def timed_fit(model, dataset, epochs):
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed fits per model, interleaved; medians are reported")
    parser.add_argument("--xla", type=int, default=0,
                        help="1: tfrecall's (B, B) scores and loss through XLA")
    args = parser.parse_args()
    if not os.path.exists(args.data):
        raise SystemExit(f"data not found: {args.data} (needs ../shared/data/ml-latest-small)")

    data = load_data(args.data)
    train, test = splits.random_split(data, 0.2, 42)
    users, catalogue = data.user_ids(), data.item_catalogue()
    eval_set = make_eval_set(train, test, users, catalogue)
    pos = train.interactions["positive"]
    u_train = train.interactions["user_id"][pos].astype(str)
    i_train = train.interactions["item_id"][pos].astype(str)
    n = len(u_train)
    train_users = np.unique(u_train)
    print(f"data: {data.name}, {n} training interactions, {len(users)} users, "
          f"{len(catalogue)} items; batch {args.batch_size}, {args.epochs} epochs, "
          f"Adagrad 0.1, dim {args.dim}; cores: {os.cpu_count()}")

    # --- One pipeline for both sides (the TFRS tutorial's: shuffle, batch, cache), so
    # only the model and its loss kernel differ. tfrecall reads the same batches in its
    # layout (a map before the cache: no per-step cost).
    pairs = (tf.data.Dataset.from_tensor_slices({"user_id": u_train, "item_id": i_train})
             .shuffle(100_000, seed=args.seed).batch(args.batch_size).cache())
    as_tfrecall = pairs.map(lambda b: ({"user": {"user_id": b["user_id"]},
                                        "items": {"item_id": b["item_id"][:, tf.newaxis]}},
                                       tf.ones_like(b["item_id"], tf.float32)[:, tf.newaxis])
                            ).cache()

    def tfrs_run():
        keras.utils.set_random_seed(args.seed)
        model = tfrs_retrieval(train_users, catalogue.astype(str), args.dim)
        model.compile(optimizer=keras.optimizers.Adagrad(0.1))
        seconds = timed_fit(model, pairs, args.epochs)
        return seconds, evaluate_embeddings_on(
            eval_set, model.user_model(users.astype(str)).numpy(),
            model.item_model(catalogue.astype(str)).numpy(), KS)

    # --- tfrecall, configured identically ----------------------------------------------
    def tower(name, key):
        return Tower([FeatureSpec(key, "id", embedding_dim=args.dim)], hidden_units=(),
                     output_dim=args.dim, normalize=False, projection=False, name=name)

    from tfrecall.models.embed import embed_items, embed_users

    def ours(fused):
        keras.utils.set_random_seed(args.seed)
        model = TwoTowerModel(tower("user_tower", "user_id"), tower("item_tower", "item_id"),
                              similarity="dot", temperature=1.0, in_batch_negatives=True,
                              xla_in_batch=bool(args.xla), fused_in_batch=fused,
                              item_id_feature="no_masking")  # TFRS keeps accidental hits
        model.adapt({"user_id": train_users.astype(object)}, {"item_id": catalogue})
        model.compile(optimizer=keras.optimizers.Adagrad(0.1),
                      loss=SoftmaxLoss(reduction="sum", jit_compile=bool(args.xla)))
        seconds = timed_fit(model, as_tfrecall, args.epochs)
        return seconds, evaluate_embeddings_on(
            eval_set, embed_users(model, {"user_id": users}),
            embed_items(model, {"item_id": catalogue}), KS)

    runs = {"TFRS basic retrieval": tfrs_run,
            "tfrecall, same config": lambda: ours(True),
            "tfrecall, dense (B, B) path (ablation)": lambda: ours(False)}
    times = {name: [] for name in runs}
    quality = {}
    for _ in range(args.repeats):
        for name, fit in runs.items():
            seconds, metrics = fit()
            times[name].append(seconds)
            quality.setdefault(name, metrics)
    median = {name: float(np.median(t)) for name, t in times.items()}
    print(f"\n| run | examples/s (median of {args.repeats}) | fit s (median) | fit s (each) "
          "| R@10 | R@50 | R@100 |")
    print("|---|---|---|---|---|---|---|")
    for name in runs:
        m = quality[name]
        each = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"| {name} | {n * args.epochs / median[name]:,.0f} | {median[name]:.1f} | "
              f"{each} | {m['recall@10']:.4f} | {m['recall@50']:.4f} | {m['recall@100']:.4f} |")
    tfrs_name, ours_name, dense_name = runs
    per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(times[tfrs_name], times[ours_name],
                                                          strict=True))
    print(f"\ndense-path ablation: {median[tfrs_name] / median[dense_name]:.2f}x TFRS")
    print(f"speed ratio tfrecall/TFRS: {median[tfrs_name] / median[ours_name]:.2f}x "
          f"(ratio of medians; per round: {per_round}); R@100 difference: "
          f"{quality[ours_name]['recall@100'] - quality[tfrs_name]['recall@100']:+.4f}")

    # --- end to end: the default recipe as a user runs it against the TFRS tutorial ------
    # recipe, interleaved, each from scratch (the tutorial: the fit above, its own
    # pipeline; the default recipe: its own pipeline, validation and refit).
    walls, trains, recalls, tfrs_times = [], [], [], []
    for _ in range(args.repeats):
        seconds, _ = tfrs_run()
        tfrs_times.append(seconds)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run(RecipeConfig.from_flat(interactions=args.data, model_dir=tmp,
                                                export=False, baselines=("popularity", "itemcf"),
                                                verbose=0), log=lambda *_: None)
            walls.append(time.perf_counter() - start)
        trains.append(result.train_seconds)
        recalls.append(result.metrics["recall@100"])
    itemcf = result.baselines["itemcf"]["recall@100"]
    tutorial = quality[tfrs_name]["recall@100"]
    print(f"\nend to end, {args.repeats} interleaved rounds (medians): default recipe R@100 "
          f"{np.median(recalls):.4f} (each {', '.join(f'{r:.4f}' for r in recalls)}; ItemCF "
          f"{itemcf:.4f}) in {np.median(trains):.1f} s of training, {np.median(walls):.1f} s "
          f"wall (each {', '.join(f'{w:.1f}' for w in walls)}); TFRS tutorial R@100 "
          f"{tutorial:.4f} in {np.median(tfrs_times):.1f} s of fit (each "
          f"{', '.join(f'{t:.1f}' for t in tfrs_times)}); quality ratio "
          f"{np.median(recalls) / tutorial:.2f}x")


if __name__ == "__main__":
    main()
