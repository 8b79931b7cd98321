"""`run`: the end-to-end run as one library call: read -> split -> samples -> fit ->
evaluate -> export. Nothing here reads flags or global state; `pipelines.train` turns
flags into a `RecipeConfig` and calls it, and user code can do the same."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Dict, Optional, Sequence

import numpy as np

from tfrecall import cluster, rundir
from tfrecall._backend import keras
from tfrecall.data import splits, synthetic
from tfrecall.evaluation.cold_start import evaluate_cold_start_baselines
from tfrecall.evaluation.harness import cap_ks, evaluate_baselines, evaluate_model
from tfrecall.io.feature_kinds import describe_specs
from tfrecall.models.persistence import (
    RECIPE_FILE,
    load_model,
    previous_catalogue,
    save_model,
)
from tfrecall.recipe.channels import ChannelRun, channel_factory, run_channels
from tfrecall.recipe.config import OUTPUT_SETTINGS, RecipeConfig, needs_ranker, with_batch
from tfrecall.recipe.prepare import build_specs, prepare, protocol_note
from tfrecall.recipe.stage import Context, train_stage
from tfrecall.recipe.teacher import resolve_teacher
from tfrecall.serving.export import export_saved_model


@dataclasses.dataclass
class RunResult:
    metrics: Dict[str, float]
    baselines: Dict[str, Dict[str, float]]
    examples_per_sec: float
    train_examples: int
    train_seconds: float
    wall_seconds: float
    export_path: Optional[str]
    model_dir: str
    data_name: str
    notes: Sequence[str] = ()
    # Validation Recall@K after each epoch (empty without a validation slice), the
    # 1-based epoch whose weights were kept, and the epochs run.
    validation_curve: Sequence[float] = ()
    best_epoch: Optional[int] = None
    epochs_run: int = 0
    # With --channels beyond two_tower: each channel and the merge (`ChannelRun`).
    channels: Optional[ChannelRun] = None
    optimizer: str = ""  # the final stage's optimizer ("auto" resolved)
    batch_size: int = 0  # the batch size and learning rate trained with (by log size when unset)
    learning_rate: float = 0.0
    # EASE as a teacher: {"used": bool}, and with --teacher=auto the best validation
    # recall with and without it ("best_validation").
    teacher: Dict[str, object] = dataclasses.field(default_factory=dict)

    def summary_json(self) -> dict:
        return {
            "data": self.data_name,
            "metrics": {k: round(v, 5) for k, v in self.metrics.items()},
            "baselines": {
                b: {k: round(v, 5) for k, v in m.items()} for b, m in self.baselines.items()
            },
            "examples_per_sec": round(self.examples_per_sec, 1),
            "optimizer": self.optimizer,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "teacher": self.teacher,
            "train_examples": self.train_examples,
            "train_seconds": round(self.train_seconds, 2),
            "wall_seconds": round(self.wall_seconds, 2),
            "export_path": self.export_path,
            "model_dir": self.model_dir,
            "validation": {
                "recall_curve": [round(v, 5) for v in self.validation_curve],
                "best_epoch": self.best_epoch,
                "epochs_run": self.epochs_run,
            },
            **({} if self.channels is None else {"channels": self.channels.summary_json()}),
        }


def run(config: RecipeConfig, log=print) -> RunResult:
    """Trains, evaluates and exports; returns the figures (see `RunResult`).

    Training has two stages when the config has a validation slice: "search" trains on
    the training split minus the slice with early stopping, which picks the number of
    epochs; "final" (``refit``) trains a fresh model on the whole training split for
    that many epochs, so no positive is lost to validation. Without ``refit`` the search
    stage's best model is the result.
    """
    wall_start = time.time()
    if config.strategy == "parameter_server":
        cluster.read_tf_config()  # a bad cluster fails now, not after the data is read
    check_run_dirs(config, log)  # paths and the model_dir's run, before the data is read
    keras.utils.set_random_seed(config.seed)
    previous = load_model(config.warm_start_from) if config.warm_start_from else None
    # Items the old model knew stay in the catalogue (and the index) even when the new log
    # does not mention them.
    prep = prepare(config, also_items=None if previous is None else previous_catalogue(
        config.warm_start_from, previous))
    data, train = prep.data, prep.train
    ks, ks_note = cap_ks(config.ks, len(prep.eval_set.catalogue))
    # The validation slice (epochs are chosen on it) comes out of the training split, so
    # the test split is never used for any choice.
    validation = None
    if config.validation_fraction > 0:
        fit, validation = splits.validation_split(train, config.validation_fraction,
                                                  seed=config.split_seed)
        if not validation.interactions["positive"].any():
            log("validation: no user has two training positives to spare one; training "
                f"runs all {config.epochs} epochs without early stopping")
            validation = None
    user_specs, item_specs = build_specs(data, config)
    # The batch size by the log's size (the whole training split's, so both stages agree).
    # recipe.json records the settings as given (a rerun of the same command compares
    # like with like); the summary and the export record what was resolved.
    requested = config
    config = with_batch(config, int(np.count_nonzero(train.interactions["positive"])), log)
    log(f"data: {data.name}: {data.num_interactions} interactions, {len(prep.user_ids)} users, "
        f"{len(prep.catalogue)} items; train {train.num_interactions} rows, test "
        f"{prep.test.num_interactions} rows (exposures included; the metrics count the "
        "held-out pairs: distinct positive (user, item) pairs)"
        + ("" if validation is None else
           f"; validation {validation.num_interactions} of the training rows"))
    if previous is None:
        log("user features (inferred kinds; override with feature_config):\n"
            + describe_specs(user_specs, prep.user_table))
        log("item features:\n" + describe_specs(item_specs, data.items))
    else:  # a warm start keeps the old model's features and kinds, whatever the files hold
        log(f"user features (kept from {config.warm_start_from}):\n"
            + describe_specs(previous.user_tower.encoder.specs, prep.user_table))
        log("item features (kept):\n"
            + describe_specs(previous.item_tower.encoder.specs, data.items))
    if ks_note:
        log(ks_note)
    # Synthetic worlds come with a ranker's full top-N per request; other logs use the
    # ranker_score of their logged rows (see tfrecall.sampling.dataset; a world without
    # ranker lists is refused by RecipeConfig).
    ranker = (synthetic.ranker_lists(prep.world) if prep.world is not None
              and needs_ranker(config) else None)
    strategy = cluster.make_strategy(config.strategy, config.ps_min_shard_bytes)
    chief = cluster.is_chief(strategy)
    teacher_mode, teacher = resolve_teacher(config, train, prep.user_ids, prep.catalogue,
                                            validation is not None, log, k=max(ks))
    ctx = Context(config, prep, user_specs, item_specs, previous, ranker, strategy, log,
                  teacher if teacher_mode == "on" else None)

    teacher_choice, searched = None, []  # searched: a search stage not kept (its time counts)
    if validation is None:
        search = final = train_stage(ctx, train, None, config.epochs, "final")
    else:
        search = final = train_stage(ctx, fit, validation, config.epochs, "search")
        if teacher_mode == "auto":
            # The same search with EASE's lists among the positives; the better best
            # validation recall decides what the final stage trains with (a tie: none).
            keras.utils.set_random_seed(config.seed)
            taught_ctx = dataclasses.replace(ctx, teacher=teacher)
            taught = train_stage(taught_ctx, fit, validation, config.epochs, "search_teacher")
            with_, without = best_validation(taught), best_validation(search)
            use = with_ > without
            teacher_choice = {"used": use, "best_validation": {
                "without": round(without, 5), "with": round(with_, 5)}}
            log(f"teacher: {'on' if use else 'off'} (auto: best validation recall "
                f"{with_:.4f} with EASE's lists, {without:.4f} without)")
            if use:
                searched, search, final, ctx = [search], taught, taught, taught_ctx
            else:
                searched = [taught]
        if config.refit:
            log(f"refit: a fresh model on the whole training split for {search.best_epoch} "
                "epoch(s), the search stage's best")
            keras.utils.set_random_seed(config.seed)
            final = train_stage(ctx, train, None, search.best_epoch, "final")
    model = final.model
    if chief:
        save_model(model, config.model_dir, requested.to_dict(),
                   prep.export_item_table["item_id"])
    else:
        # Every worker must take part in saving (variables may need collectives); only the
        # chief's copy is kept (the Keras multi-worker convention).
        with tempfile.TemporaryDirectory() as tmp:
            save_model(model, tmp, requested.to_dict(), prep.export_item_table["item_id"])

    # Evaluation on the held-out split, full catalogue, training positives excluded; the
    # users' history is their whole training split, as serving would feed it.
    metrics = evaluate_model(model, prep.eval_set, prep.user_table, prep.eval_item_table, ks)
    # The teacher chose EASE's lambda as the baseline would (`select_ease_l2` on the same
    # training pairs and indices, at max(ks)): the baseline reuses it, not the grid again.
    same_pairs = (prep.eval_set.user_ids is prep.user_ids
                  and prep.eval_set.catalogue is prep.catalogue)
    baselines = run_baselines(config, prep, ks, log,
                              ease_l2=teacher.l2 if teacher is not None and same_pairs else None)
    channels = None
    if config.channels != ("two_tower",):
        channels = run_channels(
            config, prep, final.model.item_tower.encoder.specs, ks, model,
            search_model=search.model if validation is not None else None,
            fit=fit if validation is not None else None, validation=validation, log=log)
    export_path = None
    export_dir = config.export_dir or os.path.join(config.model_dir, "export")
    if config.export and chief:
        export_path = export_saved_model(
            model, prep.export_item_table, export_dir, k=config.export_k, index=config.index,
            tuning_queries=prep.user_table, log=log,
            metadata={"recipe": requested.to_dict(), "metrics": metrics,
                      "trained_with": {"batch_size": config.batch_size,
                                       "learning_rate": config.learning_rate,
                                       "optimizer": final.optimizer},
                      **({} if channels is None else {"channels": channels.summary_json()})},
            module_factory=None if channels is None else channel_factory(channels),
        )
    stages = searched + ([search] if search is final else [search, final])
    seconds = sum(s.seconds for s in stages)
    examples = sum(s.examples for s in stages)
    return RunResult(
        metrics=metrics,
        baselines=baselines,
        examples_per_sec=examples / seconds if seconds > 0 else 0.0,
        train_examples=examples,
        train_seconds=seconds,
        wall_seconds=time.time() - wall_start,
        export_path=export_path,
        model_dir=config.model_dir,
        data_name=data.name,
        notes=(protocol_note(config),) + ((ks_note,) if ks_note else ()),
        validation_curve=search.curve,
        best_epoch=search.best_epoch,
        epochs_run=sum(len(s.history.epoch) for s in stages),
        channels=channels,
        optimizer=final.optimizer,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        teacher=teacher_choice if teacher_choice is not None else {"used": teacher_mode == "on"},
    )


def best_validation(stage) -> float:
    """A search stage's best validation recall (-inf if it ran no epoch: a finished resume)."""
    return max(stage.curve) if stage.curve else float("-inf")


