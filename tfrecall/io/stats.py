"""Streaming statistics of feature columns: what the feature layers learn in `adapt`.

One pass over data too large for memory, batch by batch, with memory bounded by two
settings and not by the number of rows:

- String columns (kinds ``id``, ``categorical``; ``multi_categorical`` counted per
  token): token counts, hence the vocabulary (most frequent first, ties by value,
  ``min_count``, ``max_tokens``, as `features.embeddings.count_vocabulary`). Counts
  are EXACT while the column has at most ``capacity`` distinct tokens. Beyond that
  the table is a Misra-Gries summary (Misra & Gries, "Finding repeated elements",
  1982; mergeable form: Agarwal et al., "Mergeable summaries", PODS 2012, sec. 2):
  whenever it holds more than ``capacity`` tokens, the (capacity+1)-th largest count
  ``d`` is subtracted from every count and tokens at 0 are dropped. Each reduction
  removes at least ``(capacity + 1) * d`` from the total, so the summed decrement
  ``error`` is at most ``N / (capacity + 1)`` for N tokens seen, and for every token
  ``count - error <= estimate <= count``; a token absent from the summary was seen
  at most ``error`` times. `TokenCounts.error` reports the bound actually reached
  (0 = exact).
- Numeric columns (``continuous``, ``bucketized``): the count, mean and population
  variance of the finite values, both raw and after ``sign(x) * log1p(|x|)``, merged
  batch by batch with Chan, Golub & LeVeque's parallel update (1979):
  ``M2 = M2_a + M2_b + delta^2 * n_a * n_b / n``, ``delta = mean_b - mean_a``; and a
  uniform random sample of at most ``sample_size`` finite values (bottom-k: each value
  gets a random priority and the k smallest priorities are kept, which is mergeable)
  for quantiles. The sample is the whole column while it has at most ``sample_size``
  values, so quantiles are exact (the same `np.quantile` as `adapt`); beyond that the
  Dvoretzky-Kiefer-Wolfowitz inequality (Massart's constant, 1990) bounds the error in
  rank: every returned quantile's rank is within
  ``eps = sqrt(ln(2 / p) / (2 * sample_size))`` of the requested level except with
  probability ``p`` (``sample_size = 100_000``: eps = 0.0082 at p = 1e-6).
  `QuantileSample.rank_error(p)` returns eps (0 while exact).

NaN and ±inf are counted as missing and left out of the moments and the sample (the
layers treat them as missing too); "" is a missing string and is never counted as a
token. Stats of two shards merge (`StreamingStats.merge`) into what one pass over both
would give: exactly for counts (while exact) and moments (up to float rounding), and
in distribution for the sample (give each shard its own ``seed``).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from tfrecall.config import NUMERIC_KINDS
from tfrecall.ids import check_int

DEFAULT_CAPACITY = 1_000_000
DEFAULT_SAMPLE_SIZE = 100_000


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    # The same transform as features.continuous.signed_log1p (data must not import
    # features, which sits beside it in the layering).
    return np.sign(x) * np.log1p(np.abs(x))


def _check_int(owner: str, name: str, value, minimum: int) -> int:
    check_int(f"{owner}: {name}", value, minimum)
    return int(value)


class TokenCounts:
    """Token counts of one string column: exact up to `capacity` tokens, then Misra-Gries.

    Args:
      capacity: the most distinct tokens held (see the module docstring for the error).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = _check_int("TokenCounts", "capacity", capacity, 1)
        self._counts: Dict[str, int] = {}
        self.total = 0
        """Tokens seen (missing values excluded)."""
        self.missing = 0
        """Values that were "" (missing)."""
        self.error = 0
        """The most any token's count is underestimated by (0: every count is exact)."""

    @property
    def exact(self) -> bool:
        return self.error == 0

    def add(self, counts: Mapping[str, int], missing: int = 0) -> None:
        """Adds the counts of a batch (token -> count; "" is counted as missing)."""
        table = self._counts
        for token, count in counts.items():
            if token == "":
                missing += count
                continue
            table[token] = table.get(token, 0) + count
            self.total += count
        self.missing += missing
        if len(table) > self.capacity:
            self._reduce()

    def _reduce(self) -> None:
        tokens = list(self._counts)
        counts = np.fromiter(self._counts.values(), dtype=np.int64, count=len(tokens))
        # The (capacity + 1)-th largest count: at least capacity + 1 counters lose it.
        decrement = int(np.partition(counts, len(counts) - self.capacity - 1)[
            len(counts) - self.capacity - 1])
        keep = counts > decrement
        self._counts = {
            t: c - decrement for t, c, k in zip(tokens, counts.tolist(), keep.tolist(), strict=True)
            if k
        }
        self.error += decrement

    def merge(self, other: "TokenCounts") -> None:
        """Adds another column's counts (Agarwal et al. 2012: the errors add, then reduce)."""
        self.error += other.error
        self.add(other._counts, other.missing)

    def counts(self) -> Dict[str, int]:
        """token -> estimated count (see `error`)."""
        return dict(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


@dataclasses.dataclass(frozen=True)
class Moments:
    """Summary of a numeric column's finite values.

    Attributes:
      count: finite values seen.
      mean: their mean (NaN when count is 0).
      variance: their population variance, ddof=0 as `ContinuousFeature.adapt` (NaN
        when count is 0).
      missing: NaN or ±inf values seen.
      minimum, maximum: extremes of the finite values (NaN when count is 0).
    """

    count: int
    mean: float
    variance: float
    missing: int
    minimum: float
    maximum: float


class _Welford:
    """Count, mean and sum of squared deviations (M2), merged by Chan et al. (1979)."""

    def __init__(self):
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, values: np.ndarray) -> None:
        if values.size:
            mean = float(values.mean())
            m2 = float(np.square(values - mean).sum())  # two-pass within a batch
            self._merge(values.size, mean, m2, float(values.min()), float(values.max()))

    def merge(self, other: "_Welford") -> None:
        if other.count:
            self._merge(other.count, other.mean, other.m2, other.minimum, other.maximum)

    def _merge(self, n_b: int, mean_b: float, m2_b: float, lo: float, hi: float) -> None:
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.count = n
        self.minimum = min(self.minimum, lo)
        self.maximum = max(self.maximum, hi)

    def moments(self, missing: int) -> Moments:
        if not self.count:
            return Moments(0, math.nan, math.nan, missing, math.nan, math.nan)
        return Moments(self.count, self.mean, max(self.m2 / self.count, 0.0), missing,
                       self.minimum, self.maximum)


