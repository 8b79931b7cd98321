"""EASE as a distillation teacher for the two-tower model (issue 12, item 5).

EASE (`tfrecall.evaluation.baselines.EASE`) is fit on a training stage's own fit split
(the search stage: train minus validation; the final stage: the whole training split;
never the test split). Each user's top-N items that the user does not have in that split
become extra ("teacher") positive rows of the interactions the sampler trains on, so the
in-batch softmax learns EASE's ranking beside the real positives. The user tower's
history and the item id vocabulary still come from the real positives only.

Only the in-batch view's positives are added; the teacher rows are ``positive=True``,
``label=1``, ``event="teacher"``. lambda: `select_ease_l2` on the training split (its own
per-user validation slice), once per run, as the EASE baseline chooses it (same training
pairs, same cut-off): the recipe hands this choice to the baseline instead of running the
grid twice.

`resolve_teacher` turns the run's settings into its mode: with ``teacher="auto"`` (the
default) `tfrecall.recipe.job.run` trains the search stage without and with the teacher
and keeps the one with the better best validation recall.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from tfrecall.evaluation.baselines import DEFAULT_EASE_MAX_BYTES, EASE, select_ease_l2
from tfrecall.ids import catalogue_index, top_k_rows
from tfrecall.io.schema import RecallData

TEACHER_EVENT = "teacher"


def positive_index_pairs(data: RecallData, user_ids: np.ndarray,
                         catalogue: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The positive (user, item) rows of `data` as indices into `user_ids` / `catalogue`
    (rows with ids outside them are dropped)."""
    inter = data.interactions
    mask = np.asarray(inter["positive"], bool)
    u = catalogue_index(user_ids, inter["user_id"], mask)
    i = catalogue_index(catalogue, inter["item_id"], mask)
    keep = (u >= 0) & (i >= 0)
    return u[keep], i[keep]


def teacher_top_lists(scores: np.ndarray, seen_users: np.ndarray, seen_items: np.ndarray,
                      top_n: int) -> np.ndarray:
    """Per row of `scores` (users x items), the `top_n` best-scored items the user has not
    seen, best first; `(users, top_n)` int64, -1 where fewer unseen items exist.

    Within a list, ties go to the lower item index (at the `top_n`-th place a tie may
    keep either item).
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[seen_users, seen_items] = -np.inf
    n = min(top_n, scores.shape[1])
    top = top_k_rows(scores, n)
    values = np.take_along_axis(scores, top, 1)
    top = np.take_along_axis(top, np.lexsort((top, -values), axis=-1), 1)
    top = np.where(np.isfinite(np.take_along_axis(scores, top, 1)), top, -1)
    if n < top_n:
        top = np.concatenate([top, np.full((len(top), top_n - n), -1, np.int64)], 1)
    return top.astype(np.int64)


class EaseTeacher:
    """Adds EASE's top-N unseen items per user to a fit split as extra positives.

    Args:
      top_n: teacher items per user (those with at least one real positive); with
        `ratio`, the most per user.
      ratio: > 0: a user with d real positives in the fit split gets
        ``min(top_n, ceil(ratio * d))`` teacher items; 0: `top_n` each.
      l2: EASE's lambda; None: chosen by `select_ease_l2` in `prepare`.
      max_bytes: EASE's memory budget.
    """

    def __init__(self, top_n: int, ratio: float = 0.0, l2: Optional[float] = None,
                 max_bytes: int = DEFAULT_EASE_MAX_BYTES):
        if top_n < 1:
            raise ValueError(f"teacher top_n must be >= 1, got {top_n}")
        if not ratio >= 0:
            raise ValueError(f"teacher ratio must be >= 0, got {ratio}")
        self.top_n, self.ratio, self.l2, self.max_bytes = int(top_n), float(ratio), l2, max_bytes

    def prepare(self, train: RecallData, user_ids: np.ndarray, catalogue: np.ndarray,
                log=print, k: int = 100, pairs=None) -> "EaseTeacher":
        """Chooses lambda on the training split (never the test split) by validation
        Recall@`k`, if not given; `pairs`: `positive_index_pairs` of these, if at hand."""
        if self.l2 is None:
            u, i = positive_index_pairs(train, user_ids, catalogue) if pairs is None else pairs
            try:
                self.l2, _ = select_ease_l2(u, i, len(user_ids), len(catalogue), k=k,
                                            max_bytes=self.max_bytes)
            except MemoryError as e:  # a setting the user chose: say which and why
                raise ValueError(f"the teacher needs EASE, which does not fit here: {e}; "
                                 "set teacher=off (or teacher=auto)") from None
            log(f"teacher: EASE lambda {self.l2:g} (validation slice of the training split)")
        return self

    def top_lists(self, fit: RecallData, user_ids: np.ndarray,
                  catalogue: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """EASE fit on `fit`'s positives: (user indices with positives, their top lists)."""
        if self.l2 is None:
            raise RuntimeError("EaseTeacher.top_lists before prepare(...)")
        u, i = positive_index_pairs(fit, user_ids, catalogue)
        ease = EASE(self.l2, self.max_bytes).fit(u, i, len(user_ids), len(catalogue))
        users = np.unique(u)
        tops = []
        for start in range(0, len(users), 512):
            block = users[start:start + 512]  # sorted, so a block is a range of indices
            in_block = (u >= block[0]) & (u <= block[-1])
            rows = np.searchsorted(block, u[in_block])
            tops.append(teacher_top_lists(ease.score(block), rows, i[in_block], self.top_n))
        return users, np.concatenate(tops) if tops else np.zeros((0, self.top_n), np.int64)

    def augment(self, fit: RecallData, user_ids: np.ndarray, catalogue: np.ndarray,
                log=print) -> RecallData:
        """`fit` plus one positive row per (user, teacher item)."""
        users, top = self.top_lists(fit, user_ids, catalogue)
        if self.ratio > 0:
            u, i = positive_index_pairs(fit, user_ids, catalogue)
            real = np.bincount(np.unique(u * len(catalogue) + i) // len(catalogue),
                               minlength=len(user_ids))[users]
            quota = np.minimum(self.top_n, np.ceil(self.ratio * real - 1e-9)).astype(np.int64)
            top = np.where(np.arange(top.shape[1])[None, :] < quota[:, None], top, -1)
        rows_u = np.repeat(users, top.shape[1])
        rows_i = top.reshape(-1)
        keep = rows_i >= 0
        rows_u, rows_i = rows_u[keep], rows_i[keep]
        n = len(rows_u)
        inter = fit.interactions
        ids_u = np.asarray(user_ids, dtype=object)[rows_u]
        extra = {}
        for name, col in inter.items():
            if name == "user_id":
                extra[name] = ids_u
            elif name == "item_id":
                extra[name] = np.asarray(catalogue, dtype=object)[rows_i]
            elif name == "positive":
                extra[name] = np.ones(n, bool)
            elif name == "label":
                extra[name] = np.ones(n, col.dtype)
            elif name == "event":
                extra[name] = np.full(n, TEACHER_EVENT, dtype=object)
            elif name == "request_id":
                extra[name] = np.asarray([f"{TEACHER_EVENT}:{x}" for x in ids_u.tolist()],
                                         dtype=object)
            elif col.dtype == object:
                extra[name] = np.full(n, "", dtype=object)
            elif np.issubdtype(col.dtype, np.floating):
                extra[name] = np.full(n, np.nan, col.dtype)
            else:  # timestamps and other integers: the log's latest value
                extra[name] = np.full(n, col.max() if len(col) else 0, col.dtype)
        merged = {k: np.concatenate([v, extra[k]]) for k, v in inter.items()}
        log(f"teacher: {n} EASE positives (top {self.top_n}, ratio {self.ratio:g}) beside "
            f"{int(np.sum(inter['positive']))} real ones")
        return RecallData(merged, fit.users, fit.items, f"{fit.name}+teacher")


