"""`evaluate_trained`: a finished run re-evaluated on its own held-out split (from its
recipe.json and catalogue.json), by exact scoring or through one of its exports."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence

from tfrecall import rundir
from tfrecall.evaluation.harness import (
    BASELINES,
    cap_ks,
    evaluate_export,
    evaluate_model,
)
from tfrecall.models.persistence import RECIPE_FILE, load_model, read_catalogue
from tfrecall.recipe.config import OUTPUT_SETTINGS, RecipeConfig
from tfrecall.recipe.job import run_baselines
from tfrecall.recipe.prepare import prepare, protocol_note
from tfrecall.serving.export import read_export_info


def load_recipe_config(model_dir: str) -> RecipeConfig:
    """The `RecipeConfig` a finished run recorded in its model_dir.

    Raises:
      ValueError: the model_dir holds no recipe.json (naming the argument).
    """
    path = os.path.join(model_dir, RECIPE_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"model_dir {model_dir!r} holds no {RECIPE_FILE}: give the model_dir "
                         "of a finished training run")
    with open(path) as f:
        return RecipeConfig.from_dict(json.load(f))


def check_export_path(export_path: str) -> dict:
    """The export's facts (`read_export_info`; {} for a foreign SavedModel).

    Raises:
      ValueError: the path is missing, is the export base directory rather than a
        version in it, or holds no SavedModel; the message names the version to give.
    """
    if not os.path.isdir(export_path):
        raise ValueError(f"export_path {export_path!r} does not exist; give an export version "
                         "directory, e.g. MODEL_DIR/export/1")
    if not os.path.isfile(os.path.join(export_path, "saved_model.pb")):
        found = sorted((int(v) for v in os.listdir(export_path) if v.isdigit()
                        and os.path.isfile(os.path.join(export_path, v, "saved_model.pb"))))
        if found:
            newest = os.path.join(export_path, str(found[-1]))
            raise ValueError(f"export_path {export_path!r} is an export base directory; give "
                             f"one of its versions, e.g. {newest}")
        raise ValueError(f"export_path {export_path!r} holds no SavedModel (saved_model.pb)")
    try:
        return read_export_info(export_path)
    except FileNotFoundError:
        return {}


@dataclasses.dataclass
class EvalResult:
    metrics: Dict[str, float]
    baselines: Dict[str, Dict[str, float]]
    note: str
    source: str
    notes: Sequence[str] = ()  # capped cut-offs and the like, one line each


def evaluate_trained(
    model_dir: str,
    ks: Sequence[int] = (1, 5, 10, 20, 50, 100, 200),
    baselines: Sequence[str] = ("popularity", "itemcf"),
    export_path: Optional[str] = None,
    **overrides,
) -> EvalResult:
    """Re-evaluates a trained run on its own held-out split (from its recipe.json).

    Cut-offs above the catalogue (or, through an export, above the K it returns) are
    capped, each cap stated in `EvalResult.notes`.

    Args:
      model_dir: a `run`'s model_dir (model.json, weights/, recipe.json).
      ks: cut-offs.
      baselines: baselines scored in the same harness.
      export_path: evaluate through this exported SavedModel's index (ANN recall
        included) instead of exact scoring with the model; it must come from the run
        in `model_dir` (its recorded recipe).
      **overrides: RecipeConfig fields to change (e.g. interactions=..., split=...).

    Raises:
      ValueError: no recipe.json in model_dir; a bad export_path, or one exported by
        a different run; nothing to evaluate in the held-out split.
    """
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"baselines: unknown {unknown}; known: {', '.join(BASELINES)}")
    recorded = load_recipe_config(model_dir)
    info = check_export_path(export_path) if export_path else {}
    if info.get("recipe") is not None:
        changed = rundir.different_settings(info["recipe"], recorded.to_dict(),
                                            RecipeConfig().to_dict(), OUTPUT_SETTINGS)
        if changed:
            raise ValueError(
                f"export_path {export_path!r} was exported by a different run than model_dir "
                f"{model_dir!r} ({rundir.summarize(changed)}); give that run's model_dir, or "
                "an export of this one")
    config = dataclasses.replace(recorded, **overrides)
    # The catalogue the run indexed (catalogue.json), not one rebuilt from the log: a warm
    # start's index keeps items the new log does not mention.
    prep = prepare(config, None if overrides else read_catalogue(model_dir))
    ks, note = cap_ks(ks, len(prep.eval_set.catalogue))
    notes = [note] if note else []
    if export_path:
        if info.get("k") is not None:
            ks, note = cap_ks(ks, int(info["k"]), "the items the export returns")
            notes += [note] if note else []
        metrics = evaluate_export(export_path, prep.eval_set, prep.user_table, ks)
        source = f"export {export_path}"
    else:
        model = load_model(model_dir)
        metrics = evaluate_model(model, prep.eval_set, prep.user_table, prep.eval_item_table,
                                 ks)
        source = f"model {model_dir} (exact scoring)"
    scored = dataclasses.replace(config, baselines=tuple(baselines))
    return EvalResult(metrics, run_baselines(scored, prep, ks, log=lambda *_: None),
                      protocol_note(config), source, tuple(notes))
