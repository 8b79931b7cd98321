"""Negative sampling strategies on the synthetic world: held-out Recall@K, same model and epochs.

Rows: in-batch negatives without and with the log Q correction, mixed negatives
(in-batch + shared uniform negatives in one softmax, each column corrected by its
mixture log Q), mixed + popularity, and mixed + hard negatives (ranker ranks 100-500
at EBR's 100:1 easy:hard ratio). Every row trains the recipe's default two-tower model
(same towers, optimizer, loss, seed and epochs) on the same (dense) loss path, so
train seconds compare strategies, not kernels. Metrics: held-out Recall@10/50/100 over the full
catalogue with training items excluded, and, since the world's ground truth is known,
"oracle@100": the share of each user's 100 truly best unseen items (by the hidden
affinity) that the model's top 100 contains.

    python benchmarks/negatives.py [--epochs=5] [--seeds=0,1]

The machine is shared (2 cores): train seconds are noisy; metrics are seeded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tfrecall  # noqa: F401  (Keras 2 before TensorFlow)
from tfrecall import recipe
from tfrecall._backend import keras
from tfrecall.data import synthetic
from tfrecall.evaluation.harness import evaluate_model, make_eval_set
from tfrecall.models import TwoTowerModel
from tfrecall.models.embed import embed_items, embed_users
from tfrecall.recipe.config import with_batch
from tfrecall.sampling.config import SamplingConfig
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore

STRATEGIES = [
    ("in-batch", dict(log_q=False)),
    ("in-batch + log Q", dict()),
    ("mixed: in-batch + 1024 uniform", dict(negatives="in_batch,uniform", num_negatives=1024)),
    ("mixed: in-batch + 1024 popularity^.75",
     dict(negatives="in_batch,popularity", num_negatives=1024)),
    ("mixed + hard (ranker 100-500, 100:1)",
     dict(negatives="in_batch,uniform,hard", num_negatives=1024)),
]


def oracle_overlap(world, train, user_ids, catalogue, user_emb, item_emb, k=100) -> float:
    """Mean share of each user's true top-k unseen items found in the model's top k."""
    truth = world.true_affinity[world.user_rows(user_ids)][:, world.item_rows(catalogue)]
    scores = user_emb @ item_emb.T
    inter = train.interactions
    seen_u = {u: i for i, u in enumerate(user_ids.tolist())}
    seen_i = {v: i for i, v in enumerate(catalogue.tolist())}
    pos = inter["positive"]
    rows = np.fromiter((seen_u[u] for u in inter["user_id"][pos]), np.int64)
    cols = np.fromiter((seen_i[i] for i in inter["item_id"][pos]), np.int64)
    truth[rows, cols] = -np.inf
    scores[rows, cols] = -np.inf
    top_true = np.argpartition(-truth, k, axis=1)[:, :k]
    top_model = np.argpartition(-scores, k, axis=1)[:, :k]
    hits = (top_model[:, :, None] == top_true[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(hits / k))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=recipe.RecipeConfig().epochs)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--only", default="", help="comma-separated row numbers (1-based)")
    args = parser.parse_args()
    config = recipe.RecipeConfig.from_flat(epochs=args.epochs)
    world = recipe.synthetic_world(config)
    ranker = synthetic.ranker_lists(world, top_n=500)
    data = world.data
    train, test = recipe.split_data(data, config)
    # The batch size and learning rate a run of this log takes.
    config = with_batch(config, int(train.interactions["positive"].sum()))
    catalogue, user_ids = data.item_catalogue(), data.user_ids()
    user_table = recipe.user_feature_table(data, train, user_ids, config)
    item_table = recipe.entity_table(data.items, catalogue, "item_id")
    user_specs, item_specs = recipe.build_specs(data, config)
    # The recipe's item id vocabulary: items with item_id_min_count training positives.
    item_specs, item_adapt = recipe.item_adapt_table(item_specs, item_table, train,
                                                     log=lambda *_: None)
    train_users = np.isin(user_ids, np.unique(train.interactions["user_id"]))
    user_adapt = {k: v[train_users] for k, v in user_table.items()}
    users = FeatureStore(user_table, "user_id", user_ids)
    items = FeatureStore(data.items, "item_id", catalogue)
    eval_set = make_eval_set(train, test, user_ids, catalogue, True)
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = {int(i) for i in args.only.split(",") if i} or set(range(1, len(STRATEGIES) + 1))

    print(f"Synthetic default world: {len(user_ids)} users, {len(catalogue)} items, "
          f"{int(train.interactions['positive'].sum())} training positives; random 80/20 "
          f"split; {args.epochs} epochs, batch {config.batch_size}, Adam "
          f"{config.learning_rate}, softmax loss; seeds {seeds} (mean, min-max).\n")
    print("| negatives | R@10 | R@50 | R@100 | oracle@100 | train s/epoch |")
    print("|---|---|---|---|---|---|")
    for number, (label, options) in enumerate(STRATEGIES, 1):
        if number not in chosen:
            continue
        results = []
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            # The dense path for every row (fused_in_batch=False): the fused kernel takes
            # in-batch and shared negatives but not per-row hard ones, and a kernel
            # difference must not read as a difference between negative strategies.
            model = TwoTowerModel.from_specs(
                user_specs, item_specs, tower=config.tower, similarity=config.similarity,
                temperature=config.temperature, in_batch_negatives=True,
                fused_in_batch=False)
            model.adapt(user_adapt, item_adapt)
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                          loss=recipe.make_loss("softmax"))
            samples = TrainingSamples(train, catalogue, users, items,
                                      SamplingConfig(seed=seed, **options), config.batch_size,
                                      ranker_lists=ranker)
            start = time.perf_counter()
            model.fit(samples.dataset, epochs=args.epochs, verbose=0)
            seconds = (time.perf_counter() - start) / args.epochs
            metrics = evaluate_model(model, eval_set, user_table, item_table, (10, 50, 100))
            oracle = oracle_overlap(world, train, user_ids, catalogue,
                                    embed_users(model, user_table), embed_items(model, item_table))
            results.append([metrics["recall@10"], metrics["recall@50"], metrics["recall@100"],
                            oracle, seconds])
        r = np.asarray(results)
        cells = [_cell(r[:, j], "{:.1f}" if j == 4 else "{:.4f}") for j in range(5)]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def _cell(values: np.ndarray, fmt: str) -> str:
    """The mean, and the min-max over seeds when there are several."""
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"{fmt.format(values.mean())} ({fmt.format(values.min())}-"
            f"{fmt.format(values.max())})")


if __name__ == "__main__":
    main()