def run_baselines(config: RecipeConfig, prep, ks, log=print,
                  ease_l2=None) -> Dict[str, Dict[str, float]]:
    """The config's baselines on the held-out split; with ``split="item"`` (cold start)
    popularity by feature instead, the others having no row for a cold item. `ease_l2`:
    EASE's lambda already chosen on these training pairs (None: chosen here)."""
    if config.split == "item":
        if config.baselines:
            log(f"cold start: baselines {', '.join(config.baselines)} cannot score items "
                "they never saw; reporting popularity by feature")
        return evaluate_cold_start_baselines(prep.train, prep.data.items, prep.eval_set, ks,
                                             log)
    return evaluate_baselines(prep.eval_set, ks, config.baselines, log=log, ease_l2=ease_l2)


def check_run_dirs(config: RecipeConfig, log=print) -> None:
    """Checks a run's directories before any data is read.

    model_dir (and export_dir when exporting) must be usable directories;
    warm_start_from must hold a trained model; a model_dir whose recipe.json records
    a different run is refused unless ``overwrite`` (or a warm start from that same
    model_dir) says to replace it. ``overwrite`` also discards an interrupted run's
    backup there.

    Raises:
      ValueError: naming the argument, the path and what to do.
    """
    rundir.writable_dir(config.model_dir, "model_dir")
    if config.export:
        rundir.writable_dir(config.export_dir or os.path.join(config.model_dir, "export"),
                            "export_dir")
    warm = config.warm_start_from
    if warm and not os.path.isfile(os.path.join(warm, "model.json")):
        raise ValueError(f"warm_start_from {warm!r} holds no trained model (model.json); "
                         "give the model_dir of a finished training run")
    replaces = config.overwrite or (
        warm and os.path.realpath(warm) == os.path.realpath(config.model_dir))
    recorded = rundir.read_json(os.path.join(config.model_dir, RECIPE_FILE))
    if recorded is not None and not replaces:
        changed = rundir.different_settings(recorded, config.to_dict(),
                                            RecipeConfig().to_dict(), OUTPUT_SETTINGS)
        if changed:
            raise ValueError(
                f"model_dir {config.model_dir!r} holds a different run "
                f"({rundir.summarize(changed)}); pass overwrite=True to replace it, or give "
                "another model_dir")
    backup = os.path.join(config.model_dir, "backup")
    if config.overwrite and os.path.isdir(backup):
        shutil.rmtree(backup)
        log(f"overwrite: discarded the interrupted run's backup in {backup}")
