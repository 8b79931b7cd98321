r"""Large logs (issue 18): a MovieLens-25M-shaped synthetic log through the CLI.

    python benchmarks/large_log.py --rows=1000000,5000000 [--workdir=/tmp/large_log]
        [--train_flags="--epochs=1 --validation_fraction=0"] [--skip_train] [--reuse_logs]
        [--phases=STEPS]

For each size: writes a generic interactions CSV (``user_id,item_id,label,timestamp``)
shaped like ml-25m (162,541 users and 59,047 items per 25M rows, scaled linearly with
--rows; user activity and item popularity power laws; each user has one of 40 tastes
and most of their items come from it, so collaborative signal exists), then runs, each
in a fresh process so peak RSS is that phase's alone:

1. read: `tfrecall.io.readers.load_data` on the file (the path `pipelines.train` takes),
   rows/s and peak RSS;
2. train: ``python -m pipelines.train --interactions=FILE`` with --train_flags (default:
   one epoch, no validation search, export on), its JSON summary (examples/s, train
   seconds, R@100 of the model, popularity and ItemCF on the same split), wall seconds
   and peak RSS.

With --phases=STEPS the train step is replaced by the same run in one process with its
phases timed and their peak RSS measured one by one (fit cut to STEPS batches); rows
"(untracked, before X)" hold the peak of the code between two tracked phases (shown
where it rose above the RSS around it).

Peak RSS is the child's ``ru_maxrss`` from ``wait4``. Generation is not timed. Figures
are printed as one Markdown table; nothing is asserted (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

ML25M_ROWS, ML25M_USERS, ML25M_ITEMS = 25_000_095, 162_541, 59_047
TASTES = 40
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scaled_shape(rows: int):
    """Users and items of a log of `rows` rows: ml-25m's, scaled linearly."""
    return (max(100, round(rows * ML25M_USERS / ML25M_ROWS)),
            max(200, round(rows * ML25M_ITEMS / ML25M_ROWS)))