def resolve_teacher(config, train: RecallData, user_ids: np.ndarray, catalogue: np.ndarray,
                    has_validation: bool, log=print, max_bytes: int = DEFAULT_EASE_MAX_BYTES,
                    k: int = 100) -> Tuple[str, Optional[EaseTeacher]]:
    """The run's teacher mode ("auto", "on" or "off") and its prepared `EaseTeacher`
    (lambda chosen by validation Recall@`k`, the EASE baseline's criterion at the run's
    largest cut-off).

    ``teacher_top_n=0`` is "off". "auto" needs the in_batch view, a validation slice to
    choose on and EASE within its memory budget (counted, as EASE's fit counts it, over
    the users and items with training positives); without any of them it is "off", and
    the log says why. "on" where EASE does not fit is an error (`EaseTeacher.prepare`).
    """
    mode = config.teacher if config.teacher_top_n else "off"
    if mode == "off":
        return mode, None
    teacher = EaseTeacher(config.teacher_top_n, config.teacher_ratio, max_bytes=max_bytes)
    if mode == "auto":
        if config.sampling.view != "in_batch":
            # Measured (and designed) for the in-batch softmax; the other views build
            # lists and pairs from requests, which the teacher's rows do not have.
            log(f"teacher: off (auto chooses for the in_batch view; this run's view is "
                f"{config.sampling.view}; teacher=on forces it)")
            return "off", None
        if not has_validation:
            log("teacher: off (auto chooses on the validation slice, and this run has none)")
            return "off", None
    pairs = positive_index_pairs(train, user_ids, catalogue)
    if mode == "auto":
        try:  # a catalogue's items never positive take no room in EASE
            EASE(1.0, teacher.max_bytes).check_pairs_budget(*pairs)
        except MemoryError as e:
            log(f"teacher: off ({e})")
            return "off", None
    return mode, teacher.prepare(train, user_ids, catalogue, log, k=k, pairs=pairs)
