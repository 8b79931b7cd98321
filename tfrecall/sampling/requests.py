"""Request lists (numpy only): graded lists of the log and a ranker's ordered lists.

- `graded_lists` / `GradedLists`: the log grouped by ``request_id`` into padded lists
  of logged graded labels (label -1 = padding).
- `RankerLists`: a ranker's ordered candidates per request (beyond the exposures),
  the source of ranker-window hard negatives, ranker pairs and distillation lists.
- `ranked_requests` / `RankedRequests`: per request, the ranker's list where it has one,
  else the logged rows by ranker score (pairwise head_tail/segments, distillation).

The tf.data builders that read them are in `tfrecall.sampling.dataset`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import numpy as np

from tfrecall.ids import catalogue_index, check_int, first_appearance_codes
from tfrecall.io.schema import RecallData

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GradedLists:
    """One list per logged request (see `graded_lists`).

    Attributes:
      user_ids: ``(R,)`` object array, the request's user.
      item_ids: ``(R, L)`` object array, ``""`` in padded slots.
      labels: ``(R, L)`` float32 logged graded labels, -1 in padded slots.
      request_ids: ``(R,)`` object array.
      num_dropped_requests: requests left out because they had no positive row.
      num_truncated_requests: kept requests that had more than L rows.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    labels: np.ndarray
    request_ids: np.ndarray
    num_dropped_requests: int
    num_truncated_requests: int


def graded_lists(data: RecallData, list_size: int) -> GradedLists:
    """Groups the log by ``request_id`` into padded lists with the logged labels.

    Lists are in order of each request's first row; slots keep the logged row order.
    A request with more than ``list_size`` rows keeps its positives first, then the
    highest labels, then the earliest rows (so truncation never loses a positive
    while a non-positive is kept). Requests without a positive row are dropped and
    counted.

    Args:
      data: the training data; its interactions need ``request_id``.
      list_size: L, the list length (>= 1).

    Returns:
      A `GradedLists`.

    Raises:
      ValueError: no ``request_id`` column, a request with rows of several users,
        no request with a positive, or a bad ``list_size``.
    """
    check_int("list_size", list_size, 1)
    inter = data.interactions
    if "request_id" not in inter:
        raise ValueError(f"listwise mode 'graded' needs a 'request_id' column in the "
                         f"interactions of {data.name!r}; columns are {sorted(inter)}")
    n = data.num_interactions
    # Requests numbered by first appearance so lists follow the log.
    first, req = first_appearance_codes(inter["request_id"])
    num_req = len(first)

    _, user_code = np.unique(np.asarray(inter["user_id"]).astype(str), return_inverse=True)
    user_code = user_code.reshape(-1)
    umin = np.full(num_req, np.iinfo(np.int64).max)
    umax = np.full(num_req, -1)
    np.minimum.at(umin, req, user_code)
    np.maximum.at(umax, req, user_code)
    if np.any(umin != umax):
        bad = first[np.flatnonzero(umin != umax)[0]]
        raise ValueError(f"request {inter['request_id'][bad]!r} of {data.name!r} has rows "
                         "of several users")

    positive = np.asarray(inter["positive"], bool)
    label = np.asarray(inter["label"], np.float32)
    row = np.arange(n)
    # Priority inside a request: positives, then higher label, then earlier rows.
    order = np.lexsort((row, -label, ~positive, req))
    priority = _rank_within(req[order], num_req)
    keep = np.zeros(n, bool)
    keep[order[priority < list_size]] = True
    counts = np.bincount(req, minlength=num_req)
    has_pos = np.bincount(req, weights=positive, minlength=num_req) > 0
    if not has_pos.any():
        raise ValueError(f"{data.name!r}: no request has a positive row; graded lists need one")

    new_id = np.cumsum(has_pos) - 1  # request -> list index (valid where has_pos)
    rows = np.flatnonzero(keep & has_pos[req])
    rows = rows[np.argsort(req[rows], kind="stable")]  # by request, log order inside
    slot = _rank_within(req[rows], num_req)
    num_lists = int(has_pos.sum())
    item_ids = np.full((num_lists, list_size), "", dtype=object)
    labels = np.full((num_lists, list_size), -1.0, dtype=np.float32)
    item_ids[new_id[req[rows]], slot] = np.asarray(inter["item_id"])[rows]
    labels[new_id[req[rows]], slot] = label[rows]
    list_rows = first[has_pos]
    dropped = int(num_req - num_lists)
    if dropped:
        _LOG.info("graded_lists(%s): dropped %d of %d requests with no positive",
                  data.name, dropped, num_req)
    return GradedLists(
        user_ids=np.asarray(inter["user_id"])[list_rows],
        item_ids=item_ids,
        labels=labels,
        request_ids=np.asarray(inter["request_id"])[list_rows],
        num_dropped_requests=dropped,
        num_truncated_requests=int(np.sum(has_pos & (counts > list_size))),
    )


