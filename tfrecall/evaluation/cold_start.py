"""The cold-start protocol: items held out of training entirely, ranked for their users.

With `tfrecall.data.splits.item_split` no interaction of a held-out ("cold") item is in
training. Each user's held-out positives are ranked among the cold items only (the
candidates a cold-start channel would score; warm items cannot be targets), so Recall@K
measures whether a model can tell which NEW items a user will take. ItemCF, EASE and
popularity have no row for a cold item (every score is 0) and are not reported; the
baseline is popularity by feature: an item scores the mean training popularity of its
feature values (e.g. its genres), the best a non-personalized recommender can do
without the item's own history.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from tfrecall.evaluation.harness import EvalSet
from tfrecall.evaluation.metrics import evaluate_ranking
from tfrecall.io.feature_kinds import infer_kind
from tfrecall.io.schema import RecallData


def feature_popularity_scores(train: RecallData, items: Mapping[str, np.ndarray],
                              catalogue: np.ndarray, columns: Sequence[str],
                              separator: str = "|") -> np.ndarray:
    """``(len(catalogue),)`` float32: per item, the mean over its values of ``columns``
    (``separator``-split) of each value's share of the training positives (the share of
    positives on items holding that value). An item with no known value scores 0.

    Raises:
      ValueError: a column missing from ``items``, or no column.
    """
    if not columns:
        raise ValueError("feature popularity needs at least one item feature column")
    missing = [c for c in columns if c not in items]
    if missing:
        raise ValueError(f"feature popularity: column(s) {missing} not in the item table; "
                         f"columns are {sorted(items)}")
    row = {v: i for i, v in enumerate(np.asarray(items["item_id"]).astype(str).tolist())}

    def tokens(i: int):
        out = []
        for column in columns:
            value = items[column][i]
            if isinstance(value, str):
                out += [f"{column}={t}" for t in value.split(separator) if t.strip()]
            elif value == value:  # a number: its value is the token (NaN: none)
                out.append(f"{column}={value}")
        return out

    inter = train.interactions
    positives = np.asarray(inter["item_id"], dtype=object)[np.asarray(inter["positive"], bool)]
    item_counts: Dict[str, int] = {}
    for item in positives.astype(str).tolist():
        item_counts[item] = item_counts.get(item, 0) + 1
    token_counts: Dict[str, int] = {}
    for item, count in item_counts.items():
        if item in row:
            for token in tokens(row[item]):
                token_counts[token] = token_counts.get(token, 0) + count
    total = max(sum(item_counts.values()), 1)
    scores = np.zeros(len(catalogue), np.float32)
    for c, item in enumerate(np.asarray(catalogue).astype(str).tolist()):
        if item in row:
            values = [token_counts.get(t, 0) / total for t in tokens(row[item])]
            scores[c] = float(np.mean(values)) if values else 0.0
    return scores


def categorical_columns(items: Optional[Mapping[str, np.ndarray]]) -> List[str]:
    """The item table's columns of (multi-)categorical kind, as inference reads them."""
    return [name for name, values in (items or {}).items() if name != "item_id"
            and infer_kind(np.asarray(values)) in ("categorical", "multi_categorical")]


def evaluate_cold_start_baselines(train: RecallData, items: Optional[Mapping[str, np.ndarray]],
                                  eval_set: EvalSet, ks: Sequence[int], log=print
                                  ) -> Dict[str, Dict[str, float]]:
    """``{"feature_popularity": metrics}`` over the item table's categorical columns (empty,
    with a logged reason, when the items have none)."""
    columns = categorical_columns(items)
    if not columns:
        log("cold start: the items have no categorical feature, so there is no "
            "popularity-by-feature baseline")
        return {}
    log(f"cold start baseline: popularity by {', '.join(columns)}")
    scores = feature_popularity_scores(train, items, eval_set.catalogue, columns)
    return {"feature_popularity": evaluate_scores(eval_set, scores, ks)}


def evaluate_scores(eval_set: EvalSet, scores: np.ndarray, ks: Sequence[int]
                    ) -> Dict[str, float]:
    """Metrics of one non-personalized score per catalogue item."""
    return evaluate_ranking(lambda users: np.broadcast_to(scores, (len(users), len(scores))),
                            len(scores), eval_set.targets, eval_set.exclude, ks,
                            item_popularity=eval_set.item_popularity)
