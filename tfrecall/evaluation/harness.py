"""One evaluation harness for the model and the baselines, so they are scored alike.

`make_eval_set` turns a train/test split into targets and exclusions over one
catalogue; `evaluate_model`, `evaluate_popularity`, `evaluate_itemcf` and
`evaluate_ease` rank the full catalogue for every held-out user through
`metrics.evaluate_ranking`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.evaluation.baselines import (
    DEFAULT_EASE_MAX_BYTES,
    EASE,
    ItemCF,
    select_ease_l2,
)
from tfrecall.evaluation.metrics import (
    PairSets,
    evaluate_embeddings,
    evaluate_ranking,
    evaluate_top_lists,
)
from tfrecall.ids import catalogue_index
from tfrecall.io.schema import RecallData
from tfrecall.models.embed import embed_items, embed_users, feature_column


@dataclasses.dataclass
class EvalSet:
    """Held-out targets and per-user exclusions, as indices into `user_ids`/`catalogue`."""

    user_ids: np.ndarray
    catalogue: np.ndarray
    targets: Mapping[int, frozenset]  # `PairSets`; an unknown held-out item is -1
    exclude: Mapping[int, frozenset]
    item_popularity: np.ndarray  # training-positive counts per catalogue item
    train_user_idx: np.ndarray  # training positives as index pairs (ItemCF, EASE);
    # int32 where the indices fit
    train_item_idx: np.ndarray
    exclude_train: bool


def make_eval_set(
    train: RecallData,
    test: RecallData,
    user_ids: np.ndarray,
    catalogue: np.ndarray,
    exclude_train: bool = True,
) -> EvalSet:
    """Targets = the test positives; exclusions = each user's training positives.

    With ``exclude_train=False`` nothing is excluded and held-out items the user
    already has in training stay targets (the "all items" protocol).
    """
    te, tr = test.interactions, train.interactions
    te_pos, tr_pos = np.flatnonzero(te["positive"]), np.flatnonzero(tr["positive"])
    # Integer pairs (`PairSets`), not dicts of Python sets: on a 25M-row log the sets
    # kept 1.3 GiB.
    u_te = catalogue_index(user_ids, te["user_id"], te_pos)
    i_te = catalogue_index(catalogue, te["item_id"], te_pos)  # -1: a miss in the metrics
    u_tr = catalogue_index(user_ids, tr["user_id"], tr_pos)
    i_tr = catalogue_index(catalogue, tr["item_id"], tr_pos)
    keep = (u_tr >= 0) & (i_tr >= 0)
    # = popularity_scores(tr["item_id"][tr_pos], catalogue), from the codes above
    popularity = np.bincount(i_tr[i_tr >= 0], minlength=len(catalogue)).astype(np.float32)
    # The training pairs are held for the whole run (ItemCF, EASE): int32 where the
    # indices fit (20M pairs on a 25M-row log: 153 MiB instead of 305).
    small = max(len(user_ids), len(catalogue)) < 2 ** 31
    train_users = u_tr[keep].astype(np.int32) if small else u_tr[keep]
    del u_tr
    train_items = i_tr[keep].astype(np.int32) if small else i_tr[keep]
    del i_tr
    empty = np.zeros(0, np.int64)
    return EvalSet(
        user_ids=user_ids,
        catalogue=catalogue,
        targets=PairSets(u_te[u_te >= 0], i_te[u_te >= 0]),
        exclude=(PairSets(train_users, train_items) if exclude_train
                 else PairSets(empty, empty)),
        item_popularity=popularity,
        train_user_idx=train_users,
        train_item_idx=train_items,
        exclude_train=exclude_train,
    )


def count_pairs(eval_set: EvalSet) -> int:
    """The held-out pairs the metrics count: targets outside each user's exclusions."""
    return sum(len(t - eval_set.exclude.get(u, set())) for u, t in eval_set.targets.items())


def check_evaluable(eval_set: EvalSet, test: RecallData, exclude_train: bool = True) -> None:
    """Raises where the held-out split leaves nothing to evaluate (every metric would be 0).

    Raises:
      ValueError: no held-out positive pair (of a known user, outside the user's
        training items when `exclude_train`), with the test split's row counts.
    """
    if count_pairs(eval_set):
        return
    positives = int(np.asarray(test.interactions["positive"], bool).sum())
    outside = " outside that user's training items" if exclude_train else ""
    raise ValueError(
        f"nothing to evaluate: the held-out split has no positive (user, item) pair{outside} "
        f"({test.num_interactions} test rows, {positives} positive; "
        f"{len(eval_set.user_ids)} users, {len(eval_set.catalogue)} items); use a larger log, "
        "another test_fraction or another split")