class QuantileSample:
    """A uniform random sample of at most `size` values (bottom-k), for quantiles.

    Args:
      size: the most values kept.
      seed: seeds the priorities; give each shard of a sharded pass its own seed.
    """

    def __init__(self, size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0):
        self.size = _check_int("QuantileSample", "size", size, 1)
        self._rng = np.random.default_rng(seed)
        self._values = np.empty(0, np.float64)
        self._priorities = np.empty(0, np.float64)
        self.count = 0
        """Values offered (the population the sample represents)."""

    @property
    def exact(self) -> bool:
        """True while the sample holds every value offered."""
        return self.count <= self.size

    @property
    def values(self) -> np.ndarray:
        """``(min(count, size),) float64`` the sampled values, in no particular order."""
        return self._values.copy()

    def add(self, values: np.ndarray) -> None:
        """Offers ``(n,) float64`` finite values."""
        self.count += values.size
        self._keep(np.concatenate([self._values, values]),
                   np.concatenate([self._priorities, self._rng.random(values.size)]))

    def merge(self, other: "QuantileSample") -> None:
        """The union's bottom-k: a uniform sample of both populations together."""
        self.count += other.count
        self._keep(np.concatenate([self._values, other._values]),
                   np.concatenate([self._priorities, other._priorities]))

    def _keep(self, values: np.ndarray, priorities: np.ndarray) -> None:
        if values.size > self.size:
            keep = np.argpartition(priorities, self.size - 1)[: self.size]
            values, priorities = values[keep], priorities[keep]
        self._values, self._priorities = values, priorities

    def quantiles(self, levels: Sequence[float], log1p: bool = False) -> np.ndarray:
        """``np.quantile`` of the sample at `levels` (after sign(x)·log1p|x| if `log1p`)."""
        if not self._values.size:
            raise ValueError("QuantileSample.quantiles: no finite value was seen")
        values = _signed_log1p(self._values) if log1p else self._values
        return np.quantile(values, np.asarray(levels, np.float64))

    def rank_error(self, failure_probability: float = 1e-6) -> float:
        """DKW bound on the rank error of `quantiles` (module docstring); 0 while exact."""
        if self.exact:
            return 0.0
        return math.sqrt(math.log(2.0 / failure_probability) / (2.0 * self.size))


