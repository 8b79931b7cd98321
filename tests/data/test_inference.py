"""Tests for tfrecall.io.feature_kinds: kind inference, overrides, the feature config JSON."""

import json

import numpy as np
import pytest

from tfrecall.config import FeatureSpec
from tfrecall.io import feature_kinds as inference
from tfrecall.io.errors import DataError


def table():
    return {
        "item_id": np.array(["a", "b", "c"], dtype=object),
        "price": np.array([1.0, np.nan, 3.0], dtype=np.float32),
        "is_new": np.array([0.0, 1.0, 0.0], dtype=np.float32),  # two values: still continuous
        "brand": np.array(["x", "", "y"], dtype=object),
        "genres": np.array(["Drama", "Action|Drama", ""], dtype=object),
        "stock": np.array([3, 0, 7], dtype=np.int64),
    }


def by_name(specs):
    return {s.name: s for s in specs}


def test_inferred_kinds_in_table_order_key_first():
    t = table()
    t = {"price": t["price"], **t}  # key not first in the table
    specs = inference.infer_feature_specs(t, "item_id", id_dim=16)
    assert [s.name for s in specs] == ["item_id", "price", "is_new", "brand", "genres", "stock"]
    assert [s.kind for s in specs] == [
        "id", "continuous", "continuous", "categorical", "multi_categorical", "continuous"
    ]
    assert specs[0].embedding_dim == 16
    assert specs[4].separator == "|"


def test_overrides_change_kind_fields_and_drop():
    overrides = {
        "price": {"kind": "bucketized", "num_buckets": 8, "log1p": True},
        "brand": {"embedding_dim": 4, "max_tokens": 100},
        "is_new": None,
        "stock": {"kind": "drop"},
        "item_id": {"hash_buckets": 1000},
    }
    specs = by_name(inference.infer_feature_specs(table(), "item_id", overrides=overrides))
    assert set(specs) == {"item_id", "price", "brand", "genres"}
    assert specs["price"] == FeatureSpec("price", "bucketized", num_buckets=8, log1p=True)
    assert specs["brand"] == FeatureSpec("brand", "categorical", embedding_dim=4, max_tokens=100)
    assert specs["item_id"] == FeatureSpec("item_id", "id", embedding_dim=32, hash_buckets=1000)


def test_key_can_be_dropped_but_not_everything():
    one = {"item_id": np.array(["a"], dtype=object)}
    with pytest.raises(ValueError, match="every column of the table was dropped"):
        inference.infer_feature_specs(one, "item_id", overrides={"item_id": None})


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"colour": {"kind": "categorical"}}, r"\['colour'\] are not columns.*'brand'"),
        ({"brand": {"kind": "embedding"}}, r"feature 'brand': unknown kind 'embedding'"),
        ({"brand": {"dims": 4}}, r"feature 'brand': unknown field\(s\) \['dims'\]"),
        ({"brand": {"name": "b"}}, r"unknown field\(s\) \['name'\]"),
        ({"brand": {"embedding_dim": "8"}}, r"embedding_dim must be an integer, got '8'"),
        ({"brand": {"embedding_dim": True}}, r"embedding_dim must be an integer"),
        ({"brand": {"embedding_dim": 0}}, r"embedding_dim must be an integer >= 1"),
        ({"price": {"log1p": "yes"}}, r"log1p must be true or false"),
        ({"price": {"kind": "drop", "num_buckets": 3}}, r"'drop' takes no other fields"),
        ({"price": "continuous"}, r"expected an object of FeatureSpec fields"),
        ({"brand": {"kind": "bucketized"}}, r"'brand' has kind 'bucketized'.*holds text"),
        ({"price": {"kind": "categorical"}}, r"'price' has kind 'categorical'.*holds numbers"),
    ],
)
def test_bad_overrides_name_source_and_feature(overrides, match):
    with pytest.raises(ValueError, match=match) as info:
        inference.infer_feature_specs(table(), "item_id", overrides=overrides, source="cfg.json")
    assert "cfg.json" in str(info.value)


def test_missing_key_column():
    with pytest.raises(ValueError, match="key column 'user_id'"):
        inference.infer_feature_specs(table(), "user_id")


# ------------------------------------------------------------------ feature config JSON


def write_json(tmp_path, content, name="features.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_feature_config(tmp_path):
    path = write_json(tmp_path, {
        "users": {"age": {"kind": "bucketized", "num_buckets": 8}, "zip": None},
        "items": {"brand": {"kind": "drop"}},
    })
    config = inference.load_feature_config(path)
    assert config == {
        "users": {"age": {"kind": "bucketized", "num_buckets": 8}, "zip": None},
        "items": {"brand": None},
    }
    specs = inference.infer_feature_specs(table(), "item_id", overrides=config["items"])
    assert "brand" not in by_name(specs)


def test_empty_sections_are_filled(tmp_path):
    config = inference.load_feature_config(write_json(tmp_path, {"items": {}}))
    assert config == {"users": {}, "items": {}}


@pytest.mark.parametrize(
    "content, match",
    [
        ({"user": {}}, r"unknown top-level key\(s\) \['user'\]"),
        ([1, 2], r"expected a JSON object"),
        ({"items": []}, r"section 'items' must be an object"),
        ({"items": {"brand": {"kind": "sentence"}}},
         r"section 'items': feature 'brand': unknown kind"),
        ({"users": {"age": {"buckets": 3}}}, r"feature 'age': unknown field\(s\) \['buckets'\]"),
        ({"users": {"age": {"num_buckets": 1}}}, r"feature 'age': num_buckets must be >= 2"),
        ('{\n  "users": {\n    "age": {kind: 1}\n  }\n}', r"line 3: invalid JSON"),
    ],
)
def test_bad_feature_config_names_file_and_feature(tmp_path, content, match):
    path = write_json(tmp_path, content, "my_features.json")
    with pytest.raises(DataError, match=match) as info:
        inference.load_feature_config(path)
    assert "my_features.json" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(DataError, match="no such feature config file"):
        inference.load_feature_config(tmp_path / "absent.json")


# ------------------------------------------------------------------ describe_specs


def test_describe_specs():
    specs = inference.infer_feature_specs(
        table(), "item_id", overrides={"price": {"kind": "bucketized", "num_buckets": 4}}
    )
    text = inference.describe_specs(specs)
    lines = text.splitlines()
    assert lines[0].split() == ["feature", "kind", "dim", "settings"]
    assert lines[1].split() == ["item_id", "id", "32"]
    assert lines[2].split() == ["price", "bucketized", "8", "num_buckets=4"]
    assert lines[3].split() == ["is_new", "continuous", "2"]  # value + missing flag
    with_stats = inference.describe_specs(specs, table()).splitlines()
    # price: 2 distinct non-missing values, 1 NaN; brand: 2 distinct, 1 empty.
    assert with_stats[2].split() == ["price", "bucketized", "8", "2", "1", "num_buckets=4"]
    assert with_stats[4].split() == ["brand", "categorical", "8", "2", "1"]
    assert with_stats[5].split()[3:5] == ["2", "1"]  # genres: "Drama", "Action|Drama"
