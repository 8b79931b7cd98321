r"""Issue 18: one `pipelines.train` run split over several workers on this machine.

    python benchmarks/multi_worker.py --interactions=LOG.csv [--workers=2]
        [--train_flags="--epochs=1 --validation_fraction=0 --batch_size=1024"]
        [--workdir=/tmp/tfrecall_multi_worker]

Starts --workers processes of ``python -m pipelines.train --strategy=multi_worker`` on
127.0.0.1 (free ports), each with its own ``TF_CONFIG`` (worker 0 is the chief: it
writes the checkpoints and the export), exactly as docs/distributed.md tells an operator
to start them on separate machines. The input is TensorFlow's: every worker builds the
same `TrainingSamples` pipeline and `tf.distribute`'s auto-sharding gives each its share
of every global batch (no sharder of ours). Then, unless --skip_single, the same command
once more with the default strategy, for the comparison. Prints each process' wall
seconds, peak RSS (``ru_maxrss`` of the process alone, through a waiting parent),
examples/s and R@100, one Markdown table; nothing is asserted (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys

from large_log import REPO, WAITER  # benchmarks/ is on sys.path when run as a script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WAITER, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, what: str) -> dict:
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{what}: the waiting parent failed:\n{stderr[-3000:]}")
    got = json.loads(stdout.strip().splitlines()[-1])
    if got["rc"]:
        raise RuntimeError(f"{what} exited {got['rc']}:\n{stderr[-3000:]}")
    summary = json.loads(got["out"].strip().splitlines()[-1])
    return {"wall_s": got["s"], "peak_mib": got["mib"], "summary": summary}


def row(label: str, got: dict) -> str:
    s = got["summary"]
    metrics = s.get("metrics") or {}
    r100 = metrics.get("recall@100")
    return (f"| {label} | {got['wall_s']:.0f} | {got['peak_mib']:,.0f} MiB "
            f"| {s.get('examples_per_sec', float('nan')):,.0f} "
            f"| {s.get('train_seconds', float('nan')):.0f} "
            f"| {'-' if r100 is None else format(r100, '.4f')} "
            f"| {'yes' if s.get('export_path') else 'no'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train_flags", default="--epochs=1 --validation_fraction=0",
                        help="extra flags of pipelines.train, split as a shell would")
    parser.add_argument("--workdir", default="/tmp/tfrecall_multi_worker")
    parser.add_argument("--skip_single", action="store_true")
    args = parser.parse_args()
    if args.workers < 2:
        raise SystemExit("--workers must be >= 2")
    flags = [f"--interactions={args.interactions}", "--overwrite", "--verbose=2",
             *shlex.split(args.train_flags)]
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(args.workers)]}
    procs = []
    for index in range(args.workers):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(start([sys.executable, "-m", "pipelines.train",
                            "--strategy=multi_worker",
                            f"--model_dir={args.workdir}/multi", *flags], env))
    try:
        workers = [finish(proc, f"worker {i}") for i, proc in enumerate(procs)]
    finally:
        for proc in procs:  # never leave a worker behind
            if proc.poll() is None:
                proc.kill()
    for i, got in enumerate(workers):
        print(f"worker {i}: {json.dumps({k: v for k, v in got.items() if k != 'summary'})} "
              f"{json.dumps(got['summary'].get('metrics'))}", flush=True)
    single = None
    if not args.skip_single:
        single = finish(start([sys.executable, "-m", "pipelines.train",
                               f"--model_dir={args.workdir}/single", *flags],
                              dict(os.environ)), "single")
        print(f"single: wall {single['wall_s']:.0f} s, peak {single['peak_mib']:,.0f} MiB",
              flush=True)
    print("\n| process | wall s | peak RSS | examples/s | train s | R@100 | export |")
    print("|---|---|---|---|---|---|---|")
    for i, got in enumerate(workers):
        print(row(f"worker {i} of {args.workers}" + (" (chief)" if i == 0 else ""), got))
    if single is not None:
        print(row("one process, default strategy", single))


if __name__ == "__main__":
    main()
