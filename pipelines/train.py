r"""Train a two-tower recall model, evaluate it on a held-out split and export it.

With no flags: the built-in synthetic world (no download), in-batch softmax, a
SavedModel under runs/default/export. On your own data:

    python -m pipelines.train --interactions=events.csv [--users=users.csv] \
        [--items=items.csv] [--feature_config=features.json] --export_dir=DIR

MovieLens directories/files (ratings.csv, u.data, ratings.dat) are detected and read
by the MovieLens reader. The last line printed is one JSON object with the metrics,
examples/s, wall time and the export path.

A model_dir that holds a different run is refused (--overwrite replaces it); an
interrupted run resumes when the same command runs again, and only then. Errors are
one line on stderr with exit status 2; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

import tfrecall  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from pipelines import _cli
from pipelines._flags import config_from_flags, define_recipe_flags
from tfrecall.cluster import SERVER_TASKS, serve, task_of
from tfrecall.evaluation.report import format_table
from tfrecall.recipe import run
from tfrecall.recipe.channels import format_channels

for _name in define_recipe_flags():
    flags.declare_key_flag(_name)  # this program's flags: errors name them as --flags
FLAGS = flags.FLAGS


def fit_verbosity() -> int:
    """--verbose as given; unset, a progress bar only on a terminal (else one line/epoch)."""
    if FLAGS["verbose"].present or sys.stdout.isatty():
        return int(FLAGS.verbose)
    return 2


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TensorFlow's INFO records (checkpoint sharding, signature renaming) drown the summary.
    logging.set_verbosity(logging.WARNING)
    if FLAGS.strategy == "parameter_server" and task_of()[0] in SERVER_TASKS:
        # A worker or ps of the cluster: serve the chief's training (never returns).
        serve()
    # Bad input (DataError, ValueError, a path) is the user's to fix: _cli.run prints the
    # one-line message, not a stack trace.
    result = run(config_from_flags(verbose=fit_verbosity()))
    print()
    print(format_table(result.metrics, result.baselines))
    if result.channels is not None:
        print(format_channels(result.channels))
    for note in result.notes:
        print(note)
    print(f"examples/s: {result.examples_per_sec:,.0f}  train: {result.train_seconds:.1f}s  "
          f"wall: {result.wall_seconds:.1f}s  export: {result.export_path}")
    print(json.dumps(result.summary_json(), sort_keys=True))
    return 0


def _resume_hint() -> str:
    backup = os.path.join(FLAGS.model_dir, "backup")
    if not os.path.isdir(backup):
        return "nothing was saved"
    return (f"the same command resumes from the last finished epoch ({backup}); "
            f"rm -r {backup} (or --overwrite) starts over")


if __name__ == "__main__":
    _cli.run(main, _resume_hint)
