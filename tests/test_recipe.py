"""The recipe's defaults: resolved negatives, the item id's positive-count vocabulary, and
the catalogue a warm start keeps."""

import json

import numpy as np
import pytest

from tfrecall import recipe
from tfrecall.config import FeatureSpec
from tfrecall.io.schema import RecallData
from tfrecall.models.warm_start import default_batch
from tfrecall.recipe import RecipeConfig
from tfrecall.recipe.config import run_sampling


def _log(pairs):
    """A RecallData of (user, item, positive) rows."""
    users, items, pos = zip(*pairs, strict=True)
    return RecallData({
        "user_id": np.asarray(users, dtype=object),
        "item_id": np.asarray(items, dtype=object),
        "label": np.asarray([1.0 if p else 0.0 for p in pos], np.float32),
        "positive": np.asarray(pos, bool),
    }, name="log")


# ---------------------------------------------------------------- negatives


@pytest.mark.parametrize("kwargs, catalogue, want", [
    # The in_batch view mixes in 256 shared uniform negatives, at most the catalogue.
    ({}, 10 ** 9, ("in_batch,uniform", 256)),
    ({}, 10_000, ("in_batch,uniform", 256)),
    ({}, 40, ("in_batch,uniform", 40)),
    # Explicit choices are kept as given.
    ({"negatives": "in_batch"}, 40, ("in_batch", 40)),
    ({"negatives": "in_batch,popularity", "num_negatives": 7}, 40, ("in_batch,popularity", 7)),
    # Other views: the sampler's default sources, 3 negatives per positive.
    ({"view": "pointwise", "loss": "bce"}, 40, ("uniform", 3)),
    ({"view": "listwise", "loss": "kl", "num_negatives": 5}, 40, ("uniform", 5)),
])
def test_resolve_negatives(kwargs, catalogue, want):
    sampling = run_sampling(RecipeConfig.from_flat(**kwargs), catalogue)
    assert (",".join(sampling.negatives), sampling.num_negatives) == want


def test_sampling_config_carries_the_resolved_defaults():
    sampling = run_sampling(RecipeConfig(seed=7), catalogue_size=100)
    assert sampling.negatives == ("in_batch", "uniform") and sampling.num_negatives == 100
    assert sampling.seed == 7 and sampling.log_q
    assert RecipeConfig.from_flat(view="pointwise", loss="bce").sampling.num_negatives == 3
    assert RecipeConfig() == RecipeConfig.from_flat()


@pytest.mark.parametrize("loss, view, log_q, want", [
    ("softmax", "in_batch", True, True), ("softmax", "in_batch", False, False),
    ("nce", "in_batch", False, True), ("sampled_softmax", "listwise", False, True),
    # NEG is NCE without the correction: log Q would silently turn it into NCE.
    ("neg", "in_batch", True, False), ("neg", "listwise", True, False),
    ("bpr", "pairwise", True, False), ("bce", "pointwise", True, False),
    ("kl", "listwise", True, False),
])
def test_log_q_follows_the_loss_definition(loss, view, log_q, want):
    config = RecipeConfig.from_flat(loss=loss, view=view, log_q=log_q)
    assert run_sampling(config, 1000).log_q is want


# ---------------------------------------------------------------- batch by log size


@pytest.mark.parametrize("examples, want_batch, want_rate", [
    (0, 128, 0.01),
    (15_999_999, 128, 0.01),
    # From 16M training positives on: batch 1024, the rate times sqrt(1024 / 128).
    (16_000_000, 1024, 0.01 * 8 ** 0.5),
    (10 ** 9, 1024, 0.01 * 8 ** 0.5),
])
def test_an_unset_batch_size_follows_the_log_size(examples, want_batch, want_rate):
    batch, rate, reason = recipe.batch_for(RecipeConfig(), examples)
    assert batch == want_batch and rate == pytest.approx(want_rate, rel=1e-12)
    assert reason.startswith("auto:") and f"{examples:,}" in reason
    # The rule scales whatever learning rate is given; the run logs what it chose.
    lines = []
    config = RecipeConfig(learning_rate=0.002)
    resolved = recipe.with_batch(config, examples, lines.append)
    assert resolved.batch_size == want_batch
    assert resolved.learning_rate == pytest.approx(want_rate / 5, rel=1e-12)
    assert lines == [f"batch size: {want_batch}, learning rate {resolved.learning_rate:.4g} "
                     f"({recipe.batch_for(config, examples)[2]})"]


