"""`TwoTowerModel`: user tower x item tower -> `(B, L)` scores, trained with `model.fit`.

Batch contract (what `tfrecall.sampling.requests` produces)::

    x = {"user": {name: (B,)}, "items": {name: (B, L)}, "log_q": (B, L) optional}
    y = (B, L) float32 graded labels, label < 0 = padding

Training views on one model:

- pointwise: L = 1, labels in {0, 1} (a BCE-style loss);
- pairwise: L = 2, positive first (hinge / logistic / BPR);
- listwise: L >= 2 with graded labels or one positive and L-1 sampled negatives;
- in-batch negatives (`in_batch_negatives=True`): the batch holds `(B, 1)` positives and
  the model scores every user against every row's positive, a `(B, B)` matrix with
  identity labels. A column whose item equals the row's positive (the same item bought
  by two users in one batch) is an accidental hit and is masked (label -1), not
  counted as a negative.

Scores are `cos(u, v) / temperature` (similarity "cosine", towers L2-normalize) or
`u . v / temperature` ("dot"). Sampling-bias correction: when the batch carries
`log_q` (log of each candidate's sampling probability), training and validation
logits become `score - log_q` (Yi et al., RecSys 2019, eq. 3) before the loss; for
in-batch negatives `log_q` is `(B, 1)`, the probability of each row's positive
appearing in a batch, applied per column. `predict` and serving use the raw score.

Fused in-batch softmax: when the only loss is `SoftmaxLoss` (or `SampledSoftmaxLoss`,
the same math on corrected logits), no metric needs the logits and no loss weights are
set, `fit` and `evaluate` compute the in-batch loss with
`tfrecall.losses.in_batch.in_batch_softmax`, which never materializes the `(B, B)`
matrix (same value and gradients, a fraction of the memory traffic). A mixed batch whose
sampled negatives are shared by the batch (the default recipe: in_batch + uniform) takes
it too: the S shared negatives are S more candidate columns, each with its own log Q and
accidental-hit mask (`tfrecall.models.mixed` computes the same loss densely). Per-row
(hard) negatives, and anything else, take the general path through `logits_and_labels`;
`fused_in_batch=False` forces it.
"""

from __future__ import annotations

from typing import Optional, Sequence

from tfrecall._backend import keras, register, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.losses.base import Reduction, reduce_lists
from tfrecall.losses.in_batch import in_batch_softmax
from tfrecall.losses.lists import correct_log_q, remove_accidental_hits
from tfrecall.losses.listwise import SoftmaxLoss
from tfrecall.models.mixed import mixed_logits_and_labels
from tfrecall.models.tower import Tower

SIMILARITIES = ("cosine", "dot")