class _NumericColumn:
    def __init__(self, sample_size: int, seed: int):
        self.raw = _Welford()
        self.log = _Welford()
        self.sample = QuantileSample(sample_size, seed)
        self.missing = 0

    def add(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        self.missing += int(values.size - finite.sum())
        values = values[finite]
        self.raw.add(values)
        self.log.add(_signed_log1p(values))
        self.sample.add(values)

    def merge(self, other: "_NumericColumn") -> None:
        self.raw.merge(other.raw)
        self.log.merge(other.log)
        self.sample.merge(other.sample)
        self.missing += other.missing


def _as_array(values) -> np.ndarray:
    return np.asarray(values.numpy() if hasattr(values, "numpy") else values)  # tf.Tensor


def _leading(arr: np.ndarray) -> int:
    return int(arr.shape[0]) if arr.ndim else 1


def _count(flat: list, separator: Optional[str], name: str) -> collections.Counter:
    """Token counts of a batch's values (str, or UTF-8 bytes as tf.data hands them)."""
    counts: collections.Counter = collections.Counter()
    # Counted first (C speed), then each distinct value is checked and decoded once.
    for value, count in collections.Counter(flat).items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"StreamingStats: column {name!r} holds {value[:40]!r}, "
                                 "which is not UTF-8 text") from None
        elif not isinstance(value, str):
            raise TypeError(f"StreamingStats: column {name!r} holds {value!r}; expected str")
        counts[value] += count
    if separator is None:
        return counts
    tokens: collections.Counter = collections.Counter()
    for value, count in counts.items():
        for token in value.split(separator):
            tokens[token] += count  # "" (gaps, empty values) is counted as missing
    return tokens


