"""Issue 12 probe: would a popularity term at scoring time close the EASE gap?

    python benchmarks/popularity_term.py LOG SEED

Runs the default recipe (`recipe.run`, no export) on LOG ("default", "longtail",
"ml-latest-small"; see recipe_logs.py) and then re-scores with cos(u, v) + beta x
log(1 + training count of v) for a grid of beta: the search stage's model on the
validation slice (what a mechanism would choose on) and the final model on the test
split (only to see whether the effect exists). An item bias of this kind would be
servable as one more embedding dimension. Prints one JSON line: R@10 / R@100 per beta
for both, the model's own test figures and EASE's. Results: BENCHMARKS.md.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from recipe_logs import log_config  # noqa: E402

import tfrecall  # noqa: E402,F401  (Keras 2 before TensorFlow)
from tfrecall.evaluation.harness import evaluate_embeddings_on, make_eval_set  # noqa: E402
from tfrecall.recipe import RecipeConfig, job  # noqa: E402
from tfrecall.recipe.prepare import user_feature_table  # noqa: E402
from tfrecall.serving import embed_items, embed_users  # noqa: E402

BETAS = (-0.01, 0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08)


def with_term(users, items, counts, beta):
    """Embeddings whose dot product is the model's score + beta x log(1 + count)."""
    return (np.hstack([users, np.ones((len(users), 1), users.dtype)]),
            np.hstack([items, (beta * np.log1p(counts))[:, None].astype(items.dtype)]))


def figures(eval_set, users, items):
    out = {}
    for beta in BETAS:
        m = evaluate_embeddings_on(eval_set, *with_term(users, items, eval_set.item_popularity,
                                                        beta), (10, 100))
        out[beta] = (round(m["recall@10"], 4), round(m["recall@100"], 4))
    return out


def main():
    log, seed = sys.argv[1], int(sys.argv[2])
    stages = []
    train_stage = job.train_stage

    def keep(ctx, fit, validation, epochs, name):  # the stages' models and splits
        trained = train_stage(ctx, fit, validation, epochs, name)
        stages.append((ctx, fit, validation, trained))
        return trained

    job.train_stage = keep
    config = RecipeConfig(**log_config(log, seed), seed=seed, export=False,
                          baselines=("ease",), model_dir=f"/tmp/tfrecall_popterm/{log}-{seed}",
                          overwrite=True, verbose=0)
    result = job.run(config, log=lambda message: None)
    ctx, fit, validation, search = stages[0]
    prep = ctx.prepared
    val_set = make_eval_set(fit, validation, prep.user_ids, prep.catalogue)
    val = figures(val_set, embed_users(search.model, user_feature_table(
        prep.data, fit, prep.user_ids, ctx.config)), embed_items(search.model, prep.item_table))
    final = stages[-1][3].model
    test = figures(prep.eval_set, embed_users(final, prep.user_table),
                   embed_items(final, prep.eval_item_table))
    ease = result.baselines["ease"]
    print(json.dumps({"log": log, "seed": seed, "validation": val, "test": test,
                      "model": (round(result.metrics["recall@10"], 4),
                                round(result.metrics["recall@100"], 4)),
                      "ease": (round(ease["recall@10"], 4), round(ease["recall@100"], 4))}))


if __name__ == "__main__":
    main()
