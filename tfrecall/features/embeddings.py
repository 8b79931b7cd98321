"""Embeddings of string/integer ids: one id per value, or several joined by a separator.

Both layers take RAW values (the serving signature feeds strings), look them up with
`keras.layers.StringLookup` (vocabulary mode) or `keras.layers.Hashing` (hashing
mode) and embed them with `keras.layers.Embedding`.

Index layout of the embedding table in vocabulary mode (that of `StringLookup`):
rows ``0 .. num_oov_buckets - 1`` are the OOV buckets, row ``num_oov_buckets + i``
is ``vocabulary[i]``. An unknown value goes to OOV bucket
``tf.strings.to_hash_bucket_fast(value, num_oov_buckets)`` (always row 0 with one
bucket). The empty string ``""`` means "missing": it is never kept in a vocabulary,
so it lands in an OOV bucket like any unknown value. In hashing mode the table has
``hash_buckets`` rows and every value, ``""`` included, hashes into one of them.
"""

from __future__ import annotations

import collections
import math
from typing import Iterable, List, Mapping, Optional, Sequence

import numpy as np

from tfrecall._backend import keras, register, tf
from tfrecall.config import WHITESPACE_RE2
from tfrecall.ids import check_int

# StringLookup's OOV token must not be a real value, else a vocabulary entry equal to
# it is silently dropped and every later index shifts (checked: "[UNK]" in the
# vocabulary maps to OOV). "" is never a vocabulary entry here (it means missing).
_OOV_TOKEN = ""