def cap_ks(ks: Sequence[int], limit: int, what: Optional[str] = None
           ) -> Tuple[Tuple[int, ...], Optional[str]]:
    """Cut-offs at most `limit` (deduplicated, sorted), and a note naming any capped.

    Recall@K with K at or above the catalogue size ranks every item, so it is 1.0 by
    construction; a K above what can be ranked is reported as K = `limit`, with a note.

    Args:
      ks: the cut-offs asked for.
      limit: the most items that can be ranked (the catalogue size by default).
      what: what `limit` counts, for the note (default: the catalogue's items).

    Returns:
      ``(ks, note or None)``.
    """
    over = sorted(int(k) for k in ks if int(k) > limit)
    capped = tuple(sorted({min(int(k), limit) for k in ks}))
    if not over:
        return capped, None
    if what is None:
        return capped, (f"note: K {over} exceed the catalogue's {limit} items: capped at "
                        f"K={limit} (recall@{limit} ranks the whole catalogue)")
    return capped, f"note: K {over} exceed {what} ({limit}): capped at K={limit}"


def evaluate_embeddings_on(
    eval_set: EvalSet, user_embeddings: np.ndarray, item_embeddings: np.ndarray,
    ks: Sequence[int],
) -> Dict[str, float]:
    """Metrics of `(num_users, D)` x `(num_items, D)` embeddings aligned with the eval set."""
    return evaluate_embeddings(user_embeddings, item_embeddings, eval_set.targets,
                               eval_set.exclude, ks, item_popularity=eval_set.item_popularity)


def evaluate_model(
    model, eval_set: EvalSet, user_table: Mapping[str, np.ndarray],
    item_table: Mapping[str, np.ndarray], ks: Sequence[int],
) -> Dict[str, float]:
    """Exact full-catalogue metrics of a `TwoTowerModel`; tables align with the eval set."""

    return evaluate_embeddings_on(
        eval_set, embed_users(model, user_table), embed_items(model, item_table), ks
    )


def evaluate_popularity(eval_set: EvalSet, ks: Sequence[int]) -> Dict[str, float]:
    """Every user gets the same ranking: the catalogue by training count (ties: the lower
    catalogue index first), minus the user's excluded items.

    One stable sort serves every user, instead of scoring and ranking a (users, items)
    matrix (which took 135 s for 160k users x 59k items); each user's list is the order's
    first max(K) + |excluded| items, so K remain after exclusion.
    """
    pop = eval_set.item_popularity
    order = np.argsort(-np.asarray(pop, np.float64), kind="stable")
    kmax = min(max(ks, default=1), len(pop))  # empty ks: refused by evaluate_top_lists
    lists = {u: order[: kmax + len(eval_set.exclude.get(u, ()))] for u in eval_set.targets}
    return evaluate_top_lists(lists, len(pop), eval_set.targets, eval_set.exclude, ks,
                              item_popularity=pop)


BASELINES = ("popularity", "itemcf", "ease")


def evaluate_baselines(
    eval_set: EvalSet, ks: Sequence[int], names: Sequence[str] = BASELINES, log=print,
    ease_max_bytes: int = DEFAULT_EASE_MAX_BYTES, ease_l2: Optional[float] = None,
) -> Dict[str, Dict[str, float]]:
    """Metrics of each named baseline (`BASELINES`) in this harness.

    EASE's lambda is chosen on a validation slice of the training pairs (reported as
    ``metrics["l2"]``), or is `ease_l2` where the caller already chose it that way (the
    recipe's teacher: `select_ease_l2` on the same pairs at ``max(ks)``); where its dense
    matrices exceed `ease_max_bytes` it is skipped with a one-line reason through `log`.
    """
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)}")
    out = {}
    for name in names:
        if name == "popularity":
            out[name] = evaluate_popularity(eval_set, ks)
        elif name == "itemcf":
            out[name] = evaluate_itemcf(eval_set, ks)
        else:
            try:
                out[name] = evaluate_ease(eval_set, ks, l2=ease_l2, max_bytes=ease_max_bytes)
            except MemoryError as e:
                log(f"baseline ease skipped: {e}")
                continue
            log(f"baseline ease: l2={out[name]['l2']:g} (chosen on a validation slice of "
                "the training pairs" + (")" if ease_l2 is None else ", the teacher's choice)"))
    return out


