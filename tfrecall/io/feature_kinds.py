"""Feature-kind inference for user/item tables, and the feature config JSON.

`infer_feature_specs` turns a table from `tfrecall.io.readers` into one
`FeatureSpec` per column with a deliberately simple rule, so a user can predict it:

- the key column (``user_id`` / ``item_id``) -> ``id``;
- a numeric column (float32 from the reader, or any int/bool array) -> ``continuous``,
  whatever its number of distinct values (a 0/1 flag or a rating is still a number;
  a code that only looks numeric, such as a zip code, is overridden in the config);
- a str column with ``|`` in any value -> ``multi_categorical`` (separator ``|``);
- a str column of free text -> ``text``: most non-empty values hold a space and most
  are distinct (titles, descriptions; `TEXT_MIN_SPACED` and `TEXT_MIN_DISTINCT`);
- any other str column -> ``categorical``.

The feature config (``--feature_config=features.json``) overrides the rule per column:

    {"users": {"age": {"kind": "bucketized", "num_buckets": 8},
               "zip": {"kind": "drop"}},
     "items": {"brand": {"kind": "categorical", "embedding_dim": 16},
               "title": null}}

Each entry holds `FeatureSpec` fields (not ``name``); ``{"kind": "drop"}`` or ``null``
removes the column. A numeric column given a str kind (id, categorical,
multi_categorical) is read as str by `readers.load_data`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from tfrecall.config import FEATURE_KINDS, NUMERIC_KINDS, FeatureSpec
from tfrecall.io.errors import DataError, PathLike
from tfrecall.io.schema import Table

DROP = "drop"
CONFIG_SECTIONS = ("users", "items")
MULTI_VALUE_SEPARATOR = "|"

_OVERRIDE_FIELDS = {f.name: f for f in dataclasses.fields(FeatureSpec) if f.name != "name"}
_INT_FIELDS = ("embedding_dim", "max_tokens", "min_count", "num_oov_buckets", "hash_buckets",
               "num_buckets")

Override = Optional[Mapping[str, Any]]


TEXT_MIN_SPACED = 0.5  # share of non-empty values holding whitespace
TEXT_MIN_DISTINCT = 0.5  # distinct non-empty values / non-empty values


def infer_kind(values: np.ndarray) -> str:
    """The kind of a non-key column by the rule in the module docstring."""
    if values.dtype == bool or np.issubdtype(values.dtype, np.number):
        return "continuous"
    if values.dtype == object or values.dtype.kind in "US":
        strings = [str(v) for v in values.tolist()]
        if any(MULTI_VALUE_SEPARATOR in v for v in strings):
            return "multi_categorical"
        filled = [v.strip() for v in strings if v.strip()]
        if filled:
            spaced = sum(any(c.isspace() for c in v) for v in filled) / len(filled)
            distinct = len(set(filled)) / len(filled)
            if spaced >= TEXT_MIN_SPACED and distinct >= TEXT_MIN_DISTINCT:
                return "text"
        return "categorical"
    raise ValueError(f"cannot infer a feature kind for dtype {values.dtype}")


def infer_feature_specs(
    table: Table,
    key: str,
    *,
    overrides: Optional[Mapping[str, Override]] = None,
    id_dim: int = 32,
    source: str = "feature config",
) -> List[FeatureSpec]:
    """One `FeatureSpec` per column of `table`: inferred, then overridden.

    Args:
      table: column name -> ``(n,)`` array (float32 numbers or object str).
      key: the key column; it becomes kind ``id`` with ``embedding_dim=id_dim``.
      overrides: column -> dict of `FeatureSpec` fields (``kind`` may change), or
        None / ``{"kind": "drop"}`` to remove the column.
      id_dim: the embedding width of the key column (unless overridden).
      source: where the overrides came from, for error messages (e.g.
        "features.json, section 'items'").

    Returns:
      Specs in table order, the key first; dropped columns left out.

    Raises:
      ValueError: `key` not in the table, an override for a column the table does not
        have (naming it and the columns that exist), a bad override, or every column
        dropped.
    """
    if key not in table:
        raise ValueError(f"key column {key!r} is not in the table; columns are {list(table)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(table))
    if unknown:
        raise ValueError(
            f"{source}: feature(s) {unknown} are not columns of the table; "
            f"its columns are {list(table)}"
        )
    specs = []
    for name in [key] + [c for c in table if c != key]:
        override = check_override(name, overrides.get(name, {}), source)
        if override is None:
            continue
        fields: Dict[str, Any] = {"kind": "id" if name == key else infer_kind(table[name])}
        fields.update(override)
        if fields["kind"] == "id" and "embedding_dim" not in override:
            fields["embedding_dim"] = id_dim
        _check_dtype(name, fields["kind"], table[name], source)
        specs.append(FeatureSpec(name=name, **fields))
    if not specs:
        raise ValueError(f"{source}: every column of the table was dropped; keep at least one")
    return specs


def _check_dtype(name: str, kind: str, values: np.ndarray, source: str) -> None:
    """Numeric kinds need numbers and string kinds need str, or the encoder fails later."""
    numeric = infer_kind(values) == "continuous"
    if kind in NUMERIC_KINDS and not numeric:
        raise ValueError(
            f"{source}: feature {name!r} has kind {kind!r}, which needs numbers, but the "
            f"column holds text (e.g. {values[0]!r}); use categorical or fix the column"
        )
    if kind not in NUMERIC_KINDS and numeric:
        raise ValueError(
            f"{source}: feature {name!r} has kind {kind!r}, which needs str values, but the "
            f"column holds numbers ({values.dtype}); read it as str (load_data does this for "
            "columns the feature config gives a string kind) or use readers.as_strings"
        )


def check_override(name: str, entry: Override, source: str = "feature config") -> Override:
    """Validates one override entry; returns it as a dict, or None for a dropped column.

    Raises:
      ValueError: not a dict/null, an unknown field or kind, a value of the wrong type
        or out of range; the message names `source` and the feature.
    """
    where = f"{source}: feature {name!r}"
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected an object of FeatureSpec fields or null, "
                         f"got {entry!r}")
    entry = dict(entry)
    unknown = sorted(set(entry) - set(_OVERRIDE_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known fields are "
                         f"{sorted(_OVERRIDE_FIELDS)}")
    kind = entry.get("kind")
    if kind == DROP:
        if len(entry) > 1:
            raise ValueError(f"{where}: kind 'drop' takes no other fields, got {sorted(entry)}")
        return None
    if kind is not None and kind not in FEATURE_KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; kinds are "
                         f"{list(FEATURE_KINDS) + [DROP]}")
    for field, value in entry.items():
        if field in _INT_FIELDS and value is not None and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            raise ValueError(f"{where}: {field} must be an integer, got {value!r}")
        if field == "log1p" and not isinstance(value, bool):
            raise ValueError(f"{where}: log1p must be true or false, got {value!r}")
        if field == "separator" and not isinstance(value, str):
            raise ValueError(f"{where}: separator must be a string, got {value!r}")
    try:
        # Range checks live in FeatureSpec; a placeholder kind when none is given.
        FeatureSpec(name=name, **{"kind": "categorical", **entry})
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return entry


def load_feature_config(path: PathLike) -> Dict[str, Dict[str, Override]]:
    """Reads and validates a feature config JSON (see the module docstring).

    Args:
      path: the JSON file.

    Returns:
      ``{"users": {column: entry or None}, "items": {...}}``, both sections present.
      Columns are checked against the tables later, by `infer_feature_specs`.

    Raises:
      DataError: a missing file, invalid JSON (with its line), an unknown top-level
        key, or a bad entry; the message names the file, section and feature.
    """
    if not os.path.isfile(path):
        raise DataError("no such feature config file", path=path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (character {e.colno})", path=path,
                        line=e.lineno) from None
    if not isinstance(config, dict):
        raise DataError(f"expected a JSON object with keys {list(CONFIG_SECTIONS)}", path=path)
    unknown = sorted(set(config) - set(CONFIG_SECTIONS))
    if unknown:
        raise DataError(f"unknown top-level key(s) {unknown}; expected {list(CONFIG_SECTIONS)}",
                        path=path)
    out: Dict[str, Dict[str, Override]] = {}
    for section in CONFIG_SECTIONS:
        entries = config.get(section)
        entries = {} if entries is None else entries
        if not isinstance(entries, dict):
            raise DataError(f"section {section!r} must be an object of column -> settings",
                            path=path)
        try:
            out[section] = {
                name: check_override(name, entry, f"section {section!r}")
                for name, entry in entries.items()
            }
        except ValueError as e:
            raise DataError(str(e), path=path) from None
    return out


def config_source(path: Union[PathLike, None], section: str) -> str:
    """The `source` string for `infer_feature_specs` errors about a config section."""
    return f"{path or 'feature config'}, section {section!r}"


def describe_specs(specs: Sequence[FeatureSpec], table: Optional[Table] = None) -> str:
    """A short text table of the specs (and, given the table, distinct/missing counts).

    Example:
      >>> print(describe_specs(specs))
      feature   kind         dim  settings
      user_id   id            32
      age       bucketized     8  num_buckets=8
    """
    defaults = FeatureSpec(name="x", kind="categorical")
    header = ["feature", "kind", "dim", "settings"]
    if table is not None:
        header[3:3] = ["distinct", "missing"]
    rows = [header]
    for spec in specs:
        settings = " ".join(
            f"{field}={getattr(spec, field)}"
            for field in _OVERRIDE_FIELDS
            if field not in ("kind", "embedding_dim")
            and getattr(spec, field) != getattr(defaults, field)
        )
        row = [spec.name, spec.kind, str(spec.dim), settings]
        if table is not None and spec.name in table:
            row[3:3] = _column_stats(table[spec.name])
        elif table is not None:
            row[3:3] = ["-", "-"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    numeric = {"dim", "distinct", "missing"}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if header[i] in numeric and row is not rows[0] else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _column_stats(values: np.ndarray) -> List[str]:
    if values.dtype == object:
        missing = int(sum(1 for v in values.tolist() if v == ""))
        distinct = len(set(values.tolist()) - {""})
    else:
        nan = np.isnan(values) if np.issubdtype(values.dtype, np.floating) else np.zeros(
            len(values), bool)
        missing = int(nan.sum())
        distinct = len(np.unique(values[~nan]))
    return [str(distinct), str(missing)]
