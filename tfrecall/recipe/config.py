"""`RecipeConfig`: every setting of one run, each field with its help and allowed values.

One source: the fields below (and those of the nested `SamplingConfig` and
`TowerConfig`) carry their documentation as dataclass metadata (`tfrecall.config.option`);
`pipelines.train` generates its flags from them, and every value is checked here, at
construction, before any data is read. `RecipeConfig.from_flat` builds the nested config
from flat names (``view=...``, ``embedding_dim=...``), as the flags and benchmarks give them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from tfrecall import cluster, rundir
from tfrecall.config import TowerConfig, check_choices, option
from tfrecall.evaluation.harness import BASELINES
from tfrecall.sampling.config import SamplingConfig, parse_negatives
from tfrecall.serving.channel_tables import CHANNELS, HISTORY_CHANNELS, check_channels
from tfrecall.serving.index import INDEX_KINDS

# The recipe's negatives where the config leaves them unset (`from_flat`): the in_batch view
# mixes the batch's positives with uniform items shared by the batch, each source with its
# own log Q (at most the catalogue's size, `run_sampling`). The uniform items give the long
# tail negatives that in-batch sampling (popularity-weighted by construction) rarely
# draws: +0.008 R@100 on the synthetic default, equal on ml-latest-small (BENCHMARKS.md).
# Other views keep the sampler's defaults (uniform, `DEFAULT_NEGATIVES_PER_POSITIVE`).
DEFAULT_IN_BATCH_NEGATIVES = ("in_batch", "uniform")
DEFAULT_SHARED_NEGATIVES = 256  # uniform negatives shared by an in_batch batch
DEFAULT_NEGATIVES_PER_POSITIVE = SamplingConfig().num_negatives  # pointwise 1:3
# What the recipe adds to a sampler field's help (pipelines/_flags.py appends it); unset
# negatives / num_negatives take these view defaults.
RECIPE_HELP = {
    "log_q": "The recipe applies it to the softmax loss; NCE and sampled softmax always "
             "use it, the other losses never (their definitions score raw similarities).",
}
UNSET_NEGATIVES_HELP = {
    "negatives": f"Default (unset): {','.join(DEFAULT_IN_BATCH_NEGATIVES)} (mixed) for the "
                 "in_batch view, else uniform.",
    "num_negatives": f"Default (unset): {DEFAULT_SHARED_NEGATIVES} shared (at most the "
                     f"catalogue) in the in_batch view, {DEFAULT_NEGATIVES_PER_POSITIVE} per "
                     "positive elsewhere.",
}
SPLITS = ("random", "temporal", "leave_last", "item")
WORLDS = ("default", "longtail")  # built-in synthetic worlds (no download)
STRATEGIES = cluster.STRATEGIES
SIMILARITIES = ("cosine", "dot")
OPTIMIZERS = ("auto", "adam", "lazy_adam", "adagrad", "sgd")
TEACHER_MODES = ("auto", "on", "off")
# The batch size by log size (`batch_for`). BENCHMARKS.md, "Batch size by log size": on the
# ml-25m-shaped logs, batch 1024 (learning rate x sqrt(8)) against 128 cost R@100 0.028 at
# 0.8M training positives, 0.013 at 4M and 0.004 at 20M, for 1.3-1.8x the examples/s.
SMALL_BATCH, LARGE_BATCH, LARGE_BATCH_EXAMPLES = 128, 1024, 16_000_000

# Loss name -> (class in tfrecall.losses, the views it trains on, its log Q). Log Q is
# subtracted from the logits where the loss's definition asks for it: "required" (NCE and
# sampled softmax are defined on corrected logits), "optional" (the in-batch / listwise
# softmax of DSSM, corrected as Yi et al. 2019 when `log_q` is on), "never" (NEG, the
# pairwise, pointwise and listwise ranking losses score raw similarities: corrected logits
# would turn NEG into NCE and shift BPR's margins by popularity).
LOSSES = {
    "softmax": ("SoftmaxLoss", ("in_batch", "listwise"), "optional"),
    "sampled_softmax": ("SampledSoftmaxLoss", ("in_batch", "listwise"), "required"),
    "kl": ("KLLoss", ("listwise", "distill"), "never"),
    "listnet": ("ListNetLoss", ("listwise", "distill"), "never"),
    "listmle": ("ListMLELoss", ("listwise", "distill"), "never"),
    "hinge": ("TripletHingeLoss", ("pairwise", "listwise"), "never"),
    "logistic": ("TripletLogisticLoss", ("pairwise", "listwise"), "never"),
    "bpr": ("BPRLoss", ("pairwise", "listwise"), "never"),
    "bce": ("PointwiseBCELoss", ("pointwise", "listwise"), "never"),
    # NEG/NCE score a list that holds a positive and its negatives together, so they need
    # lists (or the in-batch matrix), not the pointwise view's one-item rows.
    "neg": ("NegativeSamplingLoss", ("listwise", "in_batch"), "never"),
    "nce": ("NCELoss", ("in_batch", "listwise"), "required"),
}

# Settings that change where outputs go or what is printed, not what training produces:
# a model_dir (or a backup) made with other values of these holds the same run.
OUTPUT_SETTINGS = ("model_dir", "overwrite", "verbose", "export", "export_dir", "index",
                   "export_k", "baselines", "channels", "channel_attribute")
NESTED = {"sampling": SamplingConfig, "tower": TowerConfig}


def _recipe_sampling() -> SamplingConfig:
    return SamplingConfig(negatives=DEFAULT_IN_BATCH_NEGATIVES,
                          num_negatives=DEFAULT_SHARED_NEGATIVES)


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """Everything one training run needs (each field's help: `pipelines/train.py --help`)."""

    # ---- data
    interactions: Optional[str] = option(
        None, "Interaction log: a CSV (user_id,item_id[,label|event][,timestamp]...), or a "
        "MovieLens directory/ratings file. Default: the built-in synthetic world.", type=str)
    users: Optional[str] = option(
        None, "CSV of user features: user_id plus feature columns. Default: none (the user "
        "tower reads the user id).", type=str)
    items: Optional[str] = option(
        None, "CSV of item features: item_id plus feature columns. Default: none (the item "
        "tower reads the item id).", type=str)
    feature_config: Optional[str] = option(
        None, "JSON overriding the inferred feature kinds, e.g. "
        '{"items": {"price": {"kind": "bucketized", "num_buckets": 8}}}. Default: none '
        "(kinds inferred from the columns).", type=str)
    movielens_min_rating: float = option(
        0.0, "MovieLens: ratings >= this are positives; 0 makes every rating a positive (the "
        "reference protocol of ../shared/data/README.md).")
    movielens_text: bool = option(
        False, "MovieLens: give the items two text features (the `text` kind: letter "
        "trigrams and word n-grams), the title and the users' tags (tags.csv).")
    synthetic_world: str = option(
        "default", "Built-in world used without --interactions: default (a feed with "
        "exposures, graded events, user and item features) or longtail (an implicit play log "
        "with Zipf popularity and no features).", choices=WORLDS)
    synthetic_users: Optional[int] = option(
        None, "Synthetic world: number of users (default: the world's, 3000 / 1900).",
        type=int)
    synthetic_items: Optional[int] = option(
        None, "Synthetic world: number of items (default: the world's, 1500 / 17600).",
        type=int)
    synthetic_seed: int = option(0, "Synthetic world: generator seed.")
    split: str = option(
        "random", "Held-out split: seeded random rows, a global time cut, each user's last "
        "--leave_last_n positives, or item (cold start: --test_fraction of the items held "
        "out of training entirely and ranked among themselves, beside popularity by "
        "feature).", choices=SPLITS)
    leave_last_n: int = option(1, "Positives per user held out by --split=leave_last.")
    test_fraction: float = option(
        0.2, "Share of interactions held out (--split=item: share of the items).")
    split_seed: int = option(42, "Seed of the random split.")
    # ---- samples and loss (the sampler's own fields, with their help, in `sampling`)
    sampling: SamplingConfig = dataclasses.field(default_factory=_recipe_sampling)
    loss: str = option("softmax", "Loss; must fit the view.", choices=tuple(sorted(LOSSES)))
    # ---- training
    # Small batches: on the sparse logs recall trains on (a handful of positives per user)
    # the gradient noise of batch 128 regularizes the id embeddings (BENCHMARKS.md,
    # "Default recipe"). Large logs take a large batch (`batch_for`).
    batch_size: Optional[int] = option(
        None, f"Training batch size (lists per batch). Default: by log size, {SMALL_BATCH}, "
        f"or {LARGE_BATCH} from {LARGE_BATCH_EXAMPLES:,} training positives on, where "
        f"--learning_rate is then multiplied by sqrt({LARGE_BATCH} / {SMALL_BATCH}).",
        type=int)
    epochs: int = option(
        30, "Training epochs: the ceiling when --validation_fraction > 0 (early stopping), "
        "else exactly this many.")
    validation_fraction: float = option(
        0.1, "Share of each user's training positives held out as a validation slice: "
        "full-catalogue recall@max(ks) after every epoch, early stopping, best weights "
        "restored (0: no validation, run --epochs).")
    patience: int = option(
        2, "Early stopping: epochs without a better validation recall before stopping.")
    refit: bool = option(
        True, "After early stopping, train a fresh model on the whole training split for the "
        "best epoch count (--norefit keeps the early-stopped model).")
    learning_rate: float = option(
        0.01, "Optimizer learning rate (at the default batch size: the rate of batch "
        f"{SMALL_BATCH}, scaled with the batch size that --batch_size unset picks).")
    optimizer: str = option(
        "auto", "Optimizer. auto: Adam, or LazyAdam (only the rows a batch touched move) "
        "where the embedding tables exceed 4x the id rows one step can touch (large logs).",
        choices=OPTIMIZERS)
    similarity: str = option("cosine", "Score of a user/item pair.", choices=SIMILARITIES)
    temperature: float = option(0.05, "Logits are similarity / temperature (> 0).")
    # ---- towers and features
    tower: TowerConfig = dataclasses.field(default_factory=TowerConfig)
    id_embedding_dim: int = option(32, "Width of id embeddings.")
    # Item ids with fewer training positives share the item tower's OOV row, so the long
    # tail (and every new item) is scored by its features, not by an id row trained on a
    # handful of examples (BENCHMARKS.md: +0.008 R@100 on the synthetic default, +0.008 on
    # ml-latest-small).
    item_id_min_count: int = option(
        5, "Item ids with fewer training positives share the OOV embedding row and are "
        "scored by their features (the long tail, new items); 1 gives every item with a "
        "positive its own row. A --feature_config min_count wins.")
    # Decided on every development log (BENCHMARKS.md, "Default recipe"): +0.008 R@100 on
    # the synthetic feed, +0.007 on the long-tail world, -0.005 on ml-latest-small.
    history_items: int = option(
        50, "The user's last N training positives as the user feature 'history', embedded "
        "through the item tower's id table (leave-one-out in training; serving feeds it as "
        "one '|'-joined string); 0 disables.")
    user_id_embedding: bool = option(
        False, "Give each user id its own embedding row. Off by default: the user tower reads "
        "features and history only, so new users are served like known ones.")
    # EASE as a teacher, chosen on the validation slice (issue 12; BENCHMARKS.md "EASE as a
    # teacher, chosen on validation"): where EASE is the stronger model (ml-latest-small)
    # its lists lift R@10 / R@100 by about 0.01 on the seeds where validation keeps them;
    # where it is the weaker (the synthetic feed) they cost 0.005-0.010 R@100 and
    # validation never kept them; so each run decides, not a constant.
    teacher: str = option(
        "auto", "EASE as a distillation teacher (its top lists join the training positives). "
        "auto: the search stage trains with and without it and the better best validation "
        "recall decides (off without a validation slice, for views other than in_batch, or "
        "where EASE exceeds its memory budget); on; off.", choices=TEACHER_MODES)
    teacher_top_n: int = option(
        20, "The teacher's list: each user's top N unseen EASE items (EASE fit on the "
        "training stage's own split, lambda chosen on a validation slice); 0: no teacher.")
    teacher_ratio: float = option(
        0.2, "The teacher's list: a user with d real positives gets at most ceil(ratio * d) "
        "teacher items (0: top N for everyone).")
    # ---- evaluation
    ks: Tuple[int, ...] = option((10, 50, 100), "Cut-offs K of the held-out metrics.",
                                 item=int)
    exclude_train: bool = option(
        True, "Exclude each user's training items from the ranking and the targets.")
    baselines: Tuple[str, ...] = option(
        BASELINES, "Baselines evaluated in the same harness (popularity, itemcf, ease; empty: "
        "none). EASE's lambda is chosen on a validation slice of the training split; it is "
        "skipped, with a reason, where its matrices exceed 4 GiB.", item=str)
    # ---- outputs
    model_dir: str = option(
        "runs/default", "Checkpoints (checkpoints/), TensorBoard logs (logs/), model.json, "
        "weights/, recipe.json, and backup/ while training. One run per directory: one that "
        "holds a different run is refused unless --overwrite.")
    overwrite: bool = option(
        False, "Replace the run in --model_dir when it holds a different one (its recipe.json "
        "differs), discarding an interrupted run's backup there.")
    export_dir: Optional[str] = option(
        None, "SavedModel base directory; a new numbered version is written into it. "
        "Default: MODEL_DIR/export.", type=str)
    export: bool = option(True, "Write the SavedModel (--noexport to skip).")
    index: str = option(
        "scann", "Serving index: ScaNN (needs `import scann` to load), exact brute force, or "
        "partitioned (k-means cells + exact re-scoring, stock TensorFlow ops: loads in stock "
        "TF Serving); approximate indexes are tuned to recall@10 >= 0.95.",
        choices=INDEX_KINDS)
    export_k: int = option(100, "Items returned by the serving signature.")
    channels: Tuple[str, ...] = option(
        ("two_tower",), f"Recall channels of the export, from {', '.join(CHANNELS)}: more "
        "than two_tower alone exports one SavedModel that merges them (per-channel quotas "
        "chosen on the validation slice, duplicates and seen items removed, each id tagged "
        "with its channel) with a signature per channel, and reports each channel and the "
        "merge at the same K (docs/channels.md).", item=str)
    channel_attribute: str = option(
        "", "Item column of the attribute channel (a category or a multi-valued column). "
        "Default: the first multi-valued, else categorical, item feature.", type=str)
    # ---- runtime
    fused_in_batch: bool = option(
        True, "In-batch softmax (with negatives shared by the batch) through the blocked "
        "kernel that never builds the (B, B + S) logits (--nofused_in_batch: the dense path; "
        "same loss and gradients).")
    jit_compile: bool = option(
        False, "Compile the loss and the in-batch score matrix with XLA (--nojit_compile to "
        "run them op by op).")
    warm_start_from: Optional[str] = option(
        None, "Continue training the model in this model_dir on the new --interactions: its "
        "weights, features and vocabularies are kept, new ids get new rows, and a new export "
        "version is published. Default: none (a fresh model).", type=str)
    strategy: str = option(
        "default", "tf.distribute strategy: default (one device), mirrored (all local "
        "devices), multi_worker (MultiWorkerMirroredStrategy; cluster from TF_CONFIG, run the "
        "same command on every worker), parameter_server (ParameterServerStrategy; cluster of "
        "chief/worker/ps from TF_CONFIG: the chief trains, a worker or ps task serves, as "
        "python -m pipelines.ps_server does).", choices=STRATEGIES)
    ps_min_shard_bytes: int = option(
        cluster.DEFAULT_MIN_SHARD_BYTES, "--strategy=parameter_server: a variable larger than "
        "this is split row-wise into ceil(bytes / this) shards, at most one per ps task, so "
        "the id-embedding tables are sharded and small kernels stay whole.")
    seed: int = option(0, "Seed of initialisation, shuffling and sampling.")
    verbose: int = option(
        1, "Keras fit output: 0 silent, 1 a progress bar, 2 one line per epoch. Unset, it is "
        "1 on a terminal and 2 when stdout is a file or a pipe (a progress bar there is one "
        "long line of carriage returns).", choices=(0, 1, 2))

    def __post_init__(self):
        for name, cls in NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got "
                                 f"{type(getattr(self, name)).__name__}")
        object.__setattr__(self, "ks", tuple(self.ks))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        check_choices(self)
        view = self.sampling.view
        if view not in LOSSES[self.loss][1]:
            raise ValueError(f"loss {self.loss!r} trains on the view(s) {LOSSES[self.loss][1]}, "
                             f"not {view!r}")
        for name in ("synthetic_users", "synthetic_items"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        object.__setattr__(self, "channels", check_channels(self.channels))
        history_channels = [c for c in self.channels if c in HISTORY_CHANNELS]
        if history_channels and not self.history_items:
            raise ValueError(f"channels {history_channels} read the user's history: they need "
                             "history_items > 0")
        if self.split == "item" and self.channels != ("two_tower",):
            raise ValueError("channels other than two_tower need items seen in training; the "
                             "item split (cold start) holds its items out of training")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines: unknown {unknown}; known: {', '.join(BASELINES)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got "
                             f"{self.validation_fraction}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("epochs", "export_k", "id_embedding_dim",
                     "ps_min_shard_bytes", "item_id_min_count", "patience", "leave_last_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.teacher_top_n < 0:
            raise ValueError(f"teacher_top_n must be >= 0, got {self.teacher_top_n}")
        if not self.teacher_ratio >= 0:
            raise ValueError(f"teacher_ratio must be >= 0, got {self.teacher_ratio}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.split != "leave_last" and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be integers >= 1, got {list(self.ks)}")
        if self.interactions is None and self.synthetic_world != "default" and needs_ranker(self):
            raise ValueError(f"the {self.synthetic_world!r} world has no ranker lists, which "
                             "this sampling config reads (distill view, hard negatives or "
                             "ranked pairs)")
        if self.strategy == "parameter_server" and self.sampling.frequency == "streaming":
            # The streaming estimator is a tf.Variable updated inside the input pipeline;
            # ClusterCoordinator forbids variables in the per-worker dataset function.
            raise ValueError("frequency='streaming' keeps state in the input pipeline, which "
                             "strategy 'parameter_server' cannot (each worker builds its own "
                             "pipeline); use frequency='exact'")

    @classmethod
    def from_flat(cls, **values) -> "RecipeConfig":
        """The config from flat names: a field of this class, of `SamplingConfig` or of
        `TowerConfig` (by its flag name, e.g. ``embedding_dim``), as flags give them.

        Unset (absent, None or "") ``negatives``/``num_negatives`` take the recipe's
        defaults for the view (`UNSET_NEGATIVES_HELP`); strings are accepted for
        ``negatives`` (``"in_batch,uniform"``) and tuple fields.
        """
        names = flat_names()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"recipe config: unknown field(s) {unknown}")
        parts = {"": {}, "sampling": {}, "tower": {}}
        for flat, value in values.items():
            group, field = names[flat]
            parts[group][field] = value
        sampling = parts["sampling"]
        negatives = sampling.pop("negatives", None) or None
        num_negatives = sampling.pop("num_negatives", None)
        if isinstance(negatives, str):
            negatives = parse_negatives(negatives)
        if sampling.get("view", "in_batch") == "in_batch":
            negatives = negatives or DEFAULT_IN_BATCH_NEGATIVES
            num_negatives = DEFAULT_SHARED_NEGATIVES if num_negatives is None else num_negatives
        if negatives is not None:
            sampling["negatives"] = negatives
        if num_negatives is not None:
            sampling["num_negatives"] = num_negatives
        if "hard_negative_window" in sampling:
            sampling["hard_negative_window"] = tuple(sampling["hard_negative_window"])
        sampling.setdefault("seed", parts[""].get("seed", 0))
        try:
            built = SamplingConfig(**sampling)
        except ValueError as e:  # its messages name SamplingConfig's fields, which are ours
            raise ValueError(str(e).replace("SamplingConfig.", "")) from None
        return cls(sampling=built, tower=TowerConfig(**parts["tower"]), **parts[""])

    def flat(self) -> dict:
        """The inverse of `from_flat`: every flat name -> this config's value."""
        out = {}
        for flat, (group, field) in flat_names().items():
            owner = getattr(self, group) if group else self
            out[flat] = getattr(owner, field)
        return out

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["sampling"] = self.sampling.to_dict()
        d["tower"] = self.tower.to_dict()
        d["ks"] = list(self.ks)
        d["baselines"] = list(self.baselines)
        d["channels"] = list(self.channels)
        return d

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
        if "sampling" in d:
            s = dict(d["sampling"])
            for key in ("negatives", "hard_negative_window"):
                if key in s:
                    s[key] = tuple(s[key])
            d["sampling"] = SamplingConfig(**s)
        return cls(**d)


def flat_names() -> dict:
    """Flat (flag) name -> ``(group, field)``: ``group`` "" for RecipeConfig's own fields,
    else the nested config's field name; nested fields without help are not settable."""
    out = {}
    for field in dataclasses.fields(RecipeConfig):
        if field.name in NESTED:
            for inner in dataclasses.fields(NESTED[field.name]):
                if inner.metadata.get("help"):
                    out[inner.metadata.get("flag") or inner.name] = (field.name, inner.name)
        else:
            out[field.name] = ("", field.name)
    return out


def flat_fields() -> dict:
    """Flat (flag) name -> its `dataclasses.Field` (metadata: help, choices, type, item)."""
    fields = {f.name: f for f in dataclasses.fields(RecipeConfig)}
    out = {}
    for flat, (group, name) in flat_names().items():
        if group:
            out[flat] = {f.name: f for f in dataclasses.fields(NESTED[group])}[name]
        else:
            out[flat] = fields[name]
    return out


def needs_ranker(config: RecipeConfig) -> bool:
    """Whether the sampling config reads a ranker's ordering (distill, hard, ranked pairs)."""
    sampling = config.sampling
    return (sampling.view == "distill" or "hard" in sampling.negatives
            or sampling.pairwise_mode in ("not_exposed", "head_tail", "segments"))


def uses_log_q(config: RecipeConfig) -> bool:
    """Whether the run's logits are corrected by log Q: as the loss's definition says
    (`LOSSES`), and for the softmax as ``sampling.log_q`` says."""
    policy = LOSSES[config.loss][2]
    return policy == "required" or (policy == "optional" and config.sampling.log_q)


def batch_for(config: RecipeConfig, examples: int) -> Tuple[int, float, str]:
    """``(batch size, learning rate, reason)`` of a run over `examples` training positives.

    An explicit ``batch_size`` is kept with ``learning_rate`` as given. Unset, the batch
    is SMALL_BATCH, whose gradient noise regularizes the id rows of the sparse logs recall
    trains on, until a log is large enough (LARGE_BATCH_EXAMPLES) that a large batch costs
    little recall (a large batch has fewer, less noisy steps per epoch; the cost shrank
    from 0.028 R@100 at 0.8M positives to 0.004 at 20M, BENCHMARKS.md) and gains the
    throughput a log that size needs; the learning rate then grows by sqrt(batch ratio)
    (the square-root rule for Adam; measured better than keeping it at 1M positives).
    """
    if config.batch_size is not None:
        return config.batch_size, config.learning_rate, "set"
    if examples < LARGE_BATCH_EXAMPLES:
        return SMALL_BATCH, config.learning_rate, (
            f"auto: {examples:,} training positives < {LARGE_BATCH_EXAMPLES:,}")
    rate = config.learning_rate * (LARGE_BATCH / SMALL_BATCH) ** 0.5
    return LARGE_BATCH, rate, (
        f"auto: {examples:,} training positives >= {LARGE_BATCH_EXAMPLES:,}; learning rate "
        f"{config.learning_rate:g} x sqrt({LARGE_BATCH} / {SMALL_BATCH})")


def with_batch(config: RecipeConfig, examples: int, log=None) -> RecipeConfig:
    """`config` with its batch size and learning rate resolved by `batch_for` (logged)."""
    batch, rate, reason = batch_for(config, examples)
    if log is not None and reason != "set":
        log(f"batch size: {batch}, learning rate {rate:.4g} ({reason})")
    return dataclasses.replace(config, batch_size=batch, learning_rate=rate)


def run_sampling(config: RecipeConfig, catalogue_size: int) -> SamplingConfig:
    """The run's `SamplingConfig`: the recipe's seed, log Q where the loss uses it
    (`uses_log_q`), and shared negatives capped at the catalogue's size."""
    sampling = dataclasses.replace(config.sampling, seed=config.seed,
                                   log_q=uses_log_q(config))
    if sampling.view == "in_batch" and sampling.num_negatives > catalogue_size:
        sampling = dataclasses.replace(sampling, num_negatives=max(1, catalogue_size))
    return sampling




def run_settings(config: RecipeConfig) -> dict:
    """The settings that define what a run trains (`to_dict` less `OUTPUT_SETTINGS`)."""
    return {k: v for k, v in config.to_dict().items() if k not in OUTPUT_SETTINGS}


def run_fingerprint(config: RecipeConfig) -> dict:
    """What a training backup records: the run's settings and its data files' fingerprints."""
    files = {name: getattr(config, name)
             for name in ("interactions", "users", "items", "feature_config")}
    return {"settings": run_settings(config), "data": rundir.data_fingerprint(files)}
