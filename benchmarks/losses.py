"""Every loss with its matching training view on the synthetic default: held-out Recall@100
beside popularity (issue: the loss catalogue). Prints a markdown table.

    python benchmarks/losses.py [--epochs=5] [--losses=softmax,bpr,...]
"""

from __future__ import annotations

import argparse
import tempfile

import tfrecall  # noqa: F401
from tfrecall.recipe import LOSSES, RecipeConfig, run

# The view each loss is benchmarked on (its natural one).
VIEW_OF = {
    "bce": "pointwise", "neg": "listwise",
    "hinge": "pairwise", "logistic": "pairwise", "bpr": "pairwise",
    "softmax": "in_batch", "sampled_softmax": "in_batch", "nce": "listwise",
    "kl": "listwise", "listnet": "listwise", "listmle": "listwise",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=RecipeConfig().epochs)
    parser.add_argument("--losses", default=",".join(sorted(LOSSES)))
    args = parser.parse_args()
    print("| loss | view | R@100 | popularity R@100 | ratio | train s |")
    print("|---|---|---|---|---|---|")
    for name in args.losses.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            result = run(RecipeConfig.from_flat(loss=name, view=VIEW_OF[name], epochs=args.epochs,
                                      model_dir=tmp, export=False, baselines=("popularity",),
                                      verbose=0), log=lambda *_: None)
            model, pop = result.metrics["recall@100"], result.baselines["popularity"]["recall@100"]
            print(f"| {name} | {VIEW_OF[name]} | {model:.4f} | {pop:.4f} | {model / pop:.2f} | "
                  f"{result.train_seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
