"""The end-to-end run as one library call: read -> split -> samples -> fit -> evaluate -> export.

`pipelines.train` turns flags into a `RecipeConfig` and calls `run`; user code can do
the same. Nothing here reads flags or global state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrecall import cluster, rundir
from tfrecall import losses as losses_lib
from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.data import longtail, splits, synthetic
from tfrecall.evaluation.harness import (
    BASELINES,
    cap_ks,
    check_evaluable,
    evaluate_baselines,
    evaluate_model,
    make_eval_set,
)
from tfrecall.evaluation.validation import ValidationRecall
from tfrecall.io.feature_kinds import (
    config_source,
    describe_specs,
    infer_feature_specs,
    load_feature_config,
)
from tfrecall.io.readers import load_data
from tfrecall.io.schema import RecallData
from tfrecall.models import TwoTowerModel
from tfrecall.models.warm_start import default_batch, warm_start
from tfrecall.sampling import config as sampling_lib
from tfrecall.sampling import dataset as training_lib
from tfrecall.sampling.features import FeatureStore
from tfrecall.sampling.history import HISTORY_FEATURE, drop_candidates_from_history, user_histories
from tfrecall.serving.export import export_saved_model, read_export_info
from tfrecall.serving.index import INDEX_KINDS

VIEWS = sampling_lib.VIEWS  # in_batch, pointwise, pairwise, listwise, distill
# The recipe's negatives where the config leaves them unset (`RecipeConfig.resolve_negatives`).
DEFAULT_IN_BATCH_NEGATIVES = ("in_batch", "uniform")
DEFAULT_SHARED_NEGATIVES = 256  # uniform negatives shared by an in_batch batch
DEFAULT_NEGATIVES_PER_POSITIVE = 3  # pointwise 1:3 (pairwise random takes 1)
SPLITS = ("random", "temporal", "leave_last")
WORLDS = ("default", "longtail")  # built-in synthetic worlds (no download)
STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")
SIMILARITIES = ("cosine", "dot")
OPTIMIZERS = ("adam", "adagrad", "sgd")

# Loss name -> (class, the views it trains on).
LOSSES = {
    "softmax": ("SoftmaxLoss", ("in_batch", "listwise")),
    "sampled_softmax": ("SampledSoftmaxLoss", ("in_batch", "listwise")),
    "kl": ("KLLoss", ("listwise", "distill")),
    "listnet": ("ListNetLoss", ("listwise", "distill")),
    "listmle": ("ListMLELoss", ("listwise", "distill")),
    "hinge": ("TripletHingeLoss", ("pairwise", "listwise")),
    "logistic": ("TripletLogisticLoss", ("pairwise", "listwise")),
    "bpr": ("BPRLoss", ("pairwise", "listwise")),
    "bce": ("PointwiseBCELoss", ("pointwise", "listwise")),
    # NEG/NCE score a list that holds a positive and its negatives together, so they need
    # lists (or the in-batch matrix), not the pointwise view's one-item rows.
    "neg": ("NegativeSamplingLoss", ("listwise", "in_batch")),
    "nce": ("NCELoss", ("in_batch", "listwise")),
}


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """Everything one training run needs (see `pipelines/train.py --help` for each field)."""

    interactions: Optional[str] = None  # None: the built-in synthetic world
    users: Optional[str] = None
    items: Optional[str] = None
    feature_config: Optional[str] = None
    movielens_min_rating: float = 0.0
    # The built-in world when there is no interactions file: "default" (a feed with
    # exposures, graded events, user and item features) or "longtail" (an implicit play
    # log, Zipf popularity, no features; tfrecall.data.longtail). Sizes: None = the
    # world's own (3000 x 1500 and 1900 x 17600).
    synthetic_world: str = "default"
    synthetic_users: Optional[int] = None
    synthetic_items: Optional[int] = None
    synthetic_seed: int = 0
    split: str = "random"  # random | temporal | leave_last
    leave_last_n: int = 1
    test_fraction: float = 0.2
    split_seed: int = 42
    view: str = "in_batch"
    loss: str = "softmax"
    log_q: bool = True
    # Comma-separated sources; "": the recipe's default for the view (`resolve_negatives`):
    # mixed in-batch + uniform for the in_batch view, the sampler's default elsewhere.
    negatives: str = ""
    num_negatives: Optional[int] = None  # None: the view's default (`resolve_negatives`)
    list_size: int = 8
    list_mode: str = "sampled"
    pairwise_mode: str = "random"
    hard_negative_window: Tuple[int, int] = (100, 500)
    easy_hard_ratio: float = 100.0
    popularity_alpha: float = 0.75
    distill_top_n: int = 400
    frequency: str = "exact"
    # Small batches, few epochs: on the sparse logs recall trains on (a handful of positives
    # per user) the gradient noise of batch 128 regularizes the id embeddings; batch 1024 x 5
    # epochs gave R@100 0.72 on the synthetic default, 128 x 3 gives 0.76 (0.78 with the
    # id threshold and mixed negatives below), and ml-latest-small stays at 1.2x ItemCF
    # (BENCHMARKS.md, "Default recipe").
    batch_size: int = 128
    # With a validation slice (validation_fraction > 0) `epochs` is a ceiling: training
    # stops when validation Recall@max(ks) has not improved for `patience` epochs and
    # the best epoch's weights are restored. Without one, exactly `epochs` are run.
    epochs: int = 30
    validation_fraction: float = 0.1
    patience: int = 2
    # Then train a fresh model on the whole training split for the best epoch count (no
    # positive is lost to validation; twice the training time).
    refit: bool = True
    learning_rate: float = 0.01
    optimizer: str = "adam"
    similarity: str = "cosine"
    temperature: float = 0.05
    tower: TowerConfig = TowerConfig()
    id_embedding_dim: int = 32
    # Item ids with fewer training positives than this share the item tower's OOV row, so
    # the long tail (and every new item) is scored by its features, not by an id row
    # trained on a handful of examples (BENCHMARKS.md: +0.008 R@100 on the synthetic
    # default, +0.008 on ml-latest-small). A feature config's min_count for item_id wins.
    item_id_min_count: int = 5
    # The user's last N training positives, embedded through the item tower's id table
    # (0 disables). With no user id embedding (the default) the user tower reads features
    # and history only, so a user never seen in training, or one whose history grew since,
    # is served like a known one without retraining. Both decided on every development
    # log (BENCHMARKS.md, "Default recipe"): +0.008 R@100 on the synthetic feed, +0.007
    # on the long-tail world (seed 0), -0.005 on ml-latest-small (mean of seeds 0-2).
    history_items: int = 50
    user_id_embedding: bool = False
    ks: Tuple[int, ...] = (10, 50, 100)
    exclude_train: bool = True
    baselines: Tuple[str, ...] = BASELINES
    model_dir: str = "runs/default"
    # A model_dir holding a different run (its recipe.json differs) is refused unless
    # this is set (or the run warm-starts from that model_dir); set, it also discards
    # an interrupted run's backup there.
    overwrite: bool = False
    export_dir: Optional[str] = None  # None: MODEL_DIR/export
    export: bool = True
    index: str = "scann"
    export_k: int = 100
    jit_compile: bool = False  # XLA for the loss and the (B, B) in-batch scores (slower on CPU)
    warm_start_from: Optional[str] = None  # a model_dir to continue from (new logs)
    strategy: str = "default"  # default | mirrored | multi_worker | parameter_server (TF_CONFIG)
    # parameter_server: variables larger than this are split over the ps tasks.
    ps_min_shard_bytes: int = cluster.DEFAULT_MIN_SHARD_BYTES
    seed: int = 0
    verbose: int = 1

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.view not in LOSSES[self.loss][1]:
            raise ValueError(
                f"loss {self.loss!r} trains on the view(s) {LOSSES[self.loss][1]}, "
                f"not {self.view!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.synthetic_world not in WORLDS:
            raise ValueError(f"synthetic_world must be one of {WORLDS}, got "
                             f"{self.synthetic_world!r}")
        for name in ("synthetic_users", "synthetic_items"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines: unknown {unknown}; known: {', '.join(BASELINES)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got "
                             f"{self.validation_fraction}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        for name in ("batch_size", "epochs", "export_k", "id_embedding_dim",
                     "ps_min_shard_bytes", "item_id_min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_negatives is not None and self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        if self.list_size < 2:
            raise ValueError(f"list_size must be >= 2, got {self.list_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        self._check_choices_and_ranges()
        try:
            self.sampling()  # the sampling fields, checked by their owner
        except ValueError as e:  # its messages name SamplingConfig's fields, which are ours
            raise ValueError(str(e).replace("SamplingConfig.", "")) from None
        if (self.interactions is None and self.synthetic_world != "default"
                and needs_ranker(self)):
            raise ValueError(f"the {self.synthetic_world!r} world has no ranker lists, which "
                             "this sampling config reads (distill view, hard negatives or "
                             "ranked pairs)")
        if self.strategy == "parameter_server" and self.frequency == "streaming":
            # The streaming estimator is a tf.Variable updated inside the input pipeline;
            # ClusterCoordinator forbids variables in the per-worker dataset function.
            raise ValueError("frequency='streaming' keeps state in the input pipeline, which "
                             "strategy 'parameter_server' cannot (each worker builds its own "
                             "pipeline); use frequency='exact'")

    def _check_choices_and_ranges(self) -> None:
        """The checks a field's value needs before any data is read (one line each)."""
        for name, allowed in (("similarity", SIMILARITIES), ("optimizer", OPTIMIZERS),
                              ("index", INDEX_KINDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {tuple(allowed)}, got "
                                 f"{getattr(self, name)!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.split != "leave_last" and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.leave_last_n < 1:
            raise ValueError(f"leave_last_n must be >= 1, got {self.leave_last_n}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be integers >= 1, got {list(self.ks)}")
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tower"] = self.tower.to_dict()
        d["ks"] = list(self.ks)
        d["baselines"] = list(self.baselines)
        d["hard_negative_window"] = list(self.hard_negative_window)
        return d

    def resolve_negatives(self, catalogue_size: Optional[int] = None) -> Tuple[Optional[str], int]:
        """The run's negative sources and count, defaults filled in.

        The in_batch view defaults to mixed negative sampling: the batch's positives plus
        `DEFAULT_SHARED_NEGATIVES` uniform items shared by the batch, each source with its
        own log Q (at most the catalogue's size). The uniform items give the long tail
        negatives that in-batch sampling (popularity-weighted by construction) rarely
        draws: +0.008 R@100 on the synthetic default, equal on ml-latest-small
        (BENCHMARKS.md). Other views keep the sampler's default sources and
        `DEFAULT_NEGATIVES_PER_POSITIVE`.

        Returns:
          ``(negatives or None for the sampler's default, num_negatives)``.
        """
        negatives = self.negatives or None
        if self.view == "in_batch":
            negatives = negatives or ",".join(DEFAULT_IN_BATCH_NEGATIVES)
            num = self.num_negatives
            if num is None:
                num = DEFAULT_SHARED_NEGATIVES
                if catalogue_size is not None:
                    num = max(1, min(num, catalogue_size))
            return negatives, num
        num = DEFAULT_NEGATIVES_PER_POSITIVE if self.num_negatives is None else self.num_negatives
        return negatives, num

    def sampling(self, requires_log_q: bool = False, catalogue_size: Optional[int] = None,
                 ) -> "sampling_lib.SamplingConfig":
        """The `tfrecall.sampling.dataset.SamplingConfig` of this run (validates it too)."""
        negatives, num_negatives = self.resolve_negatives(catalogue_size)
        return sampling_lib.SamplingConfig(
            view=self.view,
            negatives=negatives,
            num_negatives=num_negatives,
            list_size=self.list_size,
            list_mode=self.list_mode,
            pairwise_mode=self.pairwise_mode,
            hard_negative_window=tuple(self.hard_negative_window),
            easy_hard_ratio=self.easy_hard_ratio,
            popularity_alpha=self.popularity_alpha,
            distill_top_n=self.distill_top_n,
            log_q=self.log_q or requires_log_q,
            frequency=self.frequency,
            seed=self.seed,
        )

    @classmethod
    def from_dict(cls, d: dict) -> "RecipeConfig":
        """The inverse of `to_dict` (unknown keys are an error, naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"recipe config: unknown field(s) {unknown}")
        d = dict(d)
        if "tower" in d:
            d["tower"] = TowerConfig.from_dict(d["tower"])
        for key in ("ks", "baselines", "hard_negative_window"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


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

    def summary_json(self) -> dict:
        return {
            "data": self.data_name,
            "metrics": {k: round(v, 5) for k, v in self.metrics.items()},
            "baselines": {
                b: {k: round(v, 5) for k, v in m.items()} for b, m in self.baselines.items()
            },
            "examples_per_sec": round(self.examples_per_sec, 1),
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
        }


def split_data(data: RecallData, config: RecipeConfig) -> Tuple[RecallData, RecallData]:
    if config.split == "random":
        return splits.random_split(data, config.test_fraction, config.split_seed)
    if config.split == "temporal":
        return splits.temporal_split(data, config.test_fraction)
    return splits.leave_last_n_split(data, config.leave_last_n)


def load_recall_data(config: RecipeConfig) -> RecallData:
    """The data set named by the config: files (auto-detected MovieLens or CSV) or synthetic."""
    if config.interactions is None:
        return synthetic_world(config).data
    return load_data(
        config.interactions,
        users=config.users,
        items=config.items,
        movielens_min_rating=config.movielens_min_rating,
        feature_config=_feature_overrides(config),
    )


def synthetic_world(config: RecipeConfig):
    """The built-in world of `config.synthetic_world` (a `SyntheticWorld` or `LongTailWorld`)."""
    if config.users or config.items:
        raise ValueError("user and item tables (users, items) need an interactions log; "
                         "the built-in worlds bring their own")
    sizes = {name: value for name, value in (("num_users", config.synthetic_users),
                                              ("num_items", config.synthetic_items))
             if value is not None}
    if config.synthetic_world == "longtail":
        return longtail.generate_longtail(longtail.LongTailConfig(
            seed=config.synthetic_seed, **sizes))
    return synthetic.generate(synthetic.SyntheticConfig(seed=config.synthetic_seed, **sizes))


def _feature_overrides(config: RecipeConfig) -> dict:
    return load_feature_config(config.feature_config) if config.feature_config else {}


def _entity_table(table, ids: np.ndarray, key: str) -> dict:
    """The feature table aligned with `ids` (ids only in the log get missing values)."""
    if table is None:
        return {key: ids}
    index = {v: i for i, v in enumerate(table[key].tolist())}
    rows = np.fromiter((index.get(i, -1) for i in ids.tolist()), np.int64, count=len(ids))
    out = {key: ids}
    for name, col in table.items():
        if name == key:
            continue
        fill = np.nan if col.dtype != object else ""
        values = np.where(rows >= 0, col[np.maximum(rows, 0)] if len(col) else fill, fill)
        out[name] = values.astype(col.dtype)
    return out


def build_specs(data: RecallData, config: RecipeConfig) -> Tuple[list, list]:
    overrides = _feature_overrides(config)
    specs = []
    for side, key, table in (("users", "user_id", data.users), ("items", "item_id", data.items)):
        if table is None:
            ids = data.user_ids() if side == "users" else data.item_catalogue()
            table = {key: ids}
        specs.append(infer_feature_specs(
            table, key, overrides=overrides.get(side), id_dim=config.id_embedding_dim,
            source=config_source(config.feature_config, side),
        ))
    if not config.user_id_embedding:
        specs[0] = [s for s in specs[0] if s.name != "user_id"]
        if not specs[0] and not config.history_items:
            raise ValueError("user_id_embedding=False leaves the user tower without features: "
                             "give user features or history_items > 0")
    item_id_overrides = (overrides.get("items") or {}).get("item_id") or {}
    specs[1] = [
        dataclasses.replace(spec, min_count=config.item_id_min_count)
        if (spec.name == "item_id" and spec.kind == "id" and spec.hash_buckets is None
            and "min_count" not in item_id_overrides) else spec
        for spec in specs[1]
    ]
    if config.history_items:
        if any(spec.name == HISTORY_FEATURE for spec in specs[0]):
            raise ValueError(f"the user table already has a column {HISTORY_FEATURE!r}; "
                             "rename it or set history_items=0")
        # Read through the item tower's own id table, so it has the item id's width.
        item_id = next((s for s in specs[1] if s.name == "item_id"), None)
        if item_id is None or item_id.kind != "id":
            raise ValueError("history_items needs an item feature 'item_id' of kind 'id' "
                             "(the history is embedded through its table)")
        specs[0].append(FeatureSpec(HISTORY_FEATURE, "history", embedding_dim=item_id.dim))
    return specs[0], specs[1]


def item_adapt_table(item_specs: Sequence[FeatureSpec], item_table: dict, train: RecallData,
                     log=print) -> Tuple[list, dict]:
    """The item specs and the table the item tower adapts from.

    Feature columns come from the catalogue; the item id's column is the training
    positives (one entry per positive), so the id's ``min_count`` counts positives: an
    item with fewer shares the OOV row and is scored by its features. If no item reaches
    ``min_count`` (a tiny log), every item with a positive keeps its row, and the log says so.
    """
    item_specs = list(item_specs)
    at = next((i for i, s in enumerate(item_specs) if s.name == "item_id"), None)
    if at is None or item_specs[at].kind != "id" or item_specs[at].hash_buckets is not None:
        return item_specs, item_table
    inter = train.interactions
    ids = np.asarray(inter["item_id"], dtype=object)[np.asarray(inter["positive"], bool)]
    _, counts = np.unique(ids.astype(str), return_counts=True)
    spec = item_specs[at]
    if spec.min_count > 1 and (len(counts) == 0 or counts.max() < spec.min_count):
        log(f"item_id: no item has {spec.min_count} training positives (min_count); every "
            "item with a positive keeps its own embedding row")
        item_specs[at] = dataclasses.replace(spec, min_count=1)
    elif spec.min_count > 1:
        kept = int((counts >= spec.min_count).sum())
        log(f"item_id: {kept} of {len(counts)} items with training positives have >= "
            f"{spec.min_count} (min_count) and their own embedding row; the rest and "
            "items never positive are scored by their features (the OOV row)")
    return item_specs, {**item_table, "item_id": ids}


def user_feature_table(data: RecallData, train: RecallData, user_ids: np.ndarray,
                       config: RecipeConfig) -> dict:
    """The user table aligned with `user_ids`, plus the training-history feature."""
    table = _entity_table(data.users, user_ids, "user_id")
    if config.history_items:
        table[HISTORY_FEATURE] = user_histories(train, user_ids, config.history_items)
    return table


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
        in_batch_negatives=config.view == "in_batch",
        xla_in_batch=config.jit_compile,
    )
    model.adapt(user_table, item_table)
    return model


def make_loss(name: str, jit_compile: bool = False):
    return getattr(losses_lib, LOSSES[name][0])(jit_compile=jit_compile)


def needs_ranker(config: RecipeConfig) -> bool:
    """Whether the sampling config reads a ranker's ordering (distill, hard, ranked pairs)."""
    return (config.view == "distill" or "hard" in (config.resolve_negatives()[0] or "")
            or config.pairwise_mode in ("not_exposed", "head_tail", "segments"))


@dataclasses.dataclass
class _Context:
    """What every training stage of one run shares (`run` builds it once)."""

    config: RecipeConfig
    data: RecallData
    train: RecallData
    catalogue: np.ndarray
    user_ids: np.ndarray
    item_table: dict
    user_specs: list
    item_specs: list
    previous: Optional[TwoTowerModel]
    ranker: object
    strategy: object
    log: object


@dataclasses.dataclass
class _Trained:
    """One training stage's outcome."""

    model: TwoTowerModel
    history: object
    seconds: float
    examples: int
    curve: list
    best_epoch: Optional[int]


def _train_stage(ctx: _Context, fit: RecallData, validation: Optional[RecallData],
                 epochs: int, stage: str) -> _Trained:
    """Builds a fresh model adapted to `fit` and trains it for at most `epochs` epochs.

    With `validation`, Recall@max(ks) on it is computed after every epoch and Keras'
    EarlyStopping keeps the best epoch's weights. `stage` names the stage's own backup,
    checkpoint and TensorBoard folders under model_dir ("search", "final").
    """
    config, log, strategy = ctx.config, ctx.log, ctx.strategy
    user_table = user_feature_table(ctx.data, fit, ctx.user_ids, config)
    # Vocabularies come from the training side only, so held-out ids behave like the
    # unseen ids of production (OOV), and the catalogue's item features are all known.
    fit_users = set(fit.interactions["user_id"].tolist())
    user_adapt = {k: v[np.isin(ctx.user_ids, list(fit_users))] for k, v in user_table.items()}
    parameter_server = config.strategy == "parameter_server"
    # The item id's vocabulary counts training positives (min_count), in a warm start too.
    item_specs, item_adapt = item_adapt_table(ctx.item_specs, ctx.item_table, fit, log)
    with strategy.scope():
        if ctx.previous is not None:
            # Continue the old model: its architecture and weights, vocabularies grown
            # with this log's new ids (tfrecall.models.warm_start).
            model = warm_start(ctx.previous, user_adapt, item_adapt,
                               in_batch_negatives=config.view == "in_batch", log=log)
        else:
            model = build_model(ctx.user_specs, item_specs, user_adapt, item_adapt, config)
    user_store = FeatureStore(user_table, "user_id", ctx.user_ids)
    item_store = FeatureStore(ctx.data.items, "item_id", ctx.catalogue)
    loss = make_loss(config.loss, config.jit_compile)
    sampling = config.sampling(loss.requires_log_q, catalogue_size=len(ctx.catalogue))

    def training_dataset(sampling):
        samples = training_lib.TrainingSamples(
            fit, ctx.catalogue, user_store, item_store, sampling, config.batch_size,
            ranker_lists=ctx.ranker)
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
    with strategy.scope():
        model.compile(optimizer=_optimizer(config), loss=loss)
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
        val_k = min(max(config.ks), len(ctx.catalogue))  # capped as the test metrics are
        validator = ValidationRecall(
            make_eval_set(fit, validation, ctx.user_ids, ctx.catalogue, config.exclude_train),
            user_table, ctx.item_table, k=val_k)
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
    return _Trained(model, history, seconds, samples.info.rows_per_epoch * len(history.epoch),
                    curve, best_epoch)


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
    world = synthetic_world(config) if config.interactions is None else None
    data = world.data if world is not None else load_recall_data(config)
    train, test = split_data(data, config)
    catalogue = data.item_catalogue()
    previous = load_model(config.warm_start_from) if config.warm_start_from else None
    if previous is not None:
        # Items the old model knew stay in the catalogue (and the index) even when the
        # new log does not mention them.
        catalogue = _union(catalogue, previous_catalogue(config.warm_start_from, previous))
    user_ids = data.user_ids()
    # Nothing to evaluate is an error now, not a table of zeros after training.
    eval_set = make_eval_set(train, test, user_ids, catalogue, config.exclude_train)
    check_evaluable(eval_set, test, config.exclude_train)
    ks, ks_note = cap_ks(config.ks, len(catalogue))
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
    test_user_table = user_feature_table(data, train, user_ids, config)
    item_table = _entity_table(data.items, catalogue, "item_id")
    user_specs, item_specs = build_specs(data, config)
    log(f"data: {data.name}: {data.num_interactions} interactions, {len(user_ids)} users, "
        f"{len(catalogue)} items; train {train.num_interactions} rows, test "
        f"{test.num_interactions} rows (exposures included; the metrics count the held-out "
        "pairs: distinct positive (user, item) pairs)"
        + ("" if validation is None else
           f"; validation {validation.num_interactions} of the training rows"))
    if previous is None:
        log("user features (inferred kinds; override with feature_config):\n"
            + describe_specs(user_specs, test_user_table))
        log("item features:\n" + describe_specs(item_specs, data.items))
    else:  # a warm start keeps the old model's features and kinds, whatever the files hold
        log(f"user features (kept from {config.warm_start_from}):\n"
            + describe_specs(previous.user_tower.encoder.specs, test_user_table))
        log("item features (kept):\n"
            + describe_specs(previous.item_tower.encoder.specs, data.items))
    if ks_note:
        log(ks_note)
    # Synthetic worlds come with a ranker's full top-N per request; other logs use the
    # ranker_score of their logged rows (see tfrecall.sampling.dataset; a world without
    # ranker lists is refused by RecipeConfig).
    ranker = (synthetic.ranker_lists(world) if world is not None and needs_ranker(config)
              else None)
    strategy = make_strategy(config.strategy, config.ps_min_shard_bytes)
    chief = is_chief(strategy)
    ctx = _Context(config, data, train, catalogue, user_ids, item_table, user_specs,
                   item_specs, previous, ranker, strategy, log)

    if validation is None:
        search = final = _train_stage(ctx, train, None, config.epochs, "final")
    else:
        search = final = _train_stage(ctx, fit, validation, config.epochs, "search")
        if config.refit:
            log(f"refit: a fresh model on the whole training split for {search.best_epoch} "
                "epoch(s), the search stage's best")
            keras.utils.set_random_seed(config.seed)
            final = _train_stage(ctx, train, None, search.best_epoch, "final")
    model = final.model
    if chief:
        save_model(model, config, catalogue)
    else:
        # Every worker must take part in saving (variables may need collectives); only the
        # chief's copy is kept (the Keras multi-worker convention).
        with tempfile.TemporaryDirectory() as tmp:
            save_model(model, dataclasses.replace(config, model_dir=tmp), catalogue)

    # Evaluation on the held-out split, full catalogue, training positives excluded; the
    # users' history is their whole training split, as serving would feed it.
    metrics = evaluate_model(model, eval_set, test_user_table, item_table, ks)
    baselines = evaluate_baselines(eval_set, ks, config.baselines, log=log)
    export_path = None
    export_dir = config.export_dir or os.path.join(config.model_dir, "export")
    if config.export and chief:
        export_path = export_saved_model(
            model, item_table, export_dir, k=config.export_k, index=config.index,
            tuning_queries=test_user_table, log=log,
            metadata={"recipe": config.to_dict(), "metrics": metrics},
        )
    stages = [search] if search is final else [search, final]
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
        notes=(_protocol_note(config),) + ((ks_note,) if ks_note else ()),
        validation_curve=search.curve,
        best_epoch=search.best_epoch,
        epochs_run=sum(len(s.history.epoch) for s in stages),
    )


# Settings that change where outputs go or what is printed, not what training produces:
# a model_dir (or a backup) made with other values of these holds the same run.
OUTPUT_SETTINGS = ("model_dir", "overwrite", "verbose", "export", "export_dir", "index",
                   "export_k", "baselines")
RECIPE_FILE = "recipe.json"


def run_settings(config: RecipeConfig) -> dict:
    """The settings that define what a run trains (`to_dict` less `OUTPUT_SETTINGS`)."""
    return {k: v for k, v in config.to_dict().items() if k not in OUTPUT_SETTINGS}


def run_fingerprint(config: RecipeConfig) -> dict:
    """What a training backup records: the run's settings and its data files' fingerprints."""
    files = {name: getattr(config, name)
             for name in ("interactions", "users", "items", "feature_config")}
    return {"settings": run_settings(config), "data": rundir.data_fingerprint(files)}


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


def previous_catalogue(model_dir: str, previous: TwoTowerModel) -> np.ndarray:
    """The items a trained run indexed: its `CATALOGUE_FILE`, else (older runs) the item
    id vocabulary, which misses the items below the id's min_count."""
    path = os.path.join(model_dir, CATALOGUE_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return np.asarray(json.load(f), dtype=object)
    return _vocabulary(previous.item_tower, previous.item_id_feature)


def _vocabulary(tower, feature: str) -> np.ndarray:
    for spec, layer in zip(tower.encoder.specs, tower.encoder.feature_layers, strict=True):
        if spec.name == feature and getattr(layer, "vocabulary", None) is not None:
            return np.asarray(layer.vocabulary, dtype=object)
    return np.zeros(0, dtype=object)


def _union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    seen = set(first.tolist())
    extra = [v for v in second.tolist() if v not in seen]
    return np.concatenate([first, np.asarray(extra, dtype=object)]) if extra else first


def make_strategy(name: str, ps_min_shard_bytes: int = cluster.DEFAULT_MIN_SHARD_BYTES):
    """The tf.distribute strategy named by `RecipeConfig.strategy`.

    "multi_worker" reads the cluster from the TF_CONFIG environment variable (see
    docs/distributed.md); every worker runs the same command. "parameter_server" also
    reads TF_CONFIG; this process must be its chief (the coordinator), the workers and
    parameter servers run `python -m pipelines.ps_server` (`tfrecall.cluster`).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable "
                             "(cluster and task); see docs/distributed.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "parameter_server":
        return cluster.parameter_server_strategy(ps_min_shard_bytes)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy) -> bool:
    """True on the worker that writes checkpoints, the model and the export."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def _protocol_note(config: RecipeConfig) -> str:
    split = {"random": f"random {1 - config.test_fraction:.0%}/{config.test_fraction:.0%} split "
                       f"(seed {config.split_seed})",
             "temporal": f"global time cut ({config.test_fraction:.0%} latest rows held out)",
             "leave_last": f"each user's last {config.leave_last_n} positive(s) held out"}
    excl = ("each user's training items are excluded from the ranking and from the targets"
            if config.exclude_train else "training items are NOT excluded")
    return (f"Held-out metrics: {split[config.split]}; full-catalogue ranking; {excl}; "
            "recall@K per held-out pair, the other metrics per user.")


def _optimizer(config: RecipeConfig):
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
    }
    if config.optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {config.optimizer!r}")
    return optimizers[config.optimizer](learning_rate=config.learning_rate)


CATALOGUE_FILE = "catalogue.json"


def save_model(model: TwoTowerModel, config: RecipeConfig,
               catalogue: Optional[np.ndarray] = None) -> None:
    """Writes model.json (architecture + adapted vocabularies), weights, the recipe config
    and the item catalogue the run indexed (`CATALOGUE_FILE`, when given)."""
    os.makedirs(config.model_dir, exist_ok=True)
    if catalogue is not None:
        with open(os.path.join(config.model_dir, CATALOGUE_FILE), "w") as f:
            json.dump([str(i) for i in catalogue.tolist()], f)
    spec = keras.saving.serialize_keras_object(model)
    # Keras' build/compile records hold nested input shapes it cannot rebuild from for a
    # subclassed model with dict inputs; the weights restore lazily without them.
    spec.pop("build_config", None)
    spec.pop("compile_config", None)
    with open(os.path.join(config.model_dir, "model.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(config.model_dir, RECIPE_FILE), "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    model.save_weights(os.path.join(config.model_dir, "weights", "final"))


def load_model(model_dir: str) -> TwoTowerModel:
    """Rebuilds a trained `TwoTowerModel` from `save_model`'s files (needs tfrecall)."""
    with open(os.path.join(model_dir, "model.json")) as f:
        model = keras.saving.deserialize_keras_object(json.load(f))
    status = model.load_weights(os.path.join(model_dir, "weights", "final"))
    # Create every variable now (one row of default feature values) so the restore is
    # checked here, instead of a model with missing weights silently keeping random ones.
    model(default_batch(model))
    status.assert_existing_objects_matched().expect_partial()  # optimizer slots: not needed
    return model


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
    data = load_recall_data(config)
    train, test = split_data(data, config)
    catalogue, user_ids = data.item_catalogue(), data.user_ids()
    user_table = user_feature_table(data, train, user_ids, config)
    eval_set = make_eval_set(train, test, user_ids, catalogue, config.exclude_train)
    check_evaluable(eval_set, test, config.exclude_train)
    ks, note = cap_ks(ks, len(catalogue))
    notes = [note] if note else []
    if export_path:
        from tfrecall.evaluation.harness import evaluate_export

        if info.get("k") is not None:
            ks, note = cap_ks(ks, int(info["k"]), "the items the export returns")
            notes += [note] if note else []
        metrics = evaluate_export(export_path, eval_set, user_table, ks)
        source = f"export {export_path}"
    else:
        model = load_model(model_dir)
        item_table = _entity_table(data.items, catalogue, "item_id")
        metrics = evaluate_model(model, eval_set, user_table, item_table, ks)
        source = f"model {model_dir} (exact scoring)"
    return EvalResult(metrics, evaluate_baselines(eval_set, ks, baselines),
                      _protocol_note(config), source, tuple(notes))
