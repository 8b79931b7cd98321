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
from tfrecall.cluster import SERVER_TASKS, serve, task_of
from tfrecall.config import TowerConfig
from tfrecall.evaluation.report import format_table
from tfrecall.recipe import (
    DEFAULT_NEGATIVES_PER_POSITIVE,
    DEFAULT_SHARED_NEGATIVES,
    LOSSES,
    OPTIMIZERS,
    SIMILARITIES,
    SPLITS,
    STRATEGIES,
    VIEWS,
    WORLDS,
    RecipeConfig,
    run,
)
from tfrecall.sampling.config import FLAG_HELP, LIST_MODES, PAIRWISE_MODES
from tfrecall.serving.index import INDEX_KINDS

_D = RecipeConfig()
_T = TowerConfig()

flags.DEFINE_string("interactions", None,
                    "Interaction log: a CSV (user_id,item_id[,label|event][,timestamp]...), or "
                    "a MovieLens directory/ratings file. Default: the built-in synthetic world.")
flags.DEFINE_string("users", None, "CSV of user features: user_id plus feature columns. "
                    "Default: none (the user tower reads the user id).")
flags.DEFINE_string("items", None, "CSV of item features: item_id plus feature columns. "
                    "Default: none (the item tower reads the item id).")
flags.DEFINE_string("feature_config", None,
                    "JSON overriding the inferred feature kinds, e.g. "
                    '{"items": {"price": {"kind": "bucketized", "num_buckets": 8}}}. '
                    "Default: none (kinds inferred from the columns).")
flags.DEFINE_float("movielens_min_rating", _D.movielens_min_rating,
                   "MovieLens: ratings >= this are positives; 0 makes every rating a positive "
                   "(the reference protocol of ../shared/data/README.md).")
flags.DEFINE_enum("synthetic_world", _D.synthetic_world, list(WORLDS),
                  "Built-in world used without --interactions: default (a feed with exposures, "
                  "graded events, user and item features) or longtail (an implicit play log "
                  "with Zipf popularity and no features).")
flags.DEFINE_integer("synthetic_users", None,
                     "Synthetic world: number of users (default: the world's, 3000 / 1900).")
flags.DEFINE_integer("synthetic_items", None,
                     "Synthetic world: number of items (default: the world's, 1500 / 17600).")
flags.DEFINE_integer("synthetic_seed", _D.synthetic_seed, "Synthetic world: generator seed.")
flags.DEFINE_enum("split", _D.split, list(SPLITS),
                  "Held-out split: seeded random rows, a global time cut, or each user's last "
                  "--leave_last_n positives.")
flags.DEFINE_integer("leave_last_n", _D.leave_last_n, "Positives per user held out by "
                     "--split=leave_last.")
flags.DEFINE_float("test_fraction", _D.test_fraction, "Share of interactions held out.")
flags.DEFINE_integer("split_seed", _D.split_seed, "Seed of the random split.")
flags.DEFINE_enum("view", _D.view, list(VIEWS), FLAG_HELP["view"])
flags.DEFINE_enum("loss", _D.loss, sorted(LOSSES), "Loss; must fit the view.")
flags.DEFINE_boolean("log_q", _D.log_q,
                     "Correct training logits by log Q(item) (sampling-bias correction).")
# SamplingConfig's own default (plain in_batch) is not this pipeline's: say the pipeline's.
flags.DEFINE_string("negatives", _D.negatives, FLAG_HELP["negatives"].replace(
    "Default: in_batch for the in_batch view, else uniform.",
    "Default: in_batch,uniform (mixed) for the in_batch view, else uniform."))
flags.DEFINE_integer("num_negatives", _D.num_negatives,
                     FLAG_HELP["num_negatives"] + f" Default (unset): {DEFAULT_SHARED_NEGATIVES} "
                     "shared "
                     f"(at most the catalogue) in the in_batch view, "
                     f"{DEFAULT_NEGATIVES_PER_POSITIVE} per positive elsewhere.")
flags.DEFINE_integer("list_size", _D.list_size, FLAG_HELP["list_size"])
flags.DEFINE_enum("list_mode", _D.list_mode, list(LIST_MODES), FLAG_HELP["list_mode"])
flags.DEFINE_enum("pairwise_mode", _D.pairwise_mode, list(PAIRWISE_MODES),
                  FLAG_HELP["pairwise_mode"])
flags.DEFINE_list("hard_negative_window", [str(v) for v in _D.hard_negative_window],
                  FLAG_HELP["hard_negative_window"])
