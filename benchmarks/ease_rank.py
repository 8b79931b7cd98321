"""Issue 12 probe: how many dimensions does a dot-product model need to score like EASE?

    python benchmarks/ease_rank.py --log=ml-latest-small --l2=100 [--svd]

Fits EASE (Steck 2019) on the recipe's training split of LOG (seed 0's split, the test
split and protocol of `pipelines.train`: full catalogue, training items excluded) and
scores the test split with rank-r versions of it, each a user vector (the sum of the
user's training items' rows of an r-column table) dotted with an r-dimensional item
vector, i.e. what a two-tower model of output width r can express:

- ``rrr{r}``: reduced-rank ridge regression, X B Q Q^T with Q the top r right singular
  vectors of the EASE scores X B (the best rank-r approximation of those scores);
- ``svd{r}`` (with --svd; minutes at 10k items): B's truncated SVD, X (U_r S_r) V_r^T.

Prints one JSON line of R@10 / R@100 per variant and the full-rank EASE. Results:
BENCHMARKS.md, "How many dimensions EASE's scores need".
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from recipe_logs import log_config  # noqa: E402

import tfrecall  # noqa: E402,F401  (Keras 2 before TensorFlow)
from tfrecall.evaluation.metrics import evaluate_ranking  # noqa: E402
from tfrecall.recipe import RecipeConfig  # noqa: E402
from tfrecall.recipe.prepare import prepare  # noqa: E402

RANKS = (32, 64, 128, 256, 512)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", default="ml-latest-small")
    parser.add_argument("--l2", type=float, default=100.0,
                        help="EASE's lambda (the baseline's validated choice for the log)")
    parser.add_argument("--svd", action="store_true")
    args = parser.parse_args()
    config = RecipeConfig(**log_config(args.log, 0), seed=0, export=False, baselines=(),
                          model_dir="/tmp/tfrecall_ease_rank", overwrite=True, verbose=0)
    eval_set = prepare(config).eval_set
    users, items = len(eval_set.user_ids), len(eval_set.catalogue)
    x = np.zeros((users, items), np.float32)
    x[eval_set.train_user_idx, eval_set.train_item_idx] = 1.0
    gram = (x.T @ x).astype(np.float64)
    gram[np.diag_indices(items)] += args.l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)  # B = I - P / diag(P) with a zero diagonal
    b[np.diag_indices(items)] = 0.0

    def figures(score):
        m = evaluate_ranking(score, items, eval_set.targets, eval_set.exclude, (10, 100),
                             item_popularity=eval_set.item_popularity)
        return round(m["recall@10"], 4), round(m["recall@100"], 4)

    out = {"log": args.log, "l2": args.l2, "users": users, "items": items,
           "ease": figures(lambda u: x[u] @ b)}
    _, _, right = np.linalg.svd(x @ b, full_matrices=False)
    for r in RANKS:
        q = right[:r].T
        table = b @ q  # the user side's r-column table (rows summed over the history)
        out[f"rrr{r}"] = figures(lambda u, t=table, q=q: (x[u] @ t) @ q.T)
    if args.svd:
        left, values, right = np.linalg.svd(b)
        for r in RANKS:
            table, item_vectors = left[:, :r] * values[:r], right[:r]
            out[f"svd{r}"] = figures(lambda u, t=table, v=item_vectors: (x[u] @ t) @ v)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