def evaluate_ease(eval_set: EvalSet, ks: Sequence[int], l2: float = None,
                  max_bytes: int = DEFAULT_EASE_MAX_BYTES) -> Dict[str, float]:
    """EASE's metrics; `l2` None: chosen by `select_ease_l2` on the training pairs.

    Raises:
      MemoryError: the catalogue is too large for `max_bytes` (`EASE.memory_bytes`).
    """
    args = (eval_set.train_user_idx, eval_set.train_item_idx, len(eval_set.user_ids),
            len(eval_set.catalogue))
    # The budget is checked before the lambda grid builds its validation slice (on a
    # 25M-row log that slice alone took 29 s and 1.3 GiB only to find EASE too large).
    # Active users/items counted over all training pairs bound every fit of the grid.
    EASE(1.0, max_bytes).check_pairs_budget(args[0], args[1])
    if l2 is None:
        l2, _ = select_ease_l2(*args, k=max(ks), max_bytes=max_bytes)
    ease = EASE(l2, max_bytes).fit(*args)
    metrics = evaluate_ranking(ease.score, len(eval_set.catalogue), eval_set.targets,
                               eval_set.exclude, ks, item_popularity=eval_set.item_popularity)
    return {**metrics, "l2": float(l2)}


def evaluate_itemcf(eval_set: EvalSet, ks: Sequence[int], num_neighbors=200) -> Dict[str, float]:
    cf = ItemCF(num_neighbors=num_neighbors).fit(
        eval_set.train_user_idx, eval_set.train_item_idx,
        len(eval_set.user_ids), len(eval_set.catalogue),
    )
    return evaluate_ranking(cf.score, len(eval_set.catalogue), eval_set.targets,
                            eval_set.exclude, ks, item_popularity=eval_set.item_popularity)


def evaluate_export(
    export_path: str,
    eval_set: EvalSet,
    user_table: Mapping[str, np.ndarray],
    ks: Sequence[int],
    batch_size: int = 256,
    signature: Optional[str] = None,
) -> Dict[str, float]:
    """Metrics of the top-K lists an exported SavedModel returns (its ANN index included).

    Users are fed through ``serving_default`` with their raw features; when the export
    has the ``serving_exclude`` signature, each user's training items are passed as
    ``exclude_item_ids`` so the index returns K fresh items, else they are removed from
    the returned list (which can then hold fewer than K items). max(ks) must not exceed
    the export's K. `signature` names another signature to evaluate (e.g. a channel of a
    multi-channel export, `tfrecall.serving.channels`).
    """
    try:  # ScaNN exports need its ops registered; brute-force ones do not.
        import scann  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    loaded = tf.saved_model.load(export_path)
    use_exclude = bool(eval_set.exclude) and "serving_exclude" in loaded.signatures
    if signature is None:
        signature = "serving_exclude" if use_exclude else "serving_default"
    sig = loaded.signatures[signature]
    top_lists = signature_top_lists(sig, sig.structured_input_signature[1], eval_set,
                                    user_table, max(ks), batch_size)
    return evaluate_top_lists(top_lists, len(eval_set.catalogue), eval_set.targets,
                              eval_set.exclude, ks, eval_set.item_popularity)


def signature_top_lists(
    call, specs: Mapping[str, tf.TensorSpec], eval_set: EvalSet,
    user_table: Mapping[str, np.ndarray], k: int, batch_size: int = 256,
) -> Dict[int, list]:
    """`{user index: catalogue indices (-1 = unknown id)}` of a retrieval signature.

    `call(**features)` returns a dict with ``item_ids`` `(B, K)`; `specs` names its
    inputs. Each evaluated user (one with a held-out pair) is fed their raw features and,
    where the signature takes ``exclude_item_ids``, their training items (excluded).

    Raises:
      ValueError: the signature returns fewer than `k` items.
    """
    item_index = {v: i for i, v in enumerate(eval_set.catalogue.tolist())}
    users = sorted(u for u, t in eval_set.targets.items() if t - eval_set.exclude.get(u, set()))
    top_lists: Dict[int, list] = {}
    for start in range(0, len(users), batch_size):
        batch = np.array(users[start : start + batch_size])
        feed = {}
        for name, spec in specs.items():
            if name == "exclude_item_ids":
                continue
            feed[name] = tf.constant(feature_column(user_table, name, spec.dtype, batch,
                                                    len(batch)))
        if "exclude_item_ids" in specs:
            rows = [sorted(eval_set.exclude.get(u, ())) for u in batch.tolist()]
            width = max(1, max(len(r) for r in rows))
            ids = np.full((len(batch), width), "", dtype=object)
            for r, items in enumerate(rows):
                ids[r, : len(items)] = eval_set.catalogue[items].astype(str)
            feed["exclude_item_ids"] = tf.constant(ids.astype(str))
        out = call(**feed)["item_ids"].numpy()
        if out.shape[1] < k:
            raise ValueError(f"the export returns K={out.shape[1]} items, fewer than max(ks)="
                             f"{k}: export with a larger k or lower ks")
        for r, u in enumerate(batch.tolist()):
            top_lists[u] = [item_index.get(i.decode(), -1) for i in out[r]]
    return top_lists