def test_an_explicit_batch_size_is_kept_with_its_learning_rate():
    config = RecipeConfig(batch_size=256, learning_rate=0.05)
    assert recipe.batch_for(config, 10 ** 9) == (256, 0.05, "set")
    lines = []
    assert recipe.with_batch(config, 10 ** 9, lines.append) == config and lines == []
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        RecipeConfig(batch_size=0)
    # A resolved config round-trips through the recipe.json a run writes.
    resolved = recipe.with_batch(RecipeConfig(), 20_000_000)
    assert RecipeConfig.from_dict(json.loads(json.dumps(resolved.to_dict()))) == resolved


def test_bad_num_negatives_and_min_count_name_the_field():
    with pytest.raises(ValueError, match="num_negatives must be an integer >= 1, got 0"):
        RecipeConfig.from_flat(num_negatives=0)
    with pytest.raises(ValueError, match="item_id_min_count must be >= 1, got 0"):
        RecipeConfig.from_flat(item_id_min_count=0)


def test_config_with_unset_num_negatives_round_trips_through_json():
    config = RecipeConfig.from_flat(item_id_min_count=3)
    back = RecipeConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.sampling.num_negatives == 256


# ---------------------------------------------------------------- item id vocabulary


def _catalogue_table():
    ids = np.asarray(["a", "b", "c", "d", "e"], dtype=object)
    return {"item_id": ids, "category": np.asarray(["x", "x", "y", "y", "z"], dtype=object)}


def test_item_id_vocabulary_counts_training_positives():
    # a: 6 positives, b: 5, c: 4, d: 1 (+ 3 exposures that are not positives), e: none.
    pairs = ([("u", "a", True)] * 6 + [("u", "b", True)] * 5 + [("u", "c", True)] * 4
             + [("u", "d", True)] + [("u", "d", False)] * 3)
    config = RecipeConfig.from_flat(item_id_min_count=5, batch_size=4)
    specs = [FeatureSpec("item_id", "id", min_count=5), FeatureSpec("category", "categorical")]
    logs = []
    specs, table = recipe.item_adapt_table(specs, _catalogue_table(), _log(pairs), logs.append)
    assert sorted(table["item_id"].tolist()) == ["a"] * 6 + ["b"] * 5 + ["c"] * 4 + ["d"]
    assert logs == ["item_id: 2 of 4 items with training positives have >= 5 (min_count) and "
                    "their own embedding row; the rest and items never positive are scored by "
                    "their features (the OOV row)"]
    model = recipe.build_model([FeatureSpec("user_id", "id")], specs,
                               {"user_id": np.asarray(["u"], dtype=object)}, table, config)
    item_id, category = model.item_tower.encoder.feature_layers
    assert item_id.vocabulary == ["a", "b"]  # most frequent first
    assert sorted(category.vocabulary) == ["x", "y", "z"]  # from the catalogue, not the log
    # c, d and e share the OOV row: with the same features they embed identically.
    emb = model.item_embeddings({"item_id": np.asarray(["c", "d", "a"], dtype=object),
                                 "category": np.asarray(["y", "y", "y"], dtype=object)}).numpy()
    np.testing.assert_allclose(emb[0], emb[1])
    assert not np.allclose(emb[0], emb[2])


def test_tiny_log_keeps_every_positive_item_with_a_note():
    pairs = [("u", "a", True)] * 2 + [("u", "b", True)]
    specs = [FeatureSpec("item_id", "id", min_count=5)]
    logs = []
    specs, table = recipe.item_adapt_table(specs, _catalogue_table(), _log(pairs), logs.append)
    assert specs[0].min_count == 1 and "no item has 5 training positives" in logs[0]


def test_hashed_item_ids_adapt_from_the_catalogue():
    specs = [FeatureSpec("item_id", "id", hash_buckets=64)]
    table = _catalogue_table()
    out_specs, out = recipe.item_adapt_table(specs, table, _log([("u", "a", True)]))
    assert out is table and out_specs == specs


def test_build_specs_sets_the_min_count_unless_the_feature_config_does(tmp_path):
    data = _log([("u", "a", True), ("v", "b", True)])
    _, items = recipe.build_specs(data, RecipeConfig.from_flat(item_id_min_count=4))
    assert {s.name: s.min_count for s in items}["item_id"] == 4
    path = tmp_path / "features.json"
    path.write_text('{"items": {"item_id": {"kind": "id", "min_count": 2}}}')
    _, items = recipe.build_specs(data, RecipeConfig.from_flat(item_id_min_count=4,
                                                     feature_config=str(path)))
    assert {s.name: s.min_count for s in items}["item_id"] == 2


# ---------------------------------------------------------------- warm-start catalogue


