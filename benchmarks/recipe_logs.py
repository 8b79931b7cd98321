"""The default recipe on every development log, beside popularity, ItemCF and EASE.

Decides and checks defaults: every log, several seeds, one table. A row varies one
thing: the recipe's config overrides given with --set (same for every log).

    python benchmarks/recipe_logs.py [--logs=default,longtail,ml-latest-small] \
        [--seeds=0,1,2] [--set=history_items=50 --set=...]

Logs: "default" and "longtail" are the built-in synthetic worlds (seed = the model's and
the world's); "ml-latest-small" and "ml-latest-small-4" (ratings >= 4 only) read
../shared/data/ml-latest-small (seed = the model's; the split is fixed, seed 42).
Prints one line per (log, seed) and a JSON line per run.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tfrecall  # noqa: E402,F401  (Keras 2 before TensorFlow)
from tfrecall.recipe import RecipeConfig, run  # noqa: E402

ML = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-latest-small")


def log_config(name: str, seed: int) -> dict:
    if name in ("default", "longtail"):
        return {"synthetic_world": name, "synthetic_seed": seed}
    if name == "ml-latest-small":
        return {"interactions": ML}
    if name == "ml-latest-small-4":
        return {"interactions": ML, "movielens_min_rating": 4.0}
    raise SystemExit(f"unknown log {name!r}")


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", default="default,longtail,ml-latest-small")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--set", action="append", default=[],
                        help="FIELD=VALUE override of RecipeConfig (repeatable)")
    parser.add_argument("--baselines", default="popularity,itemcf,ease")
    parser.add_argument("--model_root", default="/tmp/tfrecall_recipe_logs",
                        help="runs write under MODEL_ROOT/LOG-SEED")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
        if key in ("ks", "hard_negative_window"):
            overrides[key] = tuple(overrides[key])
    label = " ".join(args.set) or "default recipe"
    print(f"# {label}")
    for name in args.logs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = RecipeConfig.from_flat(**{
                **log_config(name, seed), "seed": seed, "export": False, "verbose": 0,
                "model_dir": os.path.join(args.model_root, f"{name}-{seed}"),
                "overwrite": True,  # each row replaces the last row's scratch run
                "baselines": tuple(b for b in args.baselines.split(",") if b),
                **overrides})
            start = time.time()
            result = run(config, log=lambda *a: None)
            m, b = result.metrics, result.baselines
            cf, ease = b.get("itemcf", {}), b.get("ease", {})
            row = {
                "log": name, "seed": seed, "label": label,
                "r10": m["recall@10"], "r100": m["recall@100"],
                "itemcf_r10": cf.get("recall@10"), "itemcf_r100": cf.get("recall@100"),
                "ease_r10": ease.get("recall@10"), "ease_r100": ease.get("recall@100"),
                "ease_l2": ease.get("l2"),
                "pop_r100": b.get("popularity", {}).get("recall@100"),
                "teacher": result.teacher,
                "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "val_curve": [round(v, 4) for v in result.validation_curve],
                "train_s": round(result.train_seconds, 1),
                "wall_s": round(time.time() - start, 1),
            }
            ratio = lambda a, c: f"{a / c:.3f}x" if c else "-"  # noqa: E731
            print(f"{name:<18} seed {seed}  R@10 {row['r10']:.4f} (EASE {row['ease_r10'] or 0:.4f})"
                  f"  R@100 {row['r100']:.4f}  itemcf {ratio(row['r100'], row['itemcf_r100'])}"
                  f"  ease {ratio(row['r100'], row['ease_r100'])}"
                  f"  epochs {row['best_epoch']}/{row['epochs_run']}  train {row['train_s']}s"
                  f"  teacher {'on' if result.teacher.get('used') else 'off'}",
                  flush=True)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
