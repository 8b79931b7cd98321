r"""Refresh the serving index without retraining: embed a new catalogue, export a new version.

    python -m pipelines.export --model_dir=runs/default --items=catalogue.csv \
        --export_dir=DIR [--index=scann|partitioned|brute_force] [--k=100] \
        [--keep_versions=5] [--users=users.csv] [--target_recall=0.95] \
        [--allow_missing_features]

Loads the trained model from `--model_dir` (model.json + weights/final, as written by
`pipelines.train`), reads the item catalogue CSV (the item id column plus the item
tower's feature columns), embeds every item with the item tower and writes the next
version under `--export_dir` atomically, keeping the newest `--keep_versions`. Items
added since training are embedded through the OOV id bucket and their features, so
they are retrievable at once. `--users` (a user feature CSV) supplies real user
queries for tuning the approximate index; without it item embeddings stand in.

The catalogue must hold every item feature the model reads (as a warm start requires);
a missing one is an error naming it, unless --allow_missing_features, which feeds it
as missing ("" or NaN, as serving does for an unknown value) and says how many.

The last line printed is one JSON object: the export path, index, recall@10, build
time and index size.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

from absl import app, flags, logging

import tfrecall  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from pipelines import _cli
from tfrecall import rundir
from tfrecall.config import STRING_KINDS
from tfrecall.io.errors import DataError
from tfrecall.io.readers import read_feature_table_csv
from tfrecall.recipe import RECIPE_FILE, load_model
from tfrecall.serving import INDEX_KINDS, export_saved_model

flags.DEFINE_string("model_dir", None, "Directory of the trained model (model.json, weights/).")
flags.DEFINE_string("items", None, "Item catalogue CSV: the item id column plus item features.")
flags.DEFINE_string("export_dir", None, "SavedModel base directory; a new version goes in it.")
flags.DEFINE_enum("index", "scann", list(INDEX_KINDS),
                  "scann (needs the ScaNN serving build), partitioned (stock TF ops, "
                  "sub-linear) or brute_force (stock TF ops, exact).")
flags.DEFINE_integer("k", 100, "Items returned per query (capped at the catalogue size, "
                     "with a note).")
flags.DEFINE_integer("keep_versions", 5, "Newest versions kept in --export_dir (0: all).")
flags.DEFINE_string("users", None, "Optional user feature CSV: real queries for index tuning. "
                    "Default: none (item embeddings stand in).")
flags.DEFINE_float("target_recall", 0.95, "Recall@10 the approximate index is tuned to.")
flags.DEFINE_integer("exact_below", 10_000, "Catalogues smaller than this are searched exactly.")
flags.DEFINE_integer("seed", 0, "Seed of clustering and sampling.")
flags.DEFINE_boolean("allow_missing_features", False,
                     "Export even when the catalogue lacks some of the model's item features: "
                     "they are fed as missing (logged with their count). Without it a missing "
                     "feature is an error.")


def check_columns(table: dict, tower, path: str, allow_missing: bool = False,
                  log: Optional[Callable[[str], None]] = print) -> None:
    """Every feature `tower` reads must be a column of the table read from `path`.

    Raises:
      DataError: naming the file and the missing features, unless `allow_missing`
        (then the count and names are logged: they are fed as missing).
    """
    missing = [s.name for s in tower.encoder.specs if s.name not in table]
    if not missing:
        return
    if not allow_missing:
        raise DataError(f"lacks the model's feature column(s) {missing} (columns: "
                        f"{list(table)}); add them, or pass allow_missing_features=True to feed "
                        "them as missing", path=path)
    if log is not None:
        log(f"{path}: {len(missing)} feature(s) of the model missing, fed as missing values "
            f"(allow_missing_features): {missing}")


def _read_table(path: str, tower, key: str) -> dict:
    """A feature CSV with the tower's string features kept as str and numeric ones checked."""
    specs = tower.encoder.specs
    table = read_feature_table_csv(
        path, key, str_columns=[s.name for s in specs if s.kind in STRING_KINDS]
    )
    for s in specs:
        col = table.get(s.name)
        if s.kind not in STRING_KINDS and col is not None and col.dtype == object:
            bad = next(v for v in col.tolist() if not _is_number(v))
            raise DataError(f"{s.kind} feature of the model, but holds the non-number {bad!r}",
                            path=path, column=s.name)
    return table


def _is_number(value: str) -> bool:
    try:
        float(value or "nan")
    except ValueError:
        return False
    return True


def export_from_files(
    model_dir: str,
    items: str,
    export_dir: str,
    index: str = "scann",
    k: int = 100,
    keep_versions: Optional[int] = 5,
    users: Optional[str] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    seed: int = 0,
    log: Optional[Callable[[str], None]] = print,
    allow_missing_features: bool = False,
):
    """Loads the model, reads the catalogue (and users), exports a version; returns its path.

    Raises:
      ValueError: model_dir holds no trained model, or export_dir cannot be used.
      DataError: a bad catalogue or users file, or one lacking a feature of the model
        (unless `allow_missing_features`).
    """

    if not os.path.isfile(os.path.join(model_dir, "model.json")):
        raise ValueError(f"model_dir {model_dir!r} holds no trained model (model.json); give "
                         "the model_dir of a finished training run")
    model = load_model(model_dir)
    catalogue = _read_table(items, model.item_tower, model.item_id_feature)
    check_columns(catalogue, model.item_tower, items, allow_missing_features, log)
    user_table = None
    if users:
        user_table = _read_table(users, model.user_tower, model.user_id_feature)
        check_columns(user_table, model.user_tower, users, allow_missing_features, log)
    rundir.writable_dir(export_dir, "export_dir")  # before the embedding and the index
    # The run's recipe travels with the export, so an evaluation can tell which run it is.
    recipe = rundir.read_json(os.path.join(model_dir, RECIPE_FILE))
    return export_saved_model(
        model, catalogue, export_dir, k=k, index=index,
        metadata={"model_dir": model_dir, "catalogue": items, "recipe": recipe},
        tuning_queries=user_table, target_recall=target_recall, exact_below=exact_below,
        keep_versions=keep_versions or None, seed=seed, log=log,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs pages at INFO
    f = flags.FLAGS
    # A user's mistake is one line on stderr and exit status 2 (_cli.run).
    path = export_from_files(
        f.model_dir, f.items, f.export_dir, index=f.index, k=f.k,
        keep_versions=f.keep_versions, users=f.users, target_recall=f.target_recall,
        exact_below=f.exact_below, seed=f.seed, allow_missing_features=f.allow_missing_features,
    )
    info = path.info
    print(json.dumps({
        "export_path": str(path), "version": info["version"], "index": info["index"],
        "num_items": info["num_items"], "k": info["k"], "recall_at_10": info["recall_at_10"],
        "index_build_seconds": info["index_build_seconds"], "index_bytes": info["index_bytes"],
        "saved_model_bytes": info["saved_model_bytes"], "pruned": info["pruned_versions"],
    }))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["model_dir", "items", "export_dir"])
    _cli.run(main)