def test_previous_catalogue_prefers_the_saved_catalogue_over_the_vocabulary(tmp_path):
    config = RecipeConfig.from_flat(model_dir=str(tmp_path / "run"))
    model = recipe.build_model(
        [FeatureSpec("user_id", "id")], [FeatureSpec("item_id", "id")],
        {"user_id": np.asarray(["u"], dtype=object)},
        {"item_id": np.asarray(["a", "b"], dtype=object)}, config)
    model(default_batch(model))  # variables exist, as after training
    # "tail" has no embedding row (below min_count) but was in the indexed catalogue.
    recipe.save_model(model, config.model_dir, config.to_dict(),
                      np.asarray(["a", "b", "tail"], dtype=object))
    loaded = recipe.load_model(config.model_dir)
    assert recipe.previous_catalogue(config.model_dir, loaded).tolist() == ["a", "b", "tail"]
    (tmp_path / "run" / recipe.CATALOGUE_FILE).unlink()  # a run saved before the file existed
    assert recipe.previous_catalogue(config.model_dir, loaded).tolist() == ["a", "b"]


# ---------------------------------------------------------------- issue 13: a run to trust


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ({"similarity": "l2"}, "similarity must be one of ('cosine', 'dot'), got 'l2'"),
    ({"optimizer": "lion"}, "optimizer must be one of"),
    ({"index": "faiss"}, "index must be one of"),
    ({"test_fraction": 1.5}, "test_fraction must be in (0, 1), got 1.5"),
    ({"ks": (10, 0)}, "ks must be integers >= 1"),
    ({"verbose": 3}, "verbose must be one of (0, 1, 2), got 3"),
    # The sampler's checks speak this config's field names.
    ({"negatives": "bogus"}, "^negatives must be distinct names"),
    ({"synthetic_world": "longtail", "negatives": "in_batch,hard"}, "no ranker lists"),
])
def test_config_values_are_checked_before_any_data_is_read(kwargs, message):
    with pytest.raises(ValueError, match=message if message.startswith("^") else
                       __import__("re").escape(message)):
        RecipeConfig.from_flat(**kwargs)


