"""Multi-interest user vectors (ComiRec-SA) against one pooled vector, exact scoring.

A measurement, not a recipe: before the recipe's user tower learns K vectors (which every
export kind would then have to query and merge), this asks whether K interests beat one
on a log at all. Both arms share everything but the pooling: the item id table (shared by
the history and the candidate side), the user MLP, cosine scores at temperature 0.05,
full softmax over the catalogue, Adam, the history = each user's last 50 training
positives (leave-one-out in training). K=1 is a masked mean pool (the recipe's pooling);
K>1 is ComiRec-SA's self-attention (Cen et al., KDD 2020): A = softmax_L(W2 tanh(W1 H')),
K vectors A H, trained on the interest closest to the target (label-aware), ranked by the
max over interests. Held-out recall of every epoch is printed (full catalogue, training
items excluded; the recipe's split and harness): the test curve is read for the gap
between the arms, never to pick a setting.

    python benchmarks/multi_interest.py [--interests=1,4] [--epochs=12] [--log=ml-latest-small]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tfrecall  # noqa: E402,F401  (Keras 2 before TensorFlow)
from tfrecall._backend import keras, tf  # noqa: E402
from tfrecall.evaluation.metrics import evaluate_ranking  # noqa: E402
from tfrecall.recipe import RecipeConfig  # noqa: E402
from tfrecall.recipe.prepare import prepare  # noqa: E402

ML = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-latest-small")
L = 50


def histories(prep) -> np.ndarray:
    """(U, L) catalogue indices of each user's last L training positives; -1 pads."""
    index = {item: i for i, item in enumerate(prep.catalogue.astype(str).tolist())}
    out = np.full((len(prep.user_ids), L), -1, np.int64)
    for u, text in enumerate(prep.user_table["history"].tolist()):
        items = [index[t] for t in text.split("|") if t in index][-L:]
        if items:
            out[u, :len(items)] = items
    return out


class Model(keras.Model):
    def __init__(self, num_items: int, k: int, dim: int = 32, temperature: float = 0.05):
        super().__init__()
        self.k, self.temperature = k, temperature
        self.table = keras.layers.Embedding(num_items + 1, dim)  # last row: padding
        self.user_mlp = keras.Sequential([keras.layers.Dense(256, "relu"),
                                          keras.layers.Dense(dim)])
        self.item_mlp = keras.Sequential([keras.layers.Dense(256, "relu"),
                                          keras.layers.Dense(dim)])
        if k > 1:
            self.w1 = keras.layers.Dense(4 * dim, "tanh", use_bias=False)
            self.w2 = keras.layers.Dense(k, use_bias=False)
        self.num_items = num_items

    def users(self, hist):  # (B, L) -> (B, K, dim), unit rows
        mask = hist >= 0
        h = self.table(tf.where(mask, hist, self.num_items))  # (B, L, d)
        if self.k == 1:
            m = tf.cast(mask, h.dtype)[..., None]
            pooled = (tf.reduce_sum(h * m, 1) / tf.maximum(tf.reduce_sum(m, 1), 1.0))[:, None]
        else:
            logits = self.w2(self.w1(h))  # (B, L, K)
            logits += (1.0 - tf.cast(mask, h.dtype))[..., None] * -1e9
            att = tf.nn.softmax(logits, axis=1)
            pooled = tf.einsum("blk,bld->bkd", att, h)
        return tf.math.l2_normalize(self.user_mlp(pooled), -1)

    def items(self):
        return tf.math.l2_normalize(self.item_mlp(self.table(tf.range(self.num_items))), -1)

    def scores(self, hist):  # (B, K, I)
        return tf.einsum("bkd,id->bki", self.users(hist), self.items()) / self.temperature


def run(prep, k: int, epochs: int, seed: int, batch: int = 256):
    keras.utils.set_random_seed(seed)
    hist = histories(prep)
    es = prep.eval_set
    users, items = es.train_user_idx.astype(np.int64), es.train_item_idx.astype(np.int64)
    model = Model(len(prep.catalogue), k)
    opt = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(h, target):
        h = tf.where(h == target[:, None], tf.constant(-1, tf.int64), h)  # leave-one-out
        with tf.GradientTape() as tape:
            s = model.scores(h)  # (B, K, I)
            at_target = tf.gather(s, target, axis=2, batch_dims=1)  # (B, K)
            best = tf.argmax(at_target, axis=1)
            logits = tf.gather(s, best, axis=1, batch_dims=1)  # (B, I)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        start = time.time()
        order = rng.permutation(len(users))
        for i in range(0, len(order), batch):
            rows = order[i:i + batch]
            step(tf.constant(hist[users[rows]]), tf.constant(items[rows]))
        m = evaluate_ranking(
            lambda u: tf.reduce_max(model.scores(tf.constant(hist[u])), 1).numpy(),
            len(prep.catalogue), es.targets, es.exclude, (10, 100))
        print(f"K={k} epoch {epoch:2d}  R@10 {m['recall@10']:.4f}  R@100 {m['recall@100']:.4f}"
              f"  {time.time() - start:.0f}s", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interests", default="1,4")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", default="ml-latest-small")
    args = parser.parse_args()
    flat = ({"interactions": ML} if args.log == "ml-latest-small"
            else {"synthetic_world": args.log, "synthetic_seed": args.seed})
    prep = prepare(RecipeConfig.from_flat(**flat, seed=args.seed, verbose=0))
    for k in (int(v) for v in args.interests.split(",")):
        run(prep, k, args.epochs, args.seed)


if __name__ == "__main__":
    main()