def generate(path: str, rows: int, seed: int = 0, chunk_users: int = 20_000) -> dict:
    """Writes the log (written user by user in chunks: memory stays small at 25M rows)."""
    rng = np.random.default_rng(seed)
    users, items = scaled_shape(rows)
    # Items per user: a power law (ml-25m: median 71, mean 154, min 20), scaled to `rows`.
    activity = 20 + rng.pareto(1.3, users) * 60
    activity = np.maximum(1, np.round(activity * rows / activity.sum())).astype(np.int64)
    # Item popularity: Zipf about 1 over a random order; each item has one taste.
    item_taste = rng.integers(0, TASTES, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.0
    popularity = popularity[rng.permutation(items)]
    by_taste = [np.flatnonzero(item_taste == t) for t in range(TASTES)]
    taste_p = [popularity[ix] / popularity[ix].sum() for ix in by_taste]
    global_p = popularity / popularity.sum()
    user_taste = rng.integers(0, TASTES, users)
    written = 0
    with open(path, "w") as f:
        f.write("user_id,item_id,label,timestamp\n")
        for lo in range(0, users, chunk_users):
            hi = min(users, lo + chunk_users)
            n = activity[lo:hi]
            uid = np.repeat(np.arange(lo, hi), n)
            own = rng.random(len(uid)) < 0.8
            item = rng.choice(items, size=len(uid), p=global_p)
            for t in range(TASTES):
                at = own & (user_taste[uid] == t)
                item[at] = by_taste[t][rng.choice(len(by_taste[t]), size=int(at.sum()),
                                                  p=taste_p[t])]
            label = rng.integers(1, 11, len(uid)) / 2.0  # ratings 0.5..5, all positives
            stamp = 1_000_000_000 + np.cumsum(rng.integers(1, 600, len(uid)))
            lines = np.char.add(np.char.add(np.char.add(
                uid.astype(str), ","), np.char.add(item.astype(str), ",")),
                np.char.add(np.char.add(label.astype(str), ","), stamp.astype(str)))
            f.write("\n".join(lines.tolist()))
            f.write("\n")
            written += len(uid)
    return {"rows": written, "users": users, "items": items,
            "bytes": os.path.getsize(path)}


def existing(path: str, rows: int) -> dict:
    """The shape of a log `generate` already wrote (--reuse_logs): rows counted, users and
    items from the same scaling rule."""
    lines = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            lines += block.count(b"\n")
    users, items = scaled_shape(rows)
    return {"rows": lines - 1, "users": users, "items": items, "bytes": os.path.getsize(path)}


# A tiny parent that runs one command and waits on it alone, so its RUSAGE_CHILDREN peak
# RSS is that command's (also used by multi_worker.py).
WAITER = ("import os,resource,subprocess,sys,json,time;t=time.time();"
          "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
          "r=resource.getrusage(resource.RUSAGE_CHILDREN);"
          "sys.stderr.write(p.stderr[-3000:]);"
          "print(json.dumps({'rc':p.returncode,'out':p.stdout,'s':time.time()-t,"
          "'mib':r.ru_maxrss/1024}))")


def measured(args) -> dict:
    """Runs a command through `WAITER`; returns stdout, wall seconds, peak MiB."""
    proc = subprocess.run([sys.executable, "-c", WAITER, *args], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["rc"]:
        raise RuntimeError(f"{args[:4]} exited {got['rc']}:\n{proc.stderr[-3000:]}")
    return {"stdout": got["out"], "seconds": got["s"], "peak_mib": got["mib"]}


READ = ("import sys,time;import tfrecall;from tfrecall.io.readers import load_data;"
        "t=time.time();d=load_data(sys.argv[1]);"
        "print(len(d.interactions['user_id']), time.time()-t)")


# --phases: the same run as the train step, in one process, its memory and time by phase.
# Before each phase the process's peak RSS is reset (/proc/self/clear_refs 5, Linux), so
# a phase's peak is its own; fit runs --phases=STEPS batches instead of whole epochs.
PHASES = """
import json, sys, time
import tfrecall
from absl import flags
from pipelines._flags import config_from_flags, define_recipe_flags
define_recipe_flags()
flags.FLAGS(["phases", *sys.argv[2:]])
steps = int(sys.argv[1])
from tfrecall.evaluation import harness
from tfrecall.models import TwoTowerModel
from tfrecall.recipe import job, stage
rows = []

def status():
    got = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return [int(got[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")]

def track(owner, name):
    fn = getattr(owner, name)
    def wrapped(*a, **k):
        # The peak of the untracked code since the last phase (or the imports) first, so
        # no step of the run escapes the table.
        rss, peak = status()
        rows.append({"phase": f"(untracked, before {name})", "s": 0.0, "rss": rss,
                     "peak": peak})
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        t = time.time()
        out = fn(*a, **k)
        rss, peak = status()
        rows.append({"phase": name, "s": time.time() - t, "rss": rss, "peak": peak})
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the next untracked row starts here
        return out
    setattr(owner, name, wrapped)

def fit(self, *a, **k):
    k["steps_per_epoch"] = min(steps, k.get("steps_per_epoch") or steps)
    return TwoTowerModel_fit(self, *a, **k)
TwoTowerModel_fit = TwoTowerModel.fit
TwoTowerModel.fit = fit
for owner, name in [(job, "prepare"), (stage, "build_model"), (stage, "TrainingSamples"),
                    (TwoTowerModel, "fit"), (job, "save_model"), (job, "evaluate_model"),
                    (harness, "evaluate_popularity"), (harness, "evaluate_itemcf"),
                    (harness, "evaluate_ease"), (job, "export_saved_model")]:
    track(owner, name)
rows.append({"phase": "imports", "s": 0.0, "rss": status()[0], "peak": status()[1]})
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
job.run(config_from_flags(verbose=0), log=lambda message: None)
rows.append({"phase": "(untracked, to the end)", "s": 0.0, "rss": status()[0],
             "peak": status()[1]})
print(json.dumps(rows))
"""


def phases(path: str, model_dir: str, steps: int, flags) -> list:
    """Runs `PHASES` on `path` in a fresh process; returns its rows."""
    out = measured([sys.executable, "-c", PHASES, str(steps), f"--interactions={path}",
                    f"--model_dir={model_dir}", "--overwrite", *flags])
    return json.loads(out["stdout"].strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000")
    parser.add_argument("--workdir", default="/tmp/tfrecall_large_log")
    parser.add_argument("--train_flags", default="--epochs=1 --validation_fraction=0",
                        help="extra flags of pipelines.train, split as a shell would")
    parser.add_argument("--skip_train", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", type=int, default=0, metavar="STEPS",
                        help="instead of the train step: the same run in one process, "
                        "fit cut to STEPS batches, peak RSS and seconds by phase")
    parser.add_argument("--reuse_logs", action="store_true",
                        help="use a log already in --workdir (same --rows and --seed) "
                        "instead of writing it again")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rows_out = []
    for rows in [int(r) for r in args.rows.split(",")]:
        path = os.path.join(args.workdir, f"log_{rows}.csv")
        if args.reuse_logs and os.path.exists(path):
            shape = existing(path, rows)
            print(f"reused {path}: {shape}", flush=True)
        else:
            shape = generate(path, rows, args.seed)
            print(f"generated {path}: {shape}", flush=True)
        read = measured([sys.executable, "-c", READ, path])
        n, read_s = read["stdout"].split()
        row = {**shape, "read_rows_per_s": int(n) / float(read_s),
               "read_peak_mib": read["peak_mib"]}
        print(f"read: {row['read_rows_per_s']:,.0f} rows/s, peak {read['peak_mib']:,.0f} MiB",
              flush=True)
        if args.phases:
            print(f"\n{rows:,} rows by phase (fit cut to {args.phases} batches)\n\n"
                  "| phase | seconds | RSS after | peak RSS in the phase |\n|---|---|---|---|")
            rss_before = 0.0
            for p in phases(path, os.path.join(args.workdir, f"phases_{rows}"), args.phases,
                            shlex.split(args.train_flags)):
                untracked = p["phase"].startswith("(untracked")
                quiet = untracked and p["peak"] <= max(rss_before, p["rss"]) + 1
                rss_before = p["rss"]
                if quiet:  # nothing between the two phases rose above their RSS
                    continue
                print(f"| {p['phase']} | {p['s']:.1f} | {p['rss']:,.0f} MiB | "
                      f"{p['peak']:,.0f} MiB |", flush=True)
        elif not args.skip_train:
            model_dir = os.path.join(args.workdir, f"run_{rows}")
            flags = shlex.split(args.train_flags)
            train = measured([sys.executable, "-m", "pipelines.train", f"--interactions={path}",
                              f"--model_dir={model_dir}", "--overwrite", "--verbose=2",
                              *flags])
            summary = json.loads(train["stdout"].strip().splitlines()[-1])
            base = summary["baselines"]
            row.update(
                train_peak_mib=train["peak_mib"], wall_s=train["seconds"],
                examples_per_s=summary["examples_per_sec"],
                optimizer=summary.get("optimizer"),
                train_s=summary["train_seconds"],
                epoch_s=summary["train_seconds"] / max(1, summary["validation"]["epochs_run"]),
                r100=summary["metrics"].get("recall@100"),
                pop_r100=base.get("popularity", {}).get("recall@100"),
                itemcf_r100=base.get("itemcf", {}).get("recall@100"))
            print(json.dumps(row), flush=True)
        rows_out.append(row)
    print("\n| rows | users | items | read rows/s | read peak RSS | train+export peak RSS | "
          "examples/s | epoch s | wall s | R@100 | popularity | ItemCF |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows_out:
        def f(key, fmt, r=r):
            return format(r[key], fmt) if r.get(key) is not None else "-"
        print(f"| {r['rows']:,} | {r['users']:,} | {r['items']:,} | {f('read_rows_per_s', ',.0f')} "
              f"| {f('read_peak_mib', ',.0f')} MiB | {f('train_peak_mib', ',.0f')} MiB "
              f"| {f('examples_per_s', ',.0f')} | {f('epoch_s', '.0f')} | {f('wall_s', '.0f')} "
              f"| {f('r100', '.4f')} | {f('pop_r100', '.4f')} | {f('itemcf_r100', '.4f')} |")


if __name__ == "__main__":
    main()