class StreamingStats:
    """Token counts, moments and a quantile sample per column, from dict batches.

    Args:
      strings: string columns whose values are tokens (ids, categories).
      numbers: numeric columns.
      multi: string columns holding several tokens joined by a separator
        (column -> separator, e.g. ``{"genres": "|"}``); counted per token.
      capacity: distinct tokens kept exactly per string column (module docstring).
      sample_size: values kept per numeric column for quantiles.
      seed: seeds the quantile samples.

    Raises:
      ValueError: no column, a column named twice, or a bad setting.

    Example:
      >>> stats = StreamingStats(strings=["user_id", "item_id"], numbers=["price"])
      >>> for batch in batches:          # {"user_id": (B,) str, ..., "price": (B,) float}
      ...     stats.update(batch)
      >>> stats.vocabulary("item_id", min_count=5)
      >>> stats.moments("price").mean
    """

    def __init__(
        self,
        strings: Sequence[str] = (),
        numbers: Sequence[str] = (),
        multi: Optional[Mapping[str, str]] = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        seed: int = 0,
    ):
        multi = dict(multi or {})
        names = list(strings) + list(multi) + list(numbers)
        if not names:
            raise ValueError("StreamingStats: give at least one column (strings, multi or numbers)")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"StreamingStats: column(s) {repeated} named more than once")
        for name, separator in multi.items():
            if not isinstance(separator, str) or not separator:
                raise ValueError(f"StreamingStats: multi[{name!r}] must be a non-empty "
                                 f"separator, got {separator!r}")
        self.capacity = _check_int("StreamingStats", "capacity", capacity, 1)
        self.sample_size = _check_int("StreamingStats", "sample_size", sample_size, 1)
        self.seed = int(seed)
        self._separators: Dict[str, Optional[str]] = {n: None for n in strings}
        self._separators.update(multi)
        self._tokens = {n: TokenCounts(self.capacity) for n in self._separators}
        self._numbers = {
            n: _NumericColumn(self.sample_size, [self.seed, i]) for i, n in enumerate(numbers)
        }
        self.rows = 0
        """Rows seen (the leading dimension of each batch)."""

    @classmethod
    def from_specs(cls, specs: Sequence, **kwargs) -> "StreamingStats":
        """The stats a `FeatureEncoder` of these `FeatureSpec`s needs (kwargs as `__init__`)."""
        strings = [s.name for s in specs if s.kind in ("id", "categorical")]
        multi = {s.name: s.separator for s in specs if s.kind == "multi_categorical"}
        numbers = [s.name for s in specs if s.kind in NUMERIC_KINDS]
        return cls(strings, numbers, multi, **kwargs)

    @property
    def columns(self) -> List[str]:
        """Every column, string columns first."""
        return list(self._tokens) + list(self._numbers)

    @property
    def string_columns(self) -> List[str]:
        """Columns counted as tokens (plain and multi-valued)."""
        return list(self._tokens)

    def update(self, batch: Mapping[str, object]) -> None:
        """Adds a batch: column -> values of any shape (numpy, lists or tf.Tensors).

        Raises:
          ValueError: a column of the stats is missing from the batch.
          TypeError: numbers in a string column or strings in a numeric column.
        """
        missing = [n for n in self.columns if n not in batch]
        if missing:
            raise ValueError(f"StreamingStats.update: column(s) {missing} missing from the "
                             f"batch, which has {sorted(batch)}")
        rows = None
        for name, separator in self._separators.items():
            arr = _as_array(batch[name])
            if arr.dtype.kind not in "OUS":
                raise TypeError(f"StreamingStats: column {name!r} is a string column but the "
                                f"batch holds dtype {arr.dtype}")
            rows = _leading(arr) if rows is None else rows
            self._tokens[name].add(_count(arr.reshape(-1).tolist(), separator, name))
        for name, column in self._numbers.items():
            arr = _as_array(batch[name])
            if arr.dtype.kind not in "iufb":
                raise TypeError(f"StreamingStats: column {name!r} is numeric but the batch "
                                f"holds dtype {arr.dtype}")
            rows = _leading(arr) if rows is None else rows
            column.add(arr.astype(np.float64).reshape(-1))
        self.rows += rows or 0

    def merge(self, other: "StreamingStats") -> "StreamingStats":
        """Adds another shard's stats (same columns); returns self."""
        if self._separators != other._separators or list(self._numbers) != list(other._numbers):
            raise ValueError("StreamingStats.merge: the two stats have different columns: "
                             f"{self.columns} vs {other.columns}")
        for name, counts in self._tokens.items():
            counts.merge(other._tokens[name])
        for name, column in self._numbers.items():
            column.merge(other._numbers[name])
        self.rows += other.rows
        return self

    # ---------------------------------------------------------------- results

    def token_stats(self, name: str) -> TokenCounts:
        """The `TokenCounts` of a string column (counts, total, missing, error)."""
        if name not in self._tokens:
            raise ValueError(f"StreamingStats: {name!r} is not a string column; string "
                             f"columns are {list(self._tokens)}")
        return self._tokens[name]

    def token_counts(self, name: str, separator: Optional[str] = None) -> Dict[str, int]:
        """token -> count of a string column.

        Args:
          name: the column.
          separator: the separator the caller expects the column to be split on (None
            for a single-token column); checked against how it was counted.

        Raises:
          ValueError: not a string column, or counted with another separator.
        """
        counts = self.token_stats(name)
        if self._separators[name] != separator:
            raise ValueError(
                f"StreamingStats: column {name!r} was counted with separator "
                f"{self._separators[name]!r}, but {separator!r} was asked for")
        return counts.counts()

    def vocabulary(
        self, name: str, min_count: int = 1, max_tokens: Optional[int] = None
    ) -> List[str]:
        """Tokens counted at least `min_count` times, most frequent first, ties by value."""
        counts = self.token_stats(name).counts()
        kept = sorted(((c, t) for t, c in counts.items() if c >= min_count),
                      key=lambda ct: (-ct[0], ct[1]))
        return [t for _, t in kept[:max_tokens]]

    def _numeric(self, name: str) -> _NumericColumn:
        if name not in self._numbers:
            raise ValueError(f"StreamingStats: {name!r} is not a numeric column; numeric "
                             f"columns are {list(self._numbers)}")
        return self._numbers[name]

    def moments(self, name: str, log1p: bool = False) -> Moments:
        """`Moments` of a numeric column's finite values (of sign(x)·log1p|x| if `log1p`)."""
        column = self._numeric(name)
        return (column.log if log1p else column.raw).moments(column.missing)

    def quantile_sample(self, name: str) -> QuantileSample:
        return self._numeric(name).sample

    def quantiles(self, name: str, levels: Sequence[float], log1p: bool = False) -> np.ndarray:
        """Quantiles of a numeric column at `levels` (exact while the sample holds all).

        Raises:
          ValueError: not a numeric column, or no finite value seen.
        """
        sample = self._numeric(name).sample
        if not sample.count:
            raise ValueError(f"StreamingStats: column {name!r} has no finite value")
        return sample.quantiles(levels, log1p)



__all__ = ["DEFAULT_CAPACITY", "DEFAULT_SAMPLE_SIZE", "Moments", "QuantileSample",
           "StreamingStats", "TokenCounts"]