def _rank_within(groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Position of each element inside its run, for an array sorted by group."""
    counts = np.bincount(groups, minlength=num_groups)
    starts = np.cumsum(counts) - counts
    return np.arange(len(groups)) - starts[groups]



@dataclasses.dataclass(frozen=True)
class RankerLists:
    """A ranker's ordered candidate lists, one per request, best first.

    Production rankers score many more candidates than are shown; their order beyond
    the exposures gives hard negatives (ranks 100-500), "ranked but not exposed"
    pairs and distillation targets. Dense form: ``R`` requests by ``N`` slots of item
    indices into ``item_vocab`` (compact for hundreds of candidates per request).

    Attributes:
      request_ids: ``(R,)`` object array of distinct str request ids.
      user_ids: ``(R,)`` object array, the user of each request.
      item_vocab: ``(I,)`` object array of str item ids.
      items: ``(R, N)`` int32 indices into ``item_vocab`` in rank order; -1 pads the
        end of shorter lists.
      scores: ``(R, N)`` float32 ranker scores, non-increasing along a row; NaN where
        ``items`` is -1.

    Raises:
      ValueError: shapes that disagree, duplicate request ids, indices out of range,
        or padding that is not at the end of a row.
    """

    request_ids: np.ndarray
    user_ids: np.ndarray
    item_vocab: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        r = len(self.request_ids)
        if self.items.ndim != 2 or self.items.shape[0] != r or self.scores.shape != \
                self.items.shape or len(self.user_ids) != r:
            raise ValueError(
                f"RankerLists: request_ids ({r},), user_ids ({len(self.user_ids)},), items "
                f"{self.items.shape} and scores {self.scores.shape} must agree as (R,), (R,), "
                "(R, N), (R, N)")
        if len(set(np.asarray(self.request_ids).tolist())) != r:
            raise ValueError("RankerLists: request_ids are not unique")
        if self.items.size and (self.items.max() >= len(self.item_vocab) or self.items.min() < -1):
            raise ValueError(f"RankerLists: items must index item_vocab ({len(self.item_vocab)} "
                             "ids) or be -1")
        pad = self.items < 0
        if np.any(pad[:, :-1] & ~pad[:, 1:]):
            raise ValueError("RankerLists: padding (-1) must come after every listed item")

    @property
    def lengths(self) -> np.ndarray:
        """``(R,)`` int64 number of listed items per request."""
        return np.sum(self.items >= 0, axis=1).astype(np.int64)

    @classmethod
    def from_rows(
        cls,
        request_ids: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        scores: np.ndarray,
        top_n: Optional[int] = None,
    ) -> "RankerLists":
        """Builds the lists from long-format rows (one row per scored candidate).

        Rows are sorted by score (best first) within each request, ties by row order;
        rows with a NaN score are dropped; each list keeps its ``top_n`` best.

        Args:
          request_ids, user_ids, item_ids: ``(M,)`` str arrays.
          scores: ``(M,)`` float scores.
          top_n: optional list length cap.

        Returns:
          `RankerLists` with requests in order of first appearance.

        Raises:
          ValueError: lengths differ, or a request has rows of several users.
        """
        req = np.asarray(request_ids, dtype=object)
        users = np.asarray(user_ids, dtype=object)
        items = np.asarray(item_ids, dtype=object)
        scores = np.asarray(scores, np.float32)
        if not len(req) == len(users) == len(items) == len(scores):
            raise ValueError("RankerLists.from_rows: request_ids, user_ids, item_ids and scores "
                             "must have one entry per row")
        keep = ~np.isnan(scores)
        req, users, items, scores = req[keep], users[keep], items[keep], scores[keep]
        first, code = first_appearance_codes(req)
        num_req = len(first)
        _, ucode = np.unique(users.astype(str), return_inverse=True)
        lo = np.full(num_req, np.iinfo(np.int64).max)
        hi = np.full(num_req, -1)
        np.minimum.at(lo, code, ucode.reshape(-1))
        np.maximum.at(hi, code, ucode.reshape(-1))
        if np.any(lo != hi):
            bad = first[np.flatnonzero(lo != hi)[0]]
            raise ValueError(f"RankerLists.from_rows: request {req[bad]!r} has rows of several "
                             "users")
        order = np.lexsort((np.arange(len(req)), -scores, code))
        slot = _rank_within(code[order], num_req)
        width = int(slot.max()) + 1 if len(slot) else 0
        if top_n is not None:
            check_int("top_n", top_n, 1)
            width = min(width, top_n)
        vocab, item_code = np.unique(items.astype(str), return_inverse=True)
        dense_items = np.full((num_req, width), -1, np.int32)
        dense_scores = np.full((num_req, width), np.nan, np.float32)
        sel = order[slot < width]
        dense_items[code[sel], slot[slot < width]] = item_code.reshape(-1)[sel]
        dense_scores[code[sel], slot[slot < width]] = scores[sel]
        return cls(req[first], users[first], vocab.astype(object), dense_items, dense_scores)


@dataclasses.dataclass(frozen=True)
class RankedRequests:
    """Each training request's ranked candidates (best first), in CSR form.

    Attributes:
      request_ids: ``(R,)`` object array.
      user_ids: ``(R,)`` object array, the request's user.
      offsets: ``(R + 1,)`` int64; request r owns ``items[offsets[r]:offsets[r+1]]``.
      items: ``(M,)`` int64 catalogue indices in rank order.
      scores: ``(M,)`` float32 ranker scores (non-increasing within a request).
      num_from_ranker: requests whose list came from `RankerLists`.
      num_from_log: requests ranked by their logged ``ranker_score`` (the fallback for
        requests the ranker lists do not cover).
      num_skipped: training requests with fewer than 2 ranked catalogue items (no
        ranker list and fewer than 2 logged scores): left out.
      num_items_off_catalogue: listed items dropped because they are not in the
        catalogue.
    """

    request_ids: np.ndarray
    user_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    num_from_ranker: int
    num_from_log: int
    num_skipped: int
    num_items_off_catalogue: int

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def ranked_requests(
    train: RecallData,
    catalogue: np.ndarray,
    ranker_lists: Optional[RankerLists] = None,
    top_n: Optional[int] = None,
) -> RankedRequests:
    """The ranked candidates of every request of ``train``, from the ranker or the log.

    A request listed in ``ranker_lists`` takes that list (only requests of ``train``:
    the ranker's view of held-out requests is not trained on); any other request is
    ranked by the ``ranker_score`` of its logged rows, NaN scores left out. Lists keep
    their ``top_n`` best catalogue items.

    Args:
      train: the training log; needs ``request_id``.
      catalogue: ``(N,)`` catalogue ids.
      ranker_lists: optional `RankerLists`.
      top_n: optional cap on each list's length.

    Returns:
      A `RankedRequests`.

    Raises:
      ValueError: no ``request_id`` column, or no request with 2 ranked items.
    """
    inter = train.interactions
    if "request_id" not in inter:
        raise ValueError(f"ranker-based samples need a 'request_id' column in the interactions "
                         f"of {train.name!r}; columns are {sorted(inter)}")
    req = np.asarray(inter["request_id"], dtype=object).astype(str)
    names, first = np.unique(req, return_index=True)
    names = names[np.argsort(first, kind="stable")]
    first = np.sort(first)
    users = np.asarray(inter["user_id"], dtype=object)[first]
    cap = np.iinfo(np.int64).max if top_n is None else int(top_n)
    parts_req, parts_items, parts_scores = [], [], []
    covered = np.zeros(len(names), bool)
    off_catalogue = 0
    if ranker_lists is not None:
        where = catalogue_index(np.asarray(ranker_lists.request_ids, object), names)
        covered = where >= 0
        lists = ranker_lists.items[where[covered]]
        scores = ranker_lists.scores[where[covered]]
        to_cat = catalogue_index(catalogue, ranker_lists.item_vocab)
        cat = np.where(lists >= 0, to_cat[np.maximum(lists, 0)], -1)
        off_catalogue = int(np.sum((lists >= 0) & (cat < 0)))
        keep = cat >= 0
        keep &= np.cumsum(keep, axis=1) <= cap
        rows = np.nonzero(keep)
        parts_req.append(np.flatnonzero(covered)[rows[0]])
        parts_items.append(cat[rows])
        parts_scores.append(scores[rows])
    if "ranker_score" in inter:
        code = catalogue_index(names, req)
        item = catalogue_index(catalogue, inter["item_id"])
        score = np.asarray(inter["ranker_score"], np.float32)
        ok = ~covered[code] & np.isfinite(score) & (item >= 0)
        rows = np.flatnonzero(ok)
        rows = rows[np.lexsort((rows, -score[rows], code[rows]))]
        keep = _rank_within(code[rows], len(names)) < cap
        rows = rows[keep]
        parts_req.append(code[rows])
        parts_items.append(item[rows])
        parts_scores.append(score[rows])
    r = np.concatenate(parts_req) if parts_req else np.zeros(0, np.int64)
    it = np.concatenate(parts_items) if parts_items else np.zeros(0, np.int64)
    sc = np.concatenate(parts_scores) if parts_scores else np.zeros(0, np.float32)
    order = np.argsort(r, kind="stable")  # within a request the rank order is kept
    r, it, sc = r[order], it[order], sc[order]
    counts = np.bincount(r, minlength=len(names))
    ranked = counts >= 2
    if not ranked.any():
        raise ValueError(
            f"no request of {train.name!r} has 2 ranked catalogue items: pass ranker lists "
            "(RankerLists) or a 'ranker_score' column in the interactions")
    keep = ranked[r]
    r, it, sc = r[keep], it[keep], sc[keep]
    kept = np.flatnonzero(ranked)
    new_code = np.cumsum(ranked) - 1
    lengths = np.bincount(new_code[r], minlength=len(kept))
    return RankedRequests(
        request_ids=names[kept].astype(object),
        user_ids=users[kept],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=it.astype(np.int64),
        scores=sc.astype(np.float32),
        num_from_ranker=int(np.sum(covered & ranked)),
        num_from_log=int(np.sum(~covered & ranked)),
        num_skipped=int(np.sum(~ranked)),
        num_items_off_catalogue=off_catalogue,
    )
