"""One training stage: a fresh (or warm-started) model adapted to its split, trained with
backups, checkpoints, TensorBoard and, given a validation slice, early stopping.

`run` calls it once ("final") or twice ("search" with validation, then "final" on the
whole training split for the best epoch count).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional, Sequence

import numpy as np

from tfrecall import cluster, rundir
from tfrecall import losses as losses_lib
from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec
from tfrecall.evaluation.harness import make_eval_set
from tfrecall.evaluation.validation import ValidationRecall
from tfrecall.features.text import TextEmbedding
from tfrecall.io.schema import RecallData
from tfrecall.models import TwoTowerModel
from tfrecall.models.optimizers import LazyAdam
from tfrecall.models.warm_start import warm_start
from tfrecall.recipe.config import (
    LOSSES,
    RecipeConfig,
    run_fingerprint,
    run_sampling,
    with_batch,
)
from tfrecall.recipe.prepare import (
    Prepared,
    build_specs,
    entity_table,
    item_adapt_table,
    user_feature_table,
)
from tfrecall.sampling.config import EASY_SOURCES
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore
from tfrecall.sampling.history import drop_candidates_from_history

# Over this many times the id rows one step can touch, "auto" takes LazyAdam.
LAZY_ADAM_ROW_RATIO = 4
_OPTIMIZERS = {"adam": keras.optimizers.Adam, "lazy_adam": LazyAdam,
               "adagrad": keras.optimizers.Adagrad, "sgd": keras.optimizers.SGD}


def build_model(
    user_specs: Sequence[FeatureSpec],
    item_specs: Sequence[FeatureSpec],
    user_table: dict,
    item_table: dict,
    config: RecipeConfig,
) -> TwoTowerModel:
    model = TwoTowerModel.from_specs(
        user_specs,
        item_specs,
        tower=config.tower,
        similarity=config.similarity,
        temperature=config.temperature,
        in_batch_negatives=config.sampling.view == "in_batch",
        xla_in_batch=config.jit_compile,
        fused_in_batch=config.fused_in_batch,
    )
    model.adapt(user_table, item_table)
    return model


def compiled_model(config: RecipeConfig, data: RecallData, train: RecallData,
                   catalogue, user_table: dict) -> TwoTowerModel:
    """The recipe's model for these tables, adapted and compiled (its optimizer and loss),
    outside a run: for benchmarks and notebooks that drive `fit` themselves. An unset
    batch size is resolved by `train`'s size, as a run does (`config.batch_for`); the
    model's learning rate is the resolved one."""
    config = with_batch(config, int(np.count_nonzero(train.interactions["positive"])))
    item_table = entity_table(data.items, catalogue, "item_id")
    user_specs, item_specs = build_specs(data, config)
    item_specs, item_adapt = item_adapt_table(item_specs, item_table, train,
                                              log=lambda *_: None)
    model = build_model(user_specs, item_specs, user_table, item_adapt, config)
    optimizer = choose_optimizer(config, model, log=lambda *_: None)
    model.compile(optimizer=_OPTIMIZERS[optimizer](learning_rate=config.learning_rate),
                  loss=make_loss(config.loss, config.jit_compile))
    return model


def embedding_rows(model: keras.Model) -> int:
    """Rows of the model's embedding tables (ids, categories, buckets, text hashes), built
    or not (an adapted model knows its vocabularies)."""
    rows = 0
    for layer in model.submodules:
        if isinstance(layer, keras.layers.Embedding):
            rows += int(layer.input_dim)
        elif isinstance(layer, TextEmbedding):
            rows += 2 * layer.hash_buckets + 1
    return rows


def choose_optimizer(config: RecipeConfig, model: keras.Model, log=print) -> str:
    """The optimizer's name; "auto" takes lazy row updates where the tables are large.

    Adam moves every row of a table at every step; `LazyAdam` only the rows the batch
    touched. A step touches at most ``batch_size * (1 + history_items)`` id rows (each
    row's positive and history); with tables over LAZY_ADAM_ROW_RATIO times that, Adam's
    whole-table passes are a large share of the step (a 25M-row log's 59k-item table:
    about 40% of a batch-128 step, BENCHMARKS.md "Lazy Adam"), and below it they are
    cheap, so small logs keep Adam (their results unchanged; lazy updates measured equal
    within seed noise on the development logs). The ratio 4 is not tuned: it only has
    to separate those two regimes, and every development log is far below it.
    """
    if config.optimizer != "auto":
        return config.optimizer
    rows = embedding_rows(model)
    touched = config.batch_size * (1 + config.history_items)
    name = "lazy_adam" if rows > LAZY_ADAM_ROW_RATIO * touched else "adam"
    log(f"optimizer: {name} (auto: {rows:,} embedding rows, "
        f"{'over' if name == 'lazy_adam' else 'within'} {LAZY_ADAM_ROW_RATIO} x the "
        f"{touched:,} id rows a step can touch)")
    return name


def make_loss(name: str, jit_compile: bool = False):
    return getattr(losses_lib, LOSSES[name][0])(jit_compile=jit_compile)


