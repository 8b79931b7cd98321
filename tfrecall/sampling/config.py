"""`SamplingConfig`: how training samples and their negatives are drawn.

The view (batch layout), the negative sources and their counts, list sizes, the log Q
options and the seed; validated at construction (an unknown name or a contradiction is
a ValueError naming the field). `tfrecall.sampling.dataset` turns it into batches.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from tfrecall.config import check_choices, option
from tfrecall.ids import check_int

VIEWS = ("in_batch", "pointwise", "pairwise", "listwise", "distill")
SOURCES = ("in_batch", "uniform", "popularity", "hard")
EASY_SOURCES = ("uniform", "popularity")
PAIRWISE_MODES = ("random", "not_exposed", "head_tail", "segments")
LIST_MODES = ("sampled", "graded")
FREQUENCIES = ("exact", "streaming")



def parse_negatives(text: str) -> Tuple[str, ...]:
    """``"in_batch,uniform"`` -> ``("in_batch", "uniform")`` (spaces and empties dropped)."""
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


def parse_window(text: str) -> Tuple[int, int]:
    """``"100,500"`` -> ``(100, 500)``; raises ValueError naming the flag otherwise."""
    parts = parse_negatives(text)
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"hard_negative_window must be 'lo,hi' integers, got {text!r}") from None
    return lo, hi


def check_window(window) -> Tuple[int, int]:
    """``(lo, hi)`` as ints with ``0 <= lo < hi``; ValueError naming the window otherwise."""
    try:
        lo, hi = (int(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"hard_negative_window must be two integers (lo, hi), got {window!r}") from None
    if not 0 <= lo < hi:
        raise ValueError(f"hard_negative_window must satisfy 0 <= lo < hi, got {window!r}")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How training samples and their negatives are drawn (see the module docstring).

    Args:
      view: one of `VIEWS`.
      negatives: tuple of `SOURCES` (or a comma-separated string); None: the view's
        default (``("in_batch",)`` for in_batch, ``("uniform",)`` where the view
        samples, ``()`` for views that take lists as logged or ranked).
      num_negatives: negatives per positive; shared negatives per batch (in_batch).
      list_size: L of listwise and distill lists.
      list_mode: listwise lists, "sampled" or "graded".
      pairwise_mode: one of `PAIRWISE_MODES`.
      pairwise_segments: score segments of a request's ranked list (pairwise
        head_tail/segments; head_tail takes the first and last).
      popularity_alpha: exponent of the popularity sampler (count^alpha).
      hard_negative_window: ``(lo, hi)`` ranker ranks of hard negatives.
      easy_hard_ratio: easy:hard negatives (100 = 100:1); 0 = all hard.
      distill_top_n: ranked items per request that distillation segments.
      log_q: emit ``log_q`` for views that sample.
      frequency: in-batch log Q from "exact" counts or the "streaming" estimator.
      seed: seed of order and negatives.
      shuffle: shuffle rows each epoch.
      drop_remainder: drop each epoch's last, smaller batch (static batch shapes).

    Raises:
      ValueError: an unknown name, a bad number, or a contradiction (e.g. in_batch
        negatives outside the in_batch view), naming the field and value.
    """

    view: str = option(
        "in_batch",
        "Training view: in_batch (positives scored against the batch), pointwise (positive + "
        "sampled negatives as rows), pairwise (positive, negative), listwise (positive + "
        "list_size-1 negatives, or graded request lists), distill (ranker top-N split into "
        "list_size segments, one item each, ranker scores as labels).", choices=VIEWS)
    negatives: Optional[Tuple[str, ...]] = option(
        None,
        "Comma-separated negative sources: in_batch, uniform, popularity, hard. in_batch view: "
        "in_batch plus optional shared uniform/popularity negatives (mixed negative sampling) "
        "and per-row hard ones; other views: uniform, popularity, hard.", type=str)
    num_negatives: int = option(
        3, "Negatives per positive (pointwise, pairwise random: 1); in the in_batch view, "
        "uniform/popularity negatives shared by the batch.")
    list_size: int = option(8, "Items per list (listwise, distill).")
    list_mode: str = option(
        "sampled", "Listwise lists: sampled (positive + negatives) or graded (logged labels "
        "of each request, padded with -1).", choices=LIST_MODES)
    pairwise_mode: str = option(
        "random", "Pairwise triplets: random (negative from --negatives), not_exposed (ranked "
        "but not shown), head_tail, segments (two ranker segments).", choices=PAIRWISE_MODES)
    pairwise_segments: int = 5
    popularity_alpha: float = option(
        0.75, "Popularity negatives are drawn with weight count^alpha.")
    hard_negative_window: Tuple[int, int] = option(
        (100, 500), "Ranker ranks lo,hi (0-based, best first) that hard negatives come "
        "from, e.g. 100,500.", item=int)
    easy_hard_ratio: float = option(
        100.0, "Easy:hard negatives, e.g. 100 for 100:1 (Facebook EBR); 0 makes every "
        "sampled negative hard.")
    distill_top_n: int = option(
        400, "Distillation: the ranker's top N of each request are segmented.")
    log_q: bool = option(
        True, "Correct training logits by log Q(item) (sampling-bias correction).")
    frequency: str = option(
        "exact", "In-batch log Q: exact (counts of the training positives) or streaming "
        "(Yi et al. 2019 hashed estimator, updated per batch).", choices=FREQUENCIES)
    seed: int = 0
    shuffle: bool = True
    drop_remainder: bool = False

    def __post_init__(self):
        setattr_ = object.__setattr__
        check_choices(self, "SamplingConfig.")
        for name, minimum in (("num_negatives", 1), ("pairwise_segments", 2),
                              ("distill_top_n", 1), ("seed", 0)):
            check_int(f"SamplingConfig.{name}", getattr(self, name), minimum)
        graded = self.view == "listwise" and self.list_mode == "graded"
        check_int("SamplingConfig.list_size", self.list_size, 1 if graded else 2)
        if isinstance(self.hard_negative_window, str):
            setattr_(self, "hard_negative_window", parse_window(self.hard_negative_window))
        setattr_(self, "hard_negative_window",
                 check_window(self.hard_negative_window))
        if not self.easy_hard_ratio >= 0:
            raise ValueError(f"SamplingConfig.easy_hard_ratio must be >= 0, "
                             f"got {self.easy_hard_ratio!r}")
        if not self.popularity_alpha >= 0:
            raise ValueError(f"SamplingConfig.popularity_alpha must be >= 0, "
                             f"got {self.popularity_alpha!r}")
        setattr_(self, "negatives", self._resolve_negatives())

    @property
    def samples_negatives(self) -> bool:
        """Whether the view draws negatives (else its lists come as logged or ranked)."""
        if self.view == "pairwise":
            return self.pairwise_mode in ("random", "not_exposed")
        if self.view == "listwise":
            return self.list_mode == "sampled"
        return self.view in ("in_batch", "pointwise")

    @property
    def hard_fraction(self) -> float:
        """Share of per-row negatives that are hard: ``1 / (1 + easy_hard_ratio)``."""
        return 1.0 / (1.0 + float(self.easy_hard_ratio))

    def _resolve_negatives(self) -> Tuple[str, ...]:
        what = f"view={self.view!r}"
        if self.view == "pairwise":
            what += f", pairwise_mode={self.pairwise_mode!r}"
        if self.view == "listwise":
            what += f", list_mode={self.list_mode!r}"
        given = self.negatives
        if isinstance(given, str):
            given = parse_negatives(given)
        if not self.samples_negatives:
            if given:
                raise ValueError(f"SamplingConfig({what}) takes its lists from the log or the "
                                 f"ranker and samples no negatives; leave negatives unset, "
                                 f"got {tuple(given)!r}")
            return ()
        if given is None:
            return ("in_batch",) if self.view == "in_batch" else ("uniform",)
        given = tuple(given)
        unknown = [s for s in given if s not in SOURCES]
        if unknown or not given or len(set(given)) != len(given):
            raise ValueError(f"SamplingConfig.negatives must be distinct names from {SOURCES}, "
                             f"got {given!r}")
        if self.view == "in_batch" and "in_batch" not in given:
            raise ValueError(f"SamplingConfig(view='in_batch') needs 'in_batch' among the "
                             f"negatives, got {given!r}; for sampled negatives alone use the "
                             "listwise view")
        if self.view != "in_batch" and "in_batch" in given:
            raise ValueError(f"'in_batch' negatives need view='in_batch', got {what}")
        if self.view == "pairwise" and self.pairwise_mode == "not_exposed" and "hard" in given:
            raise ValueError("pairwise_mode='not_exposed' draws its negative from the ranked-"
                             "but-not-exposed items; negatives name only the fallback "
                             f"(uniform/popularity), got {given!r}")
        return given

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["negatives"] = list(self.negatives)
        d["hard_negative_window"] = list(self.hard_negative_window)
        return d