def to_string_array(values, what: str) -> np.ndarray:
    """Raw id values as a flat object array of str, as the layers see them in `call`.

    Integers become their decimal form (what `tf.strings.as_string` gives), bytes are
    decoded as UTF-8, strings are stripped (as `strip_ids` strips them in `call`), None
    and float NaN (pandas' missing marker) become "".

    Args:
      values: an array-like of str, bytes or integers, any shape.
      what: the layer/feature name for error messages.

    Returns:
      (N,) object array of str.

    Raises:
      TypeError: floats or other non-id values.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.reshape(-1).astype(str).astype(object)
    if arr.dtype.kind == "U":
        return np.array([v.strip() for v in arr.reshape(-1).tolist()], dtype=object)
    if arr.dtype.kind == "S":
        return np.array([v.decode("utf-8").strip() for v in arr.reshape(-1)], dtype=object)
    if arr.dtype.kind != "O":
        raise TypeError(
            f"{what}: ids must be str or integer values, got an array of dtype {arr.dtype} "
            "(cast float ids to int or str first)"
        )
    out = []
    for v in arr.reshape(-1):
        if isinstance(v, str):
            out.append(v.strip())
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8").strip())
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("")
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(str(int(v)))
        else:
            raise TypeError(f"{what}: ids must be str or integer values, got {v!r}")
    return np.array(out, dtype=object)


def count_vocabulary(
    tokens: Iterable[str], min_count: int = 1, max_tokens: Optional[int] = None
) -> List[str]:
    """The vocabulary of `tokens`: most frequent first, ties broken by value.

    `StringLookup.adapt` has no minimum count and leaves the order of equally
    frequent tokens unspecified, so the vocabulary is counted here.

    Args:
      tokens: str values; "" (missing) is never counted.
      min_count: keep values seen at least this many times.
      max_tokens: keep at most this many of them (None: all).

    Returns:
      The kept values, by decreasing count, then increasing value.
    """
    return vocabulary_from_counts(
        collections.Counter(t for t in tokens if t != ""), min_count, max_tokens
    )


def vocabulary_from_counts(
    counts: Mapping[str, int], min_count: int = 1, max_tokens: Optional[int] = None
) -> List[str]:
    """The vocabulary of precomputed token counts, ordered as `count_vocabulary`'s.

    Args:
      counts: token -> count (e.g. from `tfrecall.io.stats.StreamingStats`); ""
        (missing) is never kept.
      min_count: keep tokens counted at least this many times.
      max_tokens: keep at most this many of them (None: all).

    Returns:
      The kept tokens, by decreasing count, then increasing value.
    """
    kept = sorted(
        ((c, t) for t, c in counts.items() if c >= min_count and t != ""),
        key=lambda ct: (-ct[0], ct[1]),
    )
    if max_tokens is not None:
        kept = kept[:max_tokens]
    return [t for _, t in kept]


def strip_ids(strings: tf.Tensor) -> tf.Tensor:
    """Strings with leading and trailing whitespace removed, as Python's `str.strip`.

    The CSV readers strip every id and category; the layers strip what they are fed,
    so `"  u1 "` at serving is the `"u1"` of training (`tfrecall.config.WHITESPACE_RE2`).
    """
    return tf.strings.regex_replace(strings, f"^{WHITESPACE_RE2}+|{WHITESPACE_RE2}+$", "")


def ids_to_strings(inputs, what: str) -> tf.Tensor:
    """A string tensor of ids: strings stripped (`strip_ids`), integers via `as_string`."""
    inputs = tf.convert_to_tensor(inputs)
    if inputs.dtype == tf.string:
        return strip_ids(inputs)
    if inputs.dtype.is_integer:
        return tf.strings.as_string(inputs)
    raise TypeError(
        f"{what}: ids must be a string or integer tensor, got dtype {inputs.dtype.name}"
    )


class _LookupEmbedding(keras.layers.Layer):
    """Shared state of the two id embeddings: a lookup (vocabulary or hash) + a table.

    The table size depends on the vocabulary, so the sublayers are created once the
    vocabulary is known: in `__init__` when it is given (or in hashing mode), else in
    `adapt`. `get_config` holds the vocabulary, so `from_config` rebuilds them.
    """

    def __init__(
        self,
        embedding_dim: int,
        vocabulary: Optional[Sequence[str]] = None,
        num_oov_buckets: int = 1,
        hash_buckets: Optional[int] = None,
        max_tokens: Optional[int] = None,
        min_count: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} {self.name!r}"
        check_int(f"{owner}: embedding_dim", embedding_dim, 1, False)
        check_int(f"{owner}: num_oov_buckets", num_oov_buckets, 1, False)
        check_int(f"{owner}: hash_buckets", hash_buckets, 1, True)
        check_int(f"{owner}: max_tokens", max_tokens, 1, True)
        check_int(f"{owner}: min_count", min_count, 1, False)
        if hash_buckets is not None and vocabulary is not None:
            raise ValueError(f"{owner}: give either vocabulary or hash_buckets, not both")
        self.embedding_dim = int(embedding_dim)
        self.num_oov_buckets = int(num_oov_buckets)
        self.hash_buckets = None if hash_buckets is None else int(hash_buckets)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.min_count = int(min_count)
        self._vocabulary: Optional[List[str]] = None
        self._lookup = None
        self._embedding = None
        if self.hash_buckets is not None:
            self._lookup = keras.layers.Hashing(self.hash_buckets, name="hashing")
            self._make_embedding(self.hash_buckets)
        elif vocabulary is not None:
            self._set_vocabulary(list(vocabulary))

    @property
    def _owner(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _make_embedding(self, rows: int) -> None:
        self._embedding = keras.layers.Embedding(
            rows, self.embedding_dim, dtype=self.dtype_policy, name="embedding"
        )

    def _set_vocabulary(self, vocabulary: List[str]) -> None:
        vocabulary = [str(v) for v in vocabulary]
        if not vocabulary:
            # StringLookup refuses an empty vocabulary; a table of OOV rows only would
            # give every value the same vector, which is never what a user wants.
            raise ValueError(
                f"{self._owner}: the vocabulary is empty (after adapt: no value seen >= "
                f"min_count={self.min_count} times; lower min_count or check the column)"
            )
        if "" in vocabulary:
            raise ValueError(f'{self._owner}: the vocabulary holds "", which means missing')
        dupes = sorted(t for t, c in collections.Counter(vocabulary).items() if c > 1)
        if dupes:
            raise ValueError(f"{self._owner}: the vocabulary repeats {dupes[:10]}")
        # Never a Python list attribute: Keras tracks list attributes element by element,
        # and tf.saved_model.save then walks every entry (minutes at 100k ids). So a numpy
        # array here, and the lookup gets its table through set_vocabulary (a constructor
        # `vocabulary=` list would be kept as a tracked attribute of the StringLookup).
        self._vocabulary = np.asarray(vocabulary, dtype=object)
        self._lookup = keras.layers.StringLookup(
            num_oov_indices=self.num_oov_buckets,
            oov_token=_OOV_TOKEN,
            name="lookup",
        )
        self._lookup.set_vocabulary(vocabulary)
        self._make_embedding(self.num_oov_buckets + len(vocabulary))

    def _adapt_tokens(self, tokens: Iterable[str]) -> None:
        if self.hash_buckets is not None:
            return  # Hashing needs no state.
        if self.built:
            raise ValueError(
                f"{self._owner}: adapt() after the layer was built would change the size of "
                "its embedding table; adapt before the first call"
            )
        self._set_vocabulary(count_vocabulary(tokens, self.min_count, self.max_tokens))

    def adapt_from_counts(self, counts: Mapping[str, int]) -> None:
        """Learns the vocabulary from precomputed token counts (no-op in hashing mode).

        The streaming counterpart of `adapt`: `counts` (token -> count, e.g.
        `StreamingStats.token_counts`) gives the same vocabulary `adapt` would give on
        the values counted; `min_count` and `max_tokens` apply as in `adapt`.
        """
        if self.hash_buckets is not None:
            return
        if self.built:
            raise ValueError(
                f"{self._owner}: adapt_from_counts() after the layer was built would change "
                "the size of its embedding table; adapt before the first call"
            )
        counts = {str(t): int(c) for t, c in counts.items()}
        self._set_vocabulary(vocabulary_from_counts(counts, self.min_count, self.max_tokens))

    @property
    def vocabulary(self) -> Optional[List[str]]:
        """The kept values in index order (row `num_oov_buckets + i`); None if hashing/unadapted."""
        return None if self._vocabulary is None else list(self._vocabulary)

    @property
    def vocabulary_size(self) -> Optional[int]:
        """Rows of the embedding table: OOV buckets + vocabulary, or `hash_buckets`."""
        if self.hash_buckets is not None:
            return self.hash_buckets
        if self._vocabulary is None:
            return None
        return self.num_oov_buckets + len(self._vocabulary)

    @property
    def embeddings(self) -> tf.Variable:
        """The (vocabulary_size, embedding_dim) table (after build)."""
        return self._embedding.embeddings

    def build(self, input_shape):
        if self._lookup is None:
            raise ValueError(
                f"{self._owner} has no vocabulary: call adapt(values) or pass vocabulary= "
                "(or hash_buckets=) before using the layer"
            )
        # Built here (not lazily on first lookup) so get_weights() is complete once built.
        self._embedding.build((None,))
        super().build(input_shape)

    def _embed(self, strings: tf.Tensor) -> tf.Tensor:
        return self._embedding(self._lookup(strings))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "vocabulary": self.vocabulary,
                "num_oov_buckets": self.num_oov_buckets,
                "hash_buckets": self.hash_buckets,
                "max_tokens": self.max_tokens,
                "min_count": self.min_count,
            }
        )
        return config


def pool_tokens(strings: tf.Tensor, separator: str, embed, embedding_dim: int) -> tf.Tensor:
    """Mean of `embed(token)` over the `separator`-joined tokens of each string.

    Empty tokens ("" or the gaps in "a||b") are dropped; a value with no token gives
    all zeros (no division by zero, no NaN). Keras has no pooled string embedding, and
    padding the split tokens to a dense (N, max_tokens) matrix for a masked `Embedding`
    wastes work on long values, so the mean is a segment sum over the ragged tokens
    divided by max(count, 1).

    Args:
      strings: string tensor of any shape S.
      separator: the delimiter between tokens.
      embed: maps a `(T,)` string tensor of tokens to `(T, embedding_dim)` vectors.
      embedding_dim: the width of `embed`'s vectors.

    Returns:
      S + (embedding_dim,) float tensor.
    """
    flat = tf.reshape(strings, [-1])
    tokens = tf.strings.split(flat, sep=separator)  # (N, None) ragged
    tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))
    vectors = embed(tokens.flat_values)  # (T, dim)
    num_values = tf.shape(flat)[0]
    sums = tf.math.unsorted_segment_sum(vectors, tokens.value_rowids(), num_values)
    counts = tf.cast(tokens.row_lengths(), vectors.dtype)[:, tf.newaxis]
    means = sums / tf.maximum(counts, tf.ones_like(counts))  # (N, dim); empty -> 0 / 1
    out = tf.reshape(means, tf.concat([tf.shape(strings), [embedding_dim]], axis=0))
    out.set_shape(strings.shape.concatenate([embedding_dim]))
    return out


@register
class CategoricalEmbedding(_LookupEmbedding):
    """Embeds one id per value (kinds `id` and `categorical`).

    See the module docstring for the index layout; "" (missing) maps to an OOV bucket.

    Args:
      embedding_dim: output width.
      vocabulary: the known values in index order (None: learn with `adapt`).
      num_oov_buckets: rows for unknown values; with more than one, unknown values
        are hashed among them.
      hash_buckets: if set, hash every value into this many rows, no vocabulary.
      max_tokens: `adapt` keeps at most this many most frequent values.
      min_count: `adapt` keeps values seen at least this many times.
      **kwargs: `keras.layers.Layer` arguments (name, dtype, trainable).

    Call arguments:
      inputs: ids of any shape S, string or integer dtype (integers are compared by
        their decimal string form, so `adapt` on ints and on their strings agree).

    Returns:
      S + (embedding_dim,) float tensor.

    Example:
      >>> layer = CategoricalEmbedding(4)
      >>> layer.adapt(np.array(["a", "b", "a"], dtype=object))
      >>> layer(tf.constant(["a", "zzz"])).shape
      TensorShape([2, 4])
    """

    def adapt(self, values) -> None:
        """Learns the vocabulary from raw values (any shape; no-op in hashing mode)."""
        self._adapt_tokens(to_string_array(values, self._owner))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self._embed(ids_to_strings(inputs, self._owner))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.embedding_dim])


@register
class MultiCategoricalEmbedding(_LookupEmbedding):
    """Mean of the embeddings of several categories held in one string ("Action|Comedy").

    Each value is split on `separator` inside the layer (serving feeds raw strings);
    every token is looked up (unknown -> OOV row) and the value's vector is the mean
    over its tokens (`pool_tokens`: empty tokens dropped, no token -> zeros).

    Args:
      embedding_dim: output width.
      vocabulary: the known tokens in index order (None: learn with `adapt`).
      separator: the delimiter between categories in one value.
      num_oov_buckets, hash_buckets, max_tokens, min_count: as in
        `CategoricalEmbedding`, counted over individual tokens.
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
      inputs: strings of any shape S.

    Returns:
      S + (embedding_dim,) float tensor.
    """

    def __init__(
        self,
        embedding_dim: int,
        vocabulary: Optional[Sequence[str]] = None,
        separator: str = "|",
        num_oov_buckets: int = 1,
        hash_buckets: Optional[int] = None,
        max_tokens: Optional[int] = None,
        min_count: int = 1,
        **kwargs,
    ):
        if not isinstance(separator, str) or not separator:
            raise ValueError(
                "MultiCategoricalEmbedding: separator must be a non-empty string, "
                f"got {separator!r}"
            )
        if vocabulary is not None:
            bad = [v for v in vocabulary if separator in str(v)]
            if bad:
                raise ValueError(
                    f"MultiCategoricalEmbedding: vocabulary entries {bad[:10]} contain the "
                    f"separator {separator!r} and could never be looked up"
                )
        super().__init__(
            embedding_dim,
            vocabulary=vocabulary,
            num_oov_buckets=num_oov_buckets,
            hash_buckets=hash_buckets,
            max_tokens=max_tokens,
            min_count=min_count,
            **kwargs,
        )
        self.separator = separator

    def adapt(self, values) -> None:
        """Learns the vocabulary of individual tokens from raw joined strings."""
        strings = to_string_array(values, self._owner)
        self._adapt_tokens(t for v in strings for t in v.split(self.separator))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        strings = ids_to_strings(inputs, self._owner)
        return pool_tokens(strings, self.separator, self._embed, self.embedding_dim)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.embedding_dim])

    def get_config(self) -> dict:
        config = super().get_config()
        config["separator"] = self.separator
        return config


__all__ = [
    "CategoricalEmbedding",
    "MultiCategoricalEmbedding",
    "count_vocabulary",
    "ids_to_strings",
    "pool_tokens",
    "strip_ids",
    "to_string_array",
    "vocabulary_from_counts",
]