flags.DEFINE_float("easy_hard_ratio", _D.easy_hard_ratio, FLAG_HELP["easy_hard_ratio"])
flags.DEFINE_float("popularity_alpha", _D.popularity_alpha, FLAG_HELP["popularity_alpha"])
flags.DEFINE_integer("distill_top_n", _D.distill_top_n, FLAG_HELP["distill_top_n"])
flags.DEFINE_enum("frequency", _D.frequency, ["exact", "streaming"], FLAG_HELP["frequency"])
flags.DEFINE_integer("batch_size", _D.batch_size, "Training batch size (lists per batch).")
flags.DEFINE_integer("epochs", _D.epochs,
                     "Training epochs: the ceiling when --validation_fraction > 0 (early "
                     "stopping), else exactly this many.")
flags.DEFINE_float("validation_fraction", _D.validation_fraction,
                   "Share of each user's training positives held out as a validation slice: "
                   "full-catalogue recall@max(ks) after every epoch, early stopping, best "
                   "weights restored (0: no validation, run --epochs).")
flags.DEFINE_boolean("refit", _D.refit,
                     "After early stopping, train a fresh model on the whole training split for "
                     "the best epoch count (--norefit keeps the early-stopped model).")
flags.DEFINE_integer("patience", _D.patience,
                     "Early stopping: epochs without a better validation recall before stopping.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Optimizer learning rate.")
flags.DEFINE_enum("optimizer", _D.optimizer, list(OPTIMIZERS), "Optimizer.")
flags.DEFINE_enum("similarity", _D.similarity, list(SIMILARITIES), "Score of a user/item pair.")
flags.DEFINE_float("temperature", _D.temperature, "Logits are similarity / temperature (> 0).")
flags.DEFINE_list("hidden_units", [str(u) for u in _T.hidden_units],
                  "Hidden layer widths of both towers (comma-separated; empty for none).")
flags.DEFINE_integer("embedding_dim", _T.output_dim, "Output embedding width of the towers.")
flags.DEFINE_float("dropout", _T.dropout, "Dropout after each hidden layer.")
flags.DEFINE_integer("id_embedding_dim", _D.id_embedding_dim, "Width of id embeddings.")
flags.DEFINE_integer("item_id_min_count", _D.item_id_min_count,
                     "Item ids with fewer training positives share the OOV embedding row and "
                     "are scored by their features (the long tail, new items); 1 gives every "
                     "item with a positive its own row. A --feature_config min_count wins.")
flags.DEFINE_integer("history_items", _D.history_items,
                     "The user's last N training positives as the user feature 'history', "
                     "embedded through the item tower's id table (leave-one-out in training; "
                     "serving feeds it as one '|'-joined string); 0 disables.")
flags.DEFINE_boolean("user_id_embedding", _D.user_id_embedding,
                     "Give each user id its own embedding row. Off by default: the user tower "
                     "reads features and history only, so new users are served like known ones.")
flags.DEFINE_list("ks", [str(k) for k in _D.ks], "Cut-offs K of the held-out metrics.")
flags.DEFINE_boolean("exclude_train", _D.exclude_train,
                     "Exclude each user's training items from the ranking and the targets.")
flags.DEFINE_list("baselines", list(_D.baselines),
                  "Baselines evaluated in the same harness (popularity, itemcf, ease; empty: "
                  "none). EASE's lambda is chosen on a validation slice of the training "
                  "split; it is skipped, with a reason, where its matrices exceed 4 GiB.")
flags.DEFINE_string("model_dir", _D.model_dir,
                    "Checkpoints (checkpoints/), TensorBoard logs (logs/), model.json, weights/, "
                    "recipe.json, and backup/ while training. One run per directory: one that "
                    "holds a different run is refused unless --overwrite.")
flags.DEFINE_boolean("overwrite", _D.overwrite,
                     "Replace the run in --model_dir when it holds a different one (its "
                     "recipe.json differs), discarding an interrupted run's backup there.")
flags.DEFINE_string("export_dir", None,
                    "SavedModel base directory; a new numbered version is written into it. "
                    "Default: MODEL_DIR/export.")
flags.DEFINE_boolean("export", _D.export, "Write the SavedModel (--noexport to skip).")
flags.DEFINE_enum("index", _D.index, list(INDEX_KINDS),
                  "Serving index: ScaNN (needs `import scann` to load), exact brute force, or "
                  "partitioned (k-means cells + exact re-scoring, stock TensorFlow ops: loads "
                  "in stock TF Serving); approximate indexes are tuned to recall@10 >= 0.95.")