@register
class TwoTowerModel(keras.Model):
    """Two towers whose (scaled) dot product is the interest score.

    Args:
      user_tower: a `Tower` over user features (or its serialized config).
      item_tower: a `Tower` over item features (or its serialized config).
      similarity: "cosine" (both towers must L2-normalize) or "dot".
      temperature: logits are similarity / temperature (> 0).
      in_batch_negatives: train on `(B, 1)` positives scored against the whole batch.
      item_id_feature: the item feature holding ids (accidental-hit masking, serving).
      user_id_feature: the user feature holding ids.
      cross_replica_negatives: under a multi-replica `tf.distribute` strategy, score
        each replica's users against the positives of ALL replicas (an all-gather), so
        the softmax sees the global batch's negatives, as on one device.
      xla_in_batch: compute the `(B, B)` in-batch scores with XLA (general path only).
      fused_in_batch: allow the fused in-batch softmax (see the module docstring).

    Call arguments:
      inputs: {"user": {name: (B,)}, "items": {name: (B, L)}}.

    Returns:
      `(B, L)` float32 raw scores (no log Q correction).

    Raises:
      ValueError: unknown similarity, temperature <= 0, or cosine over an
        un-normalized tower.
    """

    def __init__(
        self,
        user_tower,
        item_tower,
        similarity: str = "cosine",
        temperature: float = 0.05,
        in_batch_negatives: bool = False,
        item_id_feature: str = "item_id",
        user_id_feature: str = "user_id",
        cross_replica_negatives: bool = True,
        xla_in_batch: bool = False,
        fused_in_batch: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(user_tower, Tower):
            user_tower = keras.saving.deserialize_keras_object(user_tower)
        if not isinstance(item_tower, Tower):
            item_tower = keras.saving.deserialize_keras_object(item_tower)
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if similarity == "cosine" and not (user_tower.normalize and item_tower.normalize):
            raise ValueError("similarity='cosine' needs both towers with normalize=True")
        if user_tower.output_dim != item_tower.output_dim:
            raise ValueError(
                f"towers disagree on output_dim: user {user_tower.output_dim}, "
                f"item {item_tower.output_dim}"
            )
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.similarity = similarity
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)
        self.item_id_feature = item_id_feature
        self.user_id_feature = user_id_feature
        self.cross_replica_negatives = bool(cross_replica_negatives)
        self.xla_in_batch = bool(xla_in_batch)
        self.fused_in_batch = bool(fused_in_batch)
        self._loss_fuses = False  # set by compile
        self._bind_histories()
        self._in_batch_scores = (
            tf.function(self._in_batch_scores_eager, jit_compile=True)
            if self.xla_in_batch else self._in_batch_scores_eager
        )

    def _bind_histories(self) -> None:
        """Points every user `history` feature at the item tower's id table (shared rows;
        `tfrecall.features.history`)."""
        if any(s.kind == "history" for s in self.item_tower.encoder.specs):
            raise ValueError("a 'history' feature reads the item tower's id table and belongs "
                             "to the user tower, not the item tower")
        for spec, layer in zip(self.user_tower.encoder.specs,
                               self.user_tower.encoder.feature_layers, strict=True):
            if spec.kind == "history":
                layer.bind(self.item_tower.encoder.layer(self.item_id_feature))

    @classmethod
    def from_specs(
        cls,
        user_features: Sequence[FeatureSpec],
        item_features: Sequence[FeatureSpec],
        tower: TowerConfig = TowerConfig(),  # noqa: B008 (frozen, immutable)
        item_tower: Optional[TowerConfig] = None,
        **kwargs,
    ) -> "TwoTowerModel":
        """Builds both towers from specs; `item_tower` defaults to `tower`."""
        return cls(
            Tower.from_config_objects(user_features, tower, name="user_tower"),
            Tower.from_config_objects(item_features, item_tower or tower, name="item_tower"),
            **kwargs,
        )

    def adapt(self, users, items) -> None:
        """Learns vocabularies and statistics: `users`/`items` are numpy column tables."""
        self.user_tower.encoder.adapt(users)
        self.item_tower.encoder.adapt(items)

    @property
    def embedding_dim(self) -> int:
        return self.user_tower.output_dim

    # ----------------------------------------------------------------- scoring
    def user_embeddings(self, features, training=None) -> tf.Tensor:
        """`(B, D)` user embeddings from raw user features."""
        return self.user_tower(features, training=training)

    def item_embeddings(self, features, training=None) -> tf.Tensor:
        """`S + (D,)` item embeddings from raw item features of shape S."""
        return self.item_tower(features, training=training)

    def call(self, inputs, training=None):
        # Items first: the item tower creates the id table that a user history reads, so
        # the table is made (and placed, e.g. sharded over parameter servers) as the item
        # tower's own.
        items = self.item_tower(inputs["items"], training=training)  # (B, L, D)
        users = self.user_tower(inputs["user"], training=training)  # (B, D)
        return tf.einsum("bd,bld->bl", users, items) / self.temperature

    def logits_and_labels(self, x, y, training=None):
        """Training logits and labels for one batch, with log Q and accidental hits applied.

        Returns:
          `(logits, labels)`: `(B, B)` for in-batch negatives, else `(B, L)`.
        """
        items = x["items"]
        ids = items.get(self.item_id_feature)
        if self.in_batch_negatives and _has_sampled_negatives(x):
            # Mixed negative sampling: in-batch + per-row and shared sampled negatives in
            # one softmax (tfrecall.models.mixed; on this replica's batch only).
            return mixed_logits_and_labels(self, x, y, training)
        users = self.user_tower(x["user"], training=training)
        log_q = x.get("log_q")
        if self.in_batch_negatives:
            cands, positive, row_keys, cand_keys, cand_log_q = self._in_batch_candidates(
                x, training)
            labels = tf.one_hot(positive, tf.shape(cands)[0], dtype=cands.dtype)  # (B, G)
            return self._in_batch_scores(users, cands, labels, row_keys, cand_keys, cand_log_q)
        if y is None:
            raise ValueError("a batch without labels needs in_batch_negatives=True")
        cands = self.item_tower(items, training=training)  # (B, L, D)
        logits = tf.einsum("bd,bld->bl", users, cands) / self.temperature
        labels = tf.cast(y, logits.dtype)
        if ids is not None:
            # The row's positive is its best-labelled slot; another slot holding the same
            # item is a sampled negative that collided with it. Rows without a positive
            # (pointwise negatives, exposure-only lists) have nothing to collide with.
            best = tf.argmax(labels, axis=-1, output_type=tf.int32)
            masked = remove_accidental_hits(labels, ids, tf.gather(ids, best, batch_dims=1))
            has_positive = tf.reduce_max(labels, axis=-1, keepdims=True) > 0
            labels = tf.where(has_positive, masked, labels)
        return correct_log_q(logits, log_q), labels

    def _in_batch_candidates(self, x, training):
        """The in-batch candidates: `(cands (G, D), positive (B,), row_keys, cand_keys,
        cand_log_q)`; G = B, or the global batch when replicas share negatives."""
        items = x["items"]
        ids = items.get(self.item_id_feature)
        log_q = x.get("log_q")
        positives = {name: value[:, 0] for name, value in items.items()}
        cands = self.item_tower(positives, training=training)  # (B, D)
        # Ids compare as 64-bit keys: (B, B) string equality costs more than the rest
        # of the step, and collectives carry no strings. A collision (p ~ B^2 / 2^63)
        # would only mask one more negative.
        cand_keys = row_keys = None if ids is None else _id_keys(ids[:, 0])
        cand_log_q = None if log_q is None else tf.cast(log_q, cands.dtype)[:, 0]
        positive = tf.range(tf.shape(cands)[0])
        context = tf.distribute.get_replica_context()
        if (self.cross_replica_negatives and tf.distribute.has_strategy()
                and context is not None and context.num_replicas_in_sync > 1):
            cands, cand_keys, cand_log_q, positive = _gather_replicas(
                context, cands, cand_keys, cand_log_q)
        return cands, positive, row_keys, cand_keys, cand_log_q

    def _mixed_candidates(self, x, training):
        """The candidates of a mixed batch for the fused kernel: this replica's B positives
        then the S shared negatives, `(cands (B + S, D), positive (B,), row_keys,
        cand_keys, cand_log_q)`, each column with its own log Q (`tfrecall.models.mixed`
        scores the same columns densely; like it, no cross-replica gather)."""
        items, negatives = x["items"], x["negatives"]
        positives = self.item_tower({k: v[:, 0] for k, v in items.items()}, training=training)
        shared = self.item_tower(negatives, training=training)  # (S, D)
        cands = tf.concat([positives, tf.cast(shared, positives.dtype)], 0)
        ids = items.get(self.item_id_feature)
        shared_ids = negatives.get(self.item_id_feature)
        row_keys = cand_keys = None
        if ids is not None and shared_ids is not None:
            row_keys = _id_keys(ids[:, 0])
            cand_keys = tf.concat([row_keys, _id_keys(shared_ids)], 0)
        log_q, shared_log_q = x.get("log_q"), x.get("negatives_log_q")
        cand_log_q = None
        if log_q is not None or shared_log_q is not None:
            zeros = tf.zeros(tf.shape(cands)[:1], cands.dtype)
            first = zeros[:tf.shape(positives)[0]] if log_q is None else tf.cast(
                log_q, cands.dtype)[:, 0]
            rest = zeros[tf.shape(positives)[0]:] if shared_log_q is None else tf.cast(
                shared_log_q, cands.dtype)
            cand_log_q = tf.concat([first, rest], 0)
        return cands, tf.range(tf.shape(positives)[0]), row_keys, cand_keys, cand_log_q

    def _in_batch_scores_eager(self, users, cands, labels, row_keys, cand_keys, cand_log_q):
        """`(B, G)` logits and labels from embeddings; G = candidates (B, or global)."""
        logits = tf.matmul(users, cands, transpose_b=True) / self.temperature
        if row_keys is not None:
            labels = remove_accidental_hits(labels, cand_keys, row_keys)
        if cand_log_q is not None:
            logits = correct_log_q(logits, tf.reshape(cand_log_q, [1, -1]))
        return logits, labels

    # ---------------------------------------------------------------- training
    def _check_log_q(self, x):
        if getattr(self.loss, "requires_log_q", False) and "log_q" not in x:
            raise ValueError(
                f"{type(self.loss).__name__} corrects logits by log Q(item), but the batch has "
                "no 'log_q' field; use a sampler that emits log_q (tfrecall.data) or a loss "
                "without sampling-bias correction (e.g. SoftmaxLoss)"
            )

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None, **kwargs):
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        loss_weights=loss_weights, weighted_metrics=weighted_metrics, **kwargs)
        # The fused in-batch path replaces "logits -> loss" for the one loss whose math it
        # implements (SoftmaxLoss' per-list cross-entropy, inherited unchanged), and only
        # when nothing else (a metric, a loss weight) needs the logits.
        self._loss_fuses = (
            isinstance(loss, SoftmaxLoss) and type(loss).per_list is SoftmaxLoss.per_list
            and loss.reduction != Reduction.NONE and loss_weights is None
            and not metrics and not weighted_metrics
        )

    def _fuses(self, x) -> bool:
        """True when this batch's loss goes through the fused in-batch softmax: in-batch
        candidates, plus negatives shared by the batch if any (not per-row ones)."""
        return (self._loss_fuses and self.fused_in_batch and self.in_batch_negatives
                and not self.xla_in_batch and not _has_row_negatives(x))

    def _fused_loss(self, x, sample_weight, training):
        """The compiled loss of an in-batch batch, without the `(B, B)` matrix.

        Mirrors what `Model.compute_loss` (Keras' loss container) does with a single
        loss: the loss' own reduction, the "loss" metric, regularization losses, and
        the per-replica scaling of mean reductions under a strategy.
        """
        users = self.user_tower(x["user"], training=training) / self.temperature
        if "negatives" in x:
            cands, positive, row_keys, cand_keys, cand_log_q = self._mixed_candidates(
                x, training)
        else:
            cands, positive, row_keys, cand_keys, cand_log_q = self._in_batch_candidates(
                x, training)
        per_list = in_batch_softmax(users, cands, positive, cand_log_q, row_keys, cand_keys)
        container = self.compiled_loss
        if not container.built:
            container.build(per_list)
        # Every in-batch row has its positive (the diagonal), so every row scores.
        value = reduce_lists(per_list, tf.ones_like(per_list, tf.bool), sample_weight,
                             self.loss.reduction)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        tracked = value * replicas if self.loss.reduction == Reduction.SUM else value
        if self.loss.reduction != Reduction.SUM:
            value = value / replicas
        if self.losses:
            regularization = tf.add_n([tf.cast(r, value.dtype) for r in self.losses])
            tracked += regularization
            value += regularization / replicas
        container.metrics[0].update_state(tracked, sample_weight=tf.shape(per_list)[0])
        return value

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._check_log_q(x)
        if self._fuses(x):
            with tf.GradientTape() as tape:
                loss = self._fused_loss(x, sample_weight, training=True)
            self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
            return self.get_metrics_result()
        with tf.GradientTape() as tape:
            logits, labels = self.logits_and_labels(x, y, training=True)
            loss = self.compute_loss(x, labels, logits, sample_weight)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self.compute_metrics(x, labels, logits, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._check_log_q(x)
        if self._fuses(x):
            self._fused_loss(x, sample_weight, training=False)
            return self.get_metrics_result()
        logits, labels = self.logits_and_labels(x, y, training=False)
        self.compute_loss(x, labels, logits, sample_weight)
        return self.compute_metrics(x, labels, logits, sample_weight)

    def get_config(self):
        return {
            "user_tower": keras.saving.serialize_keras_object(self.user_tower),
            "item_tower": keras.saving.serialize_keras_object(self.item_tower),
            "similarity": self.similarity,
            "temperature": self.temperature,
            "in_batch_negatives": self.in_batch_negatives,
            "item_id_feature": self.item_id_feature,
            "user_id_feature": self.user_id_feature,
            "cross_replica_negatives": self.cross_replica_negatives,
            "xla_in_batch": self.xla_in_batch,
            "fused_in_batch": self.fused_in_batch,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _has_sampled_negatives(x) -> bool:
    """True for in-batch batches that also carry sampled negatives (items (B, 1 + H))."""
    width = next(iter(x["items"].values())).shape[1]
    return "negatives" in x or width is None or width > 1


def _has_row_negatives(x) -> bool:
    """True for in-batch batches whose rows carry their own sampled negatives (items
    (B, 1 + H), H > 0, or a width unknown when traced)."""
    width = next(iter(x["items"].values())).shape[1]
    return width is None or width > 1


def _id_keys(ids: tf.Tensor) -> tf.Tensor:
    """int64 keys of ids: a 63-bit hash of strings, integers as they are."""
    if ids.dtype == tf.string:
        return tf.strings.to_hash_bucket_fast(ids, 2**63 - 1)
    return tf.cast(ids, tf.int64)


def _gather_replicas(context, cands, cand_ids, cand_log_q):
    """All-gathers in-batch candidates across replicas; positives are this replica's block.

    Returns `(cands (G, D), ids (G,), log_q (G,), positive (B,))` with G the global batch
    and `positive[i]` the column of row i's own positive.
    Ids travel as their int64 keys (`_id_keys`). The all-gather is differentiable: gradients
    flow back to the replica that embedded each candidate.
    """
    local = tf.shape(cands)[0]
    sizes = context.all_gather(tf.reshape(local, [1]), axis=0)  # (R,) per-replica batch sizes
    replica = context.replica_id_in_sync_group
    offset = tf.reduce_sum(sizes[:replica])
    cands = context.all_gather(cands, axis=0)
    if cand_ids is not None:
        cand_ids = context.all_gather(cand_ids, axis=0)
    if cand_log_q is not None:
        cand_log_q = context.all_gather(cand_log_q, axis=0)
    return cands, cand_ids, cand_log_q, offset + tf.range(local)
