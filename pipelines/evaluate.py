"""Evaluate a trained run beside the baselines: a table, a JSON file and a Recall@K plot.

    python -m pipelines.evaluate --model_dir=runs/default [--export_path=runs/default/export/1]

Re-creates the run's held-out split from its recipe.json (override the data with
--interactions/--users/--items), scores the full catalogue with the model (exact) or
through an exported SavedModel's index (--export_path: what serving returns, ANN
recall included), and scores popularity and ItemCF in the same harness. Cut-offs
above the catalogue, or above the K the export returns, are capped with a note. An
export of another run, or a split with nothing to evaluate, is an error (one line,
exit status 2).
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

import tfrecall  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from pipelines import _cli
from tfrecall import rundir
from tfrecall.evaluation.harness import BASELINES
from tfrecall.evaluation.report import format_table, write_report
from tfrecall.recipe import evaluate_trained

flags.DEFINE_string("model_dir", None, "A pipelines.train model_dir (recipe.json, model.json).")
flags.DEFINE_string("export_path", None,
                    "Evaluate through this exported SavedModel version directory (e.g. "
                    "MODEL_DIR/export/1) instead of scoring exactly with the model. Default: "
                    "none (exact scoring).")
flags.DEFINE_string("interactions", None, "Override the run's interaction data. Default: the "
                    "run's own.")
flags.DEFINE_string("users", None, "Override the run's user features. Default: the run's own.")
flags.DEFINE_string("items", None, "Override the run's item features. Default: the run's own.")
flags.DEFINE_list("ks", ["1", "5", "10", "20", "50", "100", "200"],
                  "Cut-offs K (integers >= 1; those above the catalogue or the export's K are "
                  "capped, with a note).")
flags.DEFINE_list("baselines", ["popularity", "itemcf"],
                  f"Baselines in the same harness ({', '.join(BASELINES)}; empty: none).")
flags.DEFINE_string("output_dir", None,
                    "Where evaluation.json and recall_at_k.png go. Default: MODEL_DIR/eval.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    try:
        ks = [int(k) for k in FLAGS.ks]
    except ValueError:
        raise ValueError(f"ks must be integers >= 1, got {FLAGS.ks}") from None
    if FLAGS.output_dir:  # a file there fails now, not after the evaluation
        rundir.writable_dir(FLAGS.output_dir, "output_dir")
    out_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, "eval")
    overrides = {k: getattr(FLAGS, k) for k in ("interactions", "users", "items")
                 if getattr(FLAGS, k)}
    result = evaluate_trained(FLAGS.model_dir, ks=ks, baselines=FLAGS.baselines,
                              export_path=FLAGS.export_path, **overrides)
    rundir.writable_dir(out_dir, "output_dir")  # the default, MODEL_DIR/eval
    paths = write_report(out_dir, result.metrics, result.baselines,
                         {"source": result.source, "protocol": result.note,
                          "notes": list(result.notes),
                          "title": f"Held-out Recall@K: {os.path.basename(FLAGS.model_dir)}"})
    print(f"evaluated: {result.source}")
    print(format_table(result.metrics, result.baselines))
    print(result.note)
    for note in result.notes:
        print(note)
    print(f"wrote {paths['json']} and {paths['png']}")
    print(json.dumps({"metrics": result.metrics, "baselines": result.baselines, **paths},
                     sort_keys=True))
    return 0


if __name__ == "__main__":
    _cli.run(main)