def _finished_run(model_dir, config):
    """A model_dir as a finished run leaves it (recipe.json), without training."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "recipe.json").write_text(json.dumps(config.to_dict()))


def test_a_model_dir_holding_another_run_is_refused_unless_overwrite(tmp_path):
    run_dir = tmp_path / "run"
    _finished_run(run_dir, RecipeConfig.from_flat(model_dir=str(run_dir)))
    mine = RecipeConfig.from_flat(interactions="events.csv", model_dir=str(run_dir))
    with pytest.raises(ValueError) as e:
        recipe.check_run_dirs(mine, log=lambda *_: None)
    assert str(e.value).startswith(f"model_dir {str(run_dir)!r} holds a different run (")
    assert "interactions: None -> 'events.csv'" in str(e.value)
    assert "overwrite=True" in str(e.value)
    # The same run with other outputs (export, verbosity) is the same run.
    recipe.check_run_dirs(RecipeConfig.from_flat(model_dir=str(run_dir), export_k=10, verbose=0,
                                       export=False), log=print)
    # overwrite replaces it, and discards an interrupted run's backup there.
    (run_dir / "backup" / "search").mkdir(parents=True)
    logs = []
    recipe.check_run_dirs(dataclasses_replace(mine, overwrite=True), log=logs.append)
    assert not (run_dir / "backup").exists() and "discarded" in logs[0]


def test_a_warm_start_may_replace_its_own_model_dir(tmp_path):
    run_dir = tmp_path / "run"
    _finished_run(run_dir, RecipeConfig.from_flat(model_dir=str(run_dir)))
    (run_dir / "model.json").write_text("{}")
    recipe.check_run_dirs(RecipeConfig.from_flat(interactions="new.csv",
                                                 warm_start_from=str(run_dir),
                                       model_dir=str(run_dir)), log=print)
    with pytest.raises(ValueError, match=r"^warm_start_from '.*nowhere' holds no trained model"):
        recipe.check_run_dirs(RecipeConfig.from_flat(interactions="new.csv",
                                           warm_start_from=str(tmp_path / "nowhere"),
                                           model_dir=str(tmp_path / "b")), log=print)


@pytest.mark.parametrize("field", ["model_dir", "export_dir"])
def test_unusable_directories_are_named_before_the_data_is_read(tmp_path, field):
    afile = tmp_path / "afile"
    afile.write_text("x")
    paths = {"model_dir": str(tmp_path / "run"), field: str(afile)}
    with pytest.raises(ValueError, match=rf"^{field} '.*afile' is a file, not a directory"):
        recipe.check_run_dirs(RecipeConfig.from_flat(**paths), log=print)
    with pytest.raises(ValueError, match=r"^model_dir '/proc/x' cannot be created"):
        recipe.check_run_dirs(RecipeConfig.from_flat(model_dir="/proc/x"), log=print)


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize("rows", [
    # One user, one item: every held-out row is that user's training item.
    [("u1", "i1", "click")] * 6,
    # Held-out rows exist (the latest 20%: a time cut), but none is a positive.
    [(f"u{t % 4}", f"i{t % 3}", "click") for t in range(8)]
    + [("u1", "i2", "impression"), ("u2", "i1", "impression")],
])
def test_nothing_to_evaluate_stops_before_training(tmp_path, rows):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,timestamp\n"
                      + "".join(f"{u},{i},{e},{t}\n" for t, (u, i, e) in enumerate(rows)))
    config = RecipeConfig.from_flat(interactions=str(events), model_dir=str(tmp_path / "run"),
                          split="temporal", test_fraction=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"^nothing to evaluate: the held-out split has no "
                                         r"positive \(user, item\) pair"):
        recipe.run(config, log=lambda *_: None)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_share_rows_holds_the_log_once_with_the_split_as_read_only_views():
    from tfrecall.data import splits
    from tfrecall.recipe.prepare import share_rows

    rng = np.random.default_rng(0)
    n = 50
    inter = {"user_id": np.array([f"u{i % 7}" for i in range(n)], object),
             "item_id": np.array([f"i{i % 11}" for i in range(n)], object),
             "label": rng.random(n).astype(np.float32), "positive": np.ones(n, bool),
             "timestamp": np.arange(n, dtype=np.int64)}
    data = RecallData(inter, name="log")
    copies = splits.random_split(data, 0.2, seed=3)
    expected = [{k: v.copy() for k, v in side.interactions.items()} for side in copies]
    whole, train, test = share_rows(data, *copies)
    assert whole is not data and data.interactions is inter  # the caller's log untouched
    for side, want in zip((train, test), expected, strict=True):
        for key, column in side.interactions.items():
            np.testing.assert_array_equal(column, want[key])  # same rows, same order
            assert np.shares_memory(column, whole.interactions[key])
            assert not column.flags.writeable
    # The whole log: training rows first, then the held-out ones.
    np.testing.assert_array_equal(whole.interactions["timestamp"],
                                  np.concatenate([expected[0]["timestamp"],
                                                  expected[1]["timestamp"]]))
    assert sorted(whole.interactions["timestamp"].tolist()) == list(range(n))
    # A split that leaves rows out is returned as it is.
    part = data.subset(np.arange(10)), data.subset(np.arange(10, 20))
    out = share_rows(data, *part)
    assert all(a is b for a, b in zip(out, (data, *part), strict=True))


@pytest.mark.parametrize("validation_fraction, built", [(0.0, 0), (0.2, 1)])
def test_only_a_search_stage_builds_its_own_user_table(tmp_path, monkeypatch,
                                                       validation_fraction, built):
    """The final stage trains on the whole training split and takes prepare's user table
    (every user's history) as it is: building it again held the 25M-row run's peak. A
    search stage's fit split has other histories and builds its own."""
    from tfrecall.recipe import stage

    tables = []

    def counted(data, fit, user_ids, config):
        tables.append(fit.num_interactions)
        return recipe.user_feature_table(data, fit, user_ids, config)

    monkeypatch.setattr(stage, "user_feature_table", counted)
    kept = []
    real_store = stage.FeatureStore

    def store(table, key, ids):
        if key == "user_id":
            kept.append(table)
        return real_store(table, key, ids)

    monkeypatch.setattr(stage, "FeatureStore", store)
    config = RecipeConfig.from_flat(
        synthetic_users=200, synthetic_items=100, epochs=1, teacher="off",
        validation_fraction=validation_fraction, export=False, baselines=(), verbose=0,
        model_dir=str(tmp_path / "run"))
    prep_tables = []
    real_prepare = recipe.job.prepare

    def prepare(*args, **kwargs):
        prep_tables.append(real_prepare(*args, **kwargs))
        return prep_tables[-1]

    monkeypatch.setattr(recipe.job, "prepare", prepare)
    recipe.run(config, log=lambda *_: None)
    assert len(tables) == built
    assert kept[-1] is prep_tables[0].user_table  # the final stage's
    if built:
        assert kept[0] is not prep_tables[0].user_table
        assert tables[0] < prep_tables[0].train.num_interactions  # the fit split's rows
