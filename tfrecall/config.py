"""Configuration dataclasses: feature specs, towers, training; JSON round trip.

Everything a run needs is a frozen dataclass, so a pipeline turns flags into one
config object and hands it to a pure library call (`tfrecall.recipe.run`). Configs
serialize to plain JSON (`to_dict` / `from_dict`) and are written beside every
trained model, so the model can be rebuilt without the flags that made it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Tuple

FEATURE_KINDS = ("id", "categorical", "multi_categorical", "continuous", "bucketized", "history",
                 "text")
"""The feature kinds a spec may name.

- ``id``: a high-cardinality identifier (user_id, item_id); vocabulary + OOV buckets,
  or hashing when ``hash_buckets`` is set.
- ``categorical``: a low-cardinality string (gender, category, brand).
- ``multi_categorical``: several categories in one string separated by
  ``separator`` (``"Action|Comedy"``), embedded and mean-pooled.
- ``continuous``: a number, standardized with mean/variance from data (optionally
  ``log1p`` first); NaN becomes a learned default plus a missing indicator.
- ``bucketized``: a number cut at quantile boundaries learned from data and embedded.
- ``history`` (user side only): the user's recent items, one ``separator``-joined string,
  embedded through the ITEM tower's own id table (shared variables) and mean-pooled
  (`tfrecall.features.history`); its width is the item id embedding's.
- ``text``: free text (a title, tags, a description): letter trigrams (DSSM word hashing)
  and word n-grams, hashed and mean-pooled inside the model (`tfrecall.features.text`),
  so serving takes the raw text and a new item gets a vector from its words.