flags.DEFINE_integer("export_k", _D.export_k, "Items returned by the serving signature.")
flags.DEFINE_boolean("jit_compile", _D.jit_compile,
                     "Compile the loss and the in-batch score matrix with XLA (--nojit_compile "
                     "to run them op by op).")
flags.DEFINE_string("warm_start_from", None,
                    "Continue training the model in this model_dir on the new --interactions: "
                    "its weights, features and vocabularies are kept, new ids get new rows, and "
                    "a new export version is published. Default: none (a fresh model).")
flags.DEFINE_enum("strategy", _D.strategy, list(STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored (all local devices), "
                  "multi_worker (MultiWorkerMirroredStrategy; cluster from TF_CONFIG, run the "
                  "same command on every worker), parameter_server (ParameterServerStrategy; "
                  "cluster of chief/worker/ps from TF_CONFIG: the chief trains, a worker or ps "
                  "task serves, as python -m pipelines.ps_server does).")
flags.DEFINE_integer("ps_min_shard_bytes", _D.ps_min_shard_bytes,
                     "--strategy=parameter_server: a variable larger than this is split "
                     "row-wise into ceil(bytes / this) shards, at most one per ps task, so the "
                     "id-embedding tables are sharded and small kernels stay whole.")
flags.DEFINE_integer("seed", _D.seed, "Seed of initialisation, shuffling and sampling.")
flags.DEFINE_enum("verbose", str(_D.verbose), ["0", "1", "2"],
                  "Keras fit output: 0 silent, 1 a progress bar, 2 one line per epoch. Unset, "
                  "it is 1 on a terminal and 2 when stdout is a file or a pipe (a progress "
                  "bar there is one long line of carriage returns).")

FLAGS = flags.FLAGS


def config_from_flags() -> RecipeConfig:
    return RecipeConfig(
        interactions=FLAGS.interactions,
        users=FLAGS.users,
        items=FLAGS.items,
        feature_config=FLAGS.feature_config,
        movielens_min_rating=FLAGS.movielens_min_rating,
        synthetic_world=FLAGS.synthetic_world,
        synthetic_users=FLAGS.synthetic_users,
        synthetic_items=FLAGS.synthetic_items,
        synthetic_seed=FLAGS.synthetic_seed,
        split=FLAGS.split,
        leave_last_n=FLAGS.leave_last_n,
        test_fraction=FLAGS.test_fraction,
        split_seed=FLAGS.split_seed,
        view=FLAGS.view,
        loss=FLAGS.loss,
        log_q=FLAGS.log_q,
        negatives=FLAGS.negatives,
        num_negatives=FLAGS.num_negatives,
        list_size=FLAGS.list_size,
        list_mode=FLAGS.list_mode,
        pairwise_mode=FLAGS.pairwise_mode,
        hard_negative_window=tuple(int(v) for v in FLAGS.hard_negative_window),
        easy_hard_ratio=FLAGS.easy_hard_ratio,
        popularity_alpha=FLAGS.popularity_alpha,
        distill_top_n=FLAGS.distill_top_n,
        frequency=FLAGS.frequency,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        validation_fraction=FLAGS.validation_fraction,
        patience=FLAGS.patience,
        refit=FLAGS.refit,
        learning_rate=FLAGS.learning_rate,
        optimizer=FLAGS.optimizer,
        similarity=FLAGS.similarity,
        temperature=FLAGS.temperature,
        tower=TowerConfig(
            hidden_units=tuple(int(u) for u in FLAGS.hidden_units),
            output_dim=FLAGS.embedding_dim,
            dropout=FLAGS.dropout,
        ),
        id_embedding_dim=FLAGS.id_embedding_dim,
        item_id_min_count=FLAGS.item_id_min_count,
        history_items=FLAGS.history_items,
        user_id_embedding=FLAGS.user_id_embedding,
        ks=tuple(int(k) for k in FLAGS.ks),
        exclude_train=FLAGS.exclude_train,
        baselines=tuple(FLAGS.baselines),
        model_dir=FLAGS.model_dir,
        export_dir=FLAGS.export_dir,
        export=FLAGS.export,
        index=FLAGS.index,
        export_k=FLAGS.export_k,
        jit_compile=FLAGS.jit_compile,
        warm_start_from=FLAGS.warm_start_from,
        strategy=FLAGS.strategy,
        ps_min_shard_bytes=FLAGS.ps_min_shard_bytes,
        seed=FLAGS.seed,
        verbose=fit_verbosity(),
        overwrite=FLAGS.overwrite,
    )


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
    result = run(config_from_flags())
    print()
    print(format_table(result.metrics, result.baselines))
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
