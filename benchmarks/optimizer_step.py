r"""Training steps/s of the default recipe's model under each optimizer, on one log.

    python benchmarks/optimizer_step.py --interactions=LOG.csv [--optimizers=adam,lazy_adam]
        [--repeats=2] [--batches=1000] [--batch_size=128]

Each (optimizer, repeat) runs in a fresh process, alternating (adam, lazy_adam, adam, ...),
so one process' warm caches or allocator state favour no optimizer. A process prepares
the log as `pipelines.train` does (`prepare`, the default recipe with no validation
slice), builds and compiles the recipe's model with the named optimizer, fits 20 batches
(tracing), then times `fit` over --batches batches of the training dataset (sampling
and the history leave-one-out included, as in a run). Prints examples/s per process and
one Markdown table; nothing is asserted (see BENCHMARKS.md, "Lazy Adam").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import dataclasses, json, sys, time
import tfrecall
from tfrecall.recipe.config import RecipeConfig, run_sampling
from tfrecall.recipe.prepare import prepare
from tfrecall.recipe import stage
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore
from tfrecall.sampling.history import drop_candidates_from_history

path, optimizer, batches, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = RecipeConfig(interactions=path, validation_fraction=0, optimizer=optimizer,
                      batch_size=batch_size, model_dir="/tmp/optimizer_step")
prep = prepare(config)
model = stage.compiled_model(config, prep.data, prep.train, prep.catalogue, prep.user_table)
samples = TrainingSamples(
    prep.train, prep.catalogue, FeatureStore(prep.user_table, "user_id", prep.user_ids),
    FeatureStore(prep.data.items, "item_id", prep.catalogue),
    run_sampling(config, len(prep.catalogue)), batch_size)
dataset = samples.dataset
if config.history_items:
    dataset = dataset.map(lambda x, y: (drop_candidates_from_history(x), y))
dataset = dataset.repeat()
model.fit(dataset.take(20), epochs=1, verbose=0)
start = time.time()
model.fit(dataset.take(batches), epochs=1, verbose=0)
seconds = time.time() - start
print(json.dumps({"optimizer": type(model.optimizer).__name__,
                  "embedding_rows": stage.embedding_rows(model),
                  "examples_per_s": batches * batch_size / seconds}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", required=True)
    parser.add_argument("--optimizers", default="adam,lazy_adam")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args()
    names = [n for n in args.optimizers.split(",") if n]
    results = {n: [] for n in names}
    for repeat in range(args.repeats):
        for name in names:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, args.interactions, name, str(args.batches),
                 str(args.batch_size)], cwd=REPO, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name].append(got)
            print(f"repeat {repeat} {name}: {got}", flush=True)
    print(f"\n| optimizer | embedding rows | examples/s per process | mean | x {names[0]} |")
    print("|---|---|---|---|---|")
    base = sum(r["examples_per_s"] for r in results[names[0]]) / args.repeats
    for name in names:
        speeds = [r["examples_per_s"] for r in results[name]]
        mean = sum(speeds) / len(speeds)
        print(f"| {name} | {results[name][0]['embedding_rows']:,} | "
              f"{', '.join(f'{s:,.0f}' for s in speeds)} | {mean:,.0f} | {mean / base:.2f} |")


if __name__ == "__main__":
    main()