@dataclasses.dataclass
class Context:
    """What every training stage of one run shares (`run` builds it once)."""

    config: RecipeConfig
    prepared: Prepared
    user_specs: list
    item_specs: list
    previous: Optional[TwoTowerModel]
    ranker: object
    strategy: object
    log: object
    teacher: object = None  # a prepared tfrecall.recipe.teacher.EaseTeacher, or None


@dataclasses.dataclass
class Trained:
    """One training stage's outcome."""

    model: TwoTowerModel
    history: object
    seconds: float
    examples: int
    curve: list
    best_epoch: Optional[int]
    optimizer: str = ""  # the name trained with ("auto" resolved)


def train_stage(ctx: Context, fit: RecallData, validation: Optional[RecallData],
                epochs: int, stage: str) -> Trained:
    """Builds a fresh model adapted to `fit` and trains it for at most `epochs` epochs.

    With `validation`, Recall@max(ks) on it is computed after every epoch and Keras'
    EarlyStopping keeps the best epoch's weights. `stage` names the stage's own backup,
    checkpoint and TensorBoard folders under model_dir ("search", "final").
    """
    config, log, strategy, prep = ctx.config, ctx.log, ctx.strategy, ctx.prepared
    if config.batch_size is None:
        raise ValueError("train_stage needs a resolved batch size: build the Context from "
                         "recipe.config.with_batch(config, training positives)")
    # The whole training split's table is prepare's (a second copy of every history held
    # the 25M-row run's peak: 3.3 GiB); a search stage's fit split needs its own.
    user_table = (prep.user_table if fit is prep.train
                  else user_feature_table(prep.data, fit, prep.user_ids, config))
    # Vocabularies come from the training side only, so held-out ids behave like the
    # unseen ids of production (OOV), and the catalogue's item features are all known.
    fit_users = set(fit.interactions["user_id"].tolist())
    # One set lookup per user: numpy 2's isin compares object arrays pair by pair (hours
    # for a 25M-row log's 160k users).
    in_fit = np.fromiter((u in fit_users for u in prep.user_ids.tolist()), bool,
                         count=len(prep.user_ids))
    user_adapt = {k: v[in_fit] for k, v in user_table.items()}
    parameter_server = config.strategy == "parameter_server"
    in_batch = config.sampling.view == "in_batch"
    # The item id's vocabulary counts training positives (min_count), in a warm start too.
    item_specs, item_adapt = item_adapt_table(ctx.item_specs, prep.item_table, fit, log)
    with strategy.scope():
        if ctx.previous is not None:
            # Continue the old model: its architecture and weights, vocabularies grown
            # with this log's new ids (tfrecall.models.warm_start).
            model = warm_start(ctx.previous, user_adapt, item_adapt,
                               in_batch_negatives=in_batch, log=log)
        else:
            model = build_model(ctx.user_specs, item_specs, user_adapt, item_adapt, config)
    user_store = FeatureStore(user_table, "user_id", prep.user_ids)
    item_store = FeatureStore(prep.data.items, "item_id", prep.catalogue)
    loss = make_loss(config.loss, config.jit_compile)
    sampling = run_sampling(config, len(prep.catalogue))
    if config.sampling.log_q and not sampling.log_q:
        log(f"log Q: not applied: loss {config.loss!r} scores raw similarities (only the "
            "softmax, NCE and sampled softmax losses are defined on corrected logits)")

    # The teacher's items join the sampler's positives only (not the history or vocabularies).
    sample_data = fit if ctx.teacher is None else ctx.teacher.augment(
        fit, prep.user_ids, prep.catalogue, log)

    def training_dataset(sampling, batch_size=config.batch_size, shard=(1, 0)):
        samples = TrainingSamples(sample_data, prep.catalogue, user_store, item_store,
                                  sampling, batch_size, ranker_lists=ctx.ranker, shard=shard)
        dataset = samples.dataset
        if config.history_items:
            dataset = dataset.map(lambda x, y: (drop_candidates_from_history(x), y),
                                  num_parallel_calls=tf.data.AUTOTUNE)
        return samples, dataset

    samples, dataset = training_dataset(sampling)
    log(samples.describe())
    # One iterator over a repeated dataset: Keras would otherwise build a new iterator
    # (and re-trace the input functions) every epoch. Each pass draws fresh negatives.
    fit_input = dataset.repeat()
    if parameter_server:
        # Each worker builds its own input pipeline: ClusterCoordinator traces this function
        # and runs it on every worker (Keras 2 fit under ParameterServerStrategy takes a
        # DatasetCreator). Workers draw their own order and negatives (seed + worker), so
        # they do not train on the same batches in lockstep.
        def dataset_fn(context: tf.distribute.InputContext):
            seed = sampling.seed + context.input_pipeline_id
            return training_dataset(dataclasses.replace(sampling, seed=seed))[1].repeat()

        fit_input = keras.utils.experimental.DatasetCreator(dataset_fn)
    elif strategy.num_replicas_in_sync > 1:
        # Synchronous replicas (multi_worker, mirrored): one input pipeline per worker,
        # through tf.distribute's own per-worker dataset functions, each building only
        # its shard of every epoch's batches at the per-replica batch size. Feeding the
        # global dataset instead lets tf.distribute auto-shard it by data, where every
        # worker builds every global batch and keeps its slice: N times the input work.
        replicas = strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"batch_size {config.batch_size} is the global batch: it must "
                             f"divide evenly over the {replicas} replicas in sync")

        # The shared negatives of an in_batch batch are the global batch's too: each
        # replica draws its share, as tf.distribute's split of a global batch gave it.
        local = sampling
        if sampling.view == "in_batch" and set(sampling.negatives) & set(EASY_SOURCES):
            local = dataclasses.replace(
                sampling, num_negatives=max(1, sampling.num_negatives // replicas))

        def dataset_fn(context: tf.distribute.InputContext):
            shard = (context.num_input_pipelines, context.input_pipeline_id)
            per_replica = context.get_per_replica_batch_size(config.batch_size)
            return training_dataset(local, per_replica, shard)[1].repeat()

        fit_input = keras.utils.experimental.DatasetCreator(dataset_fn)
    with strategy.scope():
        optimizer = choose_optimizer(config, model, log)
        model.compile(optimizer=_OPTIMIZERS[optimizer](learning_rate=config.learning_rate),
                      loss=loss)
        # Build the variables before fit, so BackupAndRestore can restore into them.
        model(next(iter(dataset.take(1)))[0])

    os.makedirs(config.model_dir, exist_ok=True)
    if parameter_server:
        # One replica per worker step: TwoTowerModel's cross-replica gather of in-batch
        # negatives is skipped (it needs num_replicas_in_sync > 1).
        jobs = cluster.read_tf_config()["cluster"]
        log(f"parameter_server: {len(jobs['worker'])} worker(s), {len(jobs['ps'])} ps, "
            f"replicas per step: {strategy.num_replicas_in_sync}")
        layout = cluster.variable_layout(model)
        log(cluster.describe_layout(layout))
        with open(os.path.join(config.model_dir, "variable_layout.json"), "w") as f:
            json.dump(layout, f, indent=1)

    backup_dir = os.path.join(config.model_dir, "backup", stage)
    # The backup records the settings and data it was made with; resuming it under other
    # ones would silently mix two runs (recipe.json records only the new settings).
    fingerprint = run_fingerprint(config)
    if rundir.check_backup(backup_dir, fingerprint, os.path.join(config.model_dir, "backup")):
        log(f"resuming from the backup in {backup_dir} (an earlier run of this model_dir "
            "was interrupted)")
    rundir.write_fingerprint(backup_dir, fingerprint)
    callbacks, validator = [], None
    if validation is not None:
        # Full-catalogue validation Recall@K each epoch (into the logs: TensorBoard and
        # the History see it), then Keras' EarlyStopping on it, best weights restored.
        val_k = min(max(config.ks), len(prep.catalogue))  # capped as the test metrics are
        validator = ValidationRecall(
            make_eval_set(fit, validation, prep.user_ids, prep.catalogue, config.exclude_train),
            user_table, prep.item_table, k=val_k)
        callbacks += [validator, keras.callbacks.EarlyStopping(
            validator.monitor, mode="max", patience=config.patience,
            restore_best_weights=True)]
        log(f"validation: {len(validator.eval_set.targets)} users; early stopping on "
            f"recall@{val_k} (patience {config.patience}, at most {epochs} epochs)")
    callbacks += [
        # Saves the model, optimizer and epoch counter after every epoch and restores them
        # when the same command runs again after a crash; deleted when fit completes.
        keras.callbacks.BackupAndRestore(backup_dir),
        keras.callbacks.ModelCheckpoint(
            os.path.join(config.model_dir, "checkpoints", stage, "ckpt-{epoch:03d}"),
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(os.path.join(config.model_dir, "logs", stage),
                                    profile_batch=0),
    ]
    fit_start = time.time()
    history = model.fit(fit_input, epochs=epochs,
                        steps_per_epoch=samples.info.batches_per_epoch, callbacks=callbacks,
                        verbose=config.verbose)
    seconds = time.time() - fit_start
    rundir.clear_backup(backup_dir)
    if history.epoch and history.epoch[0] > 0:
        log(f"resumed: trained epochs {history.epoch[0] + 1}..{history.epoch[-1] + 1}")
    losses_seen = history.history.get("loss", [])  # empty if a resume found nothing left
    if losses_seen and not np.isfinite(losses_seen[-1]):
        raise FloatingPointError(f"training diverged: final loss {losses_seen[-1]}")
    curve = list(history.history.get(validator.monitor, [])) if validator else []
    best_epoch = (history.epoch[int(np.argmax(curve))] + 1) if curve else None
    if curve:
        log(f"validation recall@{validator.k} by epoch: "
            + " ".join(f"{v:.4f}" for v in curve) + f"; best epoch {best_epoch}")
    return Trained(model, history, seconds, samples.info.rows_per_epoch * len(history.epoch),
                   curve, best_epoch, optimizer)
