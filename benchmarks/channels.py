"""Multi-channel recall: each channel alone and the merge at the same K, served from one
SavedModel loaded in a fresh process, and the merge's single-query latency.

    python benchmarks/channels.py --log=default        # the synthetic default world
    python benchmarks/channels.py --log=ml-latest-small

Step 1 trains the recipe with ``--channels=two_tower,item2item,attribute,popularity``
(quotas chosen on the validation slice; `tfrecall.recipe.channels`) and exports it with
the stock-ops exact index (``--index=brute_force``). Step 2 runs in a fresh process: it
loads the SavedModel (TensorFlow only for the model; tfrecall rebuilds the run's
held-out split from its recipe.json) and scores every ``channel_<name>`` signature and
the merge (``serving_exclude``) with `evaluate_export`, each user's training items
excluded, K = 100. It then times single-user calls (batch 1, after warm-up) of the
merge (``serving_default``) and of the two-tower channel alone (``channel_two_tower``,
the reference) interleaved over the held-out users, and prints p50/p99 and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tfrecall  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from tfrecall._backend import tf  # noqa: E402
from tfrecall.evaluation.harness import evaluate_export  # noqa: E402
from tfrecall.models.embed import feature_column  # noqa: E402
from tfrecall.models.persistence import read_catalogue  # noqa: E402
from tfrecall.recipe.config import RecipeConfig  # noqa: E402
from tfrecall.recipe.evaluate import load_recipe_config  # noqa: E402
from tfrecall.recipe.job import run  # noqa: E402
from tfrecall.recipe.prepare import prepare  # noqa: E402

CHANNELS = ("two_tower", "item2item", "attribute", "popularity")
LOGS = {"default": None,
        "ml-latest-small": os.path.join(os.path.dirname(REPO), "shared", "data",
                                        "ml-latest-small")}


def train(args) -> str:
    config = RecipeConfig.from_flat(
        interactions=LOGS[args.log], channels=CHANNELS, index="brute_force",
        model_dir=args.model_dir, overwrite=True, verbose=0, seed=args.seed)
    result = run(config, log=lambda *_: None)
    print(f"in-run (train process): order {list(result.channels.order)}, "
          f"{result.channels.merge} {list(result.channels.shares)}, validation recall@100 "
          f"{json.dumps({c: round(v, 4) for c, v in result.channels.validation.items()})}")
    return result.export_path


def serve(args) -> None:
    config = load_recipe_config(args.model_dir)
    prep = prepare(config, read_catalogue(args.model_dir))
    loaded = tf.saved_model.load(args.serve)
    names = [s[len("channel_"):] for s in loaded.signatures if s.startswith("channel_")]
    rows = {}
    for name in names:
        rows[name] = evaluate_export(args.serve, prep.eval_set, prep.user_table, (10, 50, 100),
                                     signature="channel_" + name)
    rows["merged"] = evaluate_export(args.serve, prep.eval_set, prep.user_table, (10, 50, 100),
                                     signature="serving_exclude")
    cols = list(rows)
    print(f"fresh process, {args.serve}: held-out pairs {int(rows['merged']['num_pairs'])}")
    print("| metric | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for key in ("recall@10", "recall@50", "recall@100", "ndcg@100"):
        print(f"| {key} | " + " | ".join(f"{rows[c][key]:.5f}" for c in cols) + " |")
    best = max(names, key=lambda c: rows[c]["recall@100"])
    gain = rows["merged"]["recall@100"] - rows[best]["recall@100"]
    print(f"merged R@100 / best channel ({best}) R@100 = "
          f"{rows['merged']['recall@100'] / rows[best]['recall@100']:.5f} ({gain:+.5f}, "
          f"{gain * rows['merged']['num_pairs']:+.0f} held-out pairs)")
    latency(loaded, prep, args.queries)


def latency(loaded, prep, queries: int) -> None:
    merged, alone = loaded.signatures["serving_default"], loaded.signatures["channel_two_tower"]
    specs = merged.structured_input_signature[1]
    users = np.array(sorted(prep.eval_set.targets))[:queries]
    feeds = [{n: tf.constant(feature_column(prep.user_table, n, s.dtype, [u], 1))
              for n, s in specs.items()} for u in users]
    empty = tf.constant([[""]])
    for feed in feeds[:20]:  # warm-up
        merged(**feed)
        alone(exclude_item_ids=empty, **feed)
    times = {"merged": [], "two_tower": []}
    for feed in feeds:
        start = time.perf_counter()
        merged(**feed)
        times["merged"].append(time.perf_counter() - start)
        start = time.perf_counter()
        alone(exclude_item_ids=empty, **feed)
        times["two_tower"].append(time.perf_counter() - start)
    p = {k: (np.percentile(v, 50) * 1e3, np.percentile(v, 99) * 1e3) for k, v in times.items()}
    print(f"single-query latency over {len(feeds)} users (ms): merged serving_default p50 "
          f"{p['merged'][0]:.2f} p99 {p['merged'][1]:.2f}; channel_two_tower alone p50 "
          f"{p['two_tower'][0]:.2f} p99 {p['two_tower'][1]:.2f}; p99 ratio "
          f"{p['merged'][1] / p['two_tower'][1]:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", choices=sorted(LOGS), default="default")
    parser.add_argument("--model_dir", default="/tmp/tfrecall_channels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # step 2 (the fresh process)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    model_dir = os.path.join(args.model_dir, args.log)
    args.model_dir = model_dir
    export = train(args)
    print(f"export: {export} (step 2 alone: python benchmarks/channels.py --serve={export} "
          f"--model_dir={model_dir})")
    subprocess.run([sys.executable, __file__, "--serve", export, "--model_dir", model_dir,
                    "--queries", str(args.queries)], check=True)


if __name__ == "__main__":
    main()