"""

STRING_KINDS = ("id", "categorical", "multi_categorical", "history", "text")
"""Kinds whose raw values are strings ("" = missing); the others are numbers (NaN)."""
NUMERIC_KINDS = tuple(k for k in FEATURE_KINDS if k not in STRING_KINDS)
# Python's str.strip() whitespace (every c with c.isspace()) as an RE2 class: the CSV
# readers strip fields with str.strip(), and the graph (tf_csv, the id layers at
# training and serving) strips with this, so an id is the same string on every path.
# RE2's \s is ASCII only.
WHITESPACE_RE2 = (r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}"
                  r"\x{2029}\x{202f}\x{205f}\x{3000}]")


def option(default=dataclasses.MISSING, help: str = "", *, choices: Optional[Sequence] = None,
           flag: Optional[str] = None, type: Optional[type] = None,
           item: Optional[type] = None) -> Any:
    """A config field that carries its own documentation: one source for the library's
    checks, `pipelines.train`'s flags (`pipelines._flags`) and their help.

    Args:
      default: the field's default (a tuple for list-valued fields).
      help: the flag's help; a field without help is not a flag.
      choices: the allowed values (checked by `check_choices`, listed by the flag).
      flag: the flag's name when it differs from the field's.
      type: the value type where the default (None) does not say it.
      item: the element type of a tuple-valued field.
    """
    metadata = {"help": help, "choices": None if choices is None else tuple(choices),
                "flag": flag, "type": type, "item": item}
    return dataclasses.field(default=default, metadata=metadata)


def check_choices(config, prefix: str = "") -> None:
    """ValueError ``"{prefix}{name} must be one of (...), got 'x'"`` for the first field of
    the dataclass ``config`` whose value is not among its `option` choices."""
    for field in dataclasses.fields(config):
        allowed = field.metadata.get("choices")
        value = getattr(config, field.name)
        if allowed is not None and value not in allowed:
            raise ValueError(f"{prefix}{field.name} must be one of {allowed}, got {value!r}")

_DEFAULT_DIMS = {"id": 32, "categorical": 8, "multi_categorical": 8, "bucketized": 8,
                 "history": 32, "text": 32}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """How one raw column becomes a vector inside a tower.

    Args:
      name: the column name (also the serving signature's input name).
      kind: one of `FEATURE_KINDS`.
      embedding_dim: output width for embedded kinds; default by kind
        (id 32, categorical/multi_categorical/bucketized 8).
      max_tokens: keep at most this many most frequent values in the vocabulary
        (None: all values seen at least `min_count` times).
      min_count: values seen fewer times map to the OOV buckets.
      num_oov_buckets: out-of-vocabulary buckets (unknown values hash into them).
      hash_buckets: if set, hash values into this many buckets instead of keeping a
        vocabulary (for unbounded id spaces).
      num_buckets: quantile buckets for `bucketized`.
      log1p: for `continuous`/`bucketized`, apply sign(x) * log1p(|x|) first
        (heavy-tailed values such as price or counts).
      separator: the delimiter of `multi_categorical` values.
      ngram_orders: for `text`, the word n-gram orders hashed beside the letter trigrams
        (``hash_buckets`` rows each for trigrams and n-grams; default 32768).

    Raises:
      ValueError: an unknown kind or an out-of-range number, naming the feature.
    """

    name: str
    kind: str
    embedding_dim: Optional[int] = None
    max_tokens: Optional[int] = None
    min_count: int = 1
    num_oov_buckets: int = 1
    hash_buckets: Optional[int] = None
    num_buckets: int = 10
    log1p: bool = False
    separator: str = "|"
    ngram_orders: Tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"FeatureSpec.name must be a non-empty string, got {self.name!r}")
        if self.kind not in FEATURE_KINDS:
            raise ValueError(
                f"feature {self.name!r}: kind must be one of {FEATURE_KINDS}, got {self.kind!r}"
            )
        for field, minimum in (
            ("embedding_dim", 1),
            ("max_tokens", 1),
            ("hash_buckets", 1),
        ):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < minimum):
                raise ValueError(
                    f"feature {self.name!r}: {field} must be an integer >= {minimum}, got {value!r}"
                )
        if not isinstance(self.min_count, int) or self.min_count < 1:
            raise ValueError(
                f"feature {self.name!r}: min_count must be >= 1, got {self.min_count!r}"
            )
        if not isinstance(self.num_oov_buckets, int) or self.num_oov_buckets < 1:
            raise ValueError(
                f"feature {self.name!r}: num_oov_buckets must be >= 1, got {self.num_oov_buckets!r}"
            )
        if not isinstance(self.num_buckets, int) or self.num_buckets < 2:
            raise ValueError(
                f"feature {self.name!r}: num_buckets must be >= 2, got {self.num_buckets!r}"
            )
        if not self.separator:
            raise ValueError(f"feature {self.name!r}: separator must be a non-empty string")
        orders = tuple(self.ngram_orders)
        if not orders or any(not isinstance(n, int) or n < 1 for n in orders):
            raise ValueError(f"feature {self.name!r}: ngram_orders must be integers >= 1, got "
                             f"{self.ngram_orders!r}")
        object.__setattr__(self, "ngram_orders", orders)

    @property
    def dim(self) -> int:
        """The embedding width this spec produces (continuous: 2, value + missing flag)."""
        if self.kind == "continuous":
            return 2
        return self.embedding_dim or _DEFAULT_DIMS[self.kind]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ngram_orders"] = list(self.ngram_orders)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        return cls(**_checked_fields(cls, d, f"feature {d.get('name')!r}"))


@dataclasses.dataclass(frozen=True)
class TowerConfig:
    """A tower: feature encoder -> MLP -> linear projection -> (L2 normalization).

    Args:
      hidden_units: widths of the hidden Dense layers (may be empty).
      output_dim: the embedding width D shared by both towers.
      activation: Keras activation name of the hidden layers.
      dropout: dropout rate after each hidden layer (0 disables).
      normalize: L2-normalize the output (required for cosine similarity).
    """

    hidden_units: Sequence[int] = option(
        (128,), "Hidden layer widths of both towers (comma-separated; empty for none).",
        item=int)
    output_dim: int = option(64, "Output embedding width of the towers.", flag="embedding_dim")
    activation: str = "relu"
    dropout: float = option(0.0, "Dropout after each hidden layer.")
    normalize: bool = True

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))
        if any(u < 1 for u in self.hidden_units):
            raise ValueError(f"hidden_units must be positive, got {self.hidden_units}")
        if self.output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {self.output_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TowerConfig":
        return cls(**_checked_fields(cls, d, "tower config"))


def _checked_fields(cls, d: Mapping[str, Any], what: str) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {unknown}; known fields are {sorted(names)}")
    return dict(d)
