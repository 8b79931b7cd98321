"""SavedModel export: fresh-process loads with TensorFlow (+ scann) only, exact top-K,
exclusion, metadata, atomicity (a killed export process) and retained versions."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.models import TwoTowerModel
from tfrecall.serving import embed_items, embed_users, export_saved_model, read_export_info

N_ITEMS = 60
ITEMS = {
    "item_id": np.array([f"i{j}" for j in range(N_ITEMS)], object),
    "price": np.linspace(1, 100, N_ITEMS).astype(np.float32),
}
USERS = {"user_id": np.array(["u0", "u1", "u2"], object),
         "country": np.array(["fr", "de", ""], object)}


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    m = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=8), FeatureSpec("country", "categorical")],
        [FeatureSpec("item_id", "id", embedding_dim=8),
         FeatureSpec("price", "continuous", log1p=True)],
        tower=TowerConfig(hidden_units=(16,), output_dim=8),
    )
    m.adapt(USERS, ITEMS)
    return m


LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    if sys.argv[2] == "scann":
        import scann  # registers the ScaNN ops
    assert "tfrecall" not in sys.modules
    m = tf.saved_model.load(sys.argv[1])
    users = {"user_id": tf.constant(["u0", "u1", "nobody"]),
             "country": tf.constant(["fr", "", "xx"])}
    out = m.signatures["serving_default"](**users)
    emb = m.signatures["user_embedding"](**users)["embedding"]
    items = m.signatures["item_embedding"](item_id=tf.constant(["i0", "i5", "new"]),
                                           price=tf.constant([1.0, float("nan"), 3.0]))
    empty = m.signatures["serving_default"](user_id=tf.constant([], tf.string),
                                            country=tf.constant([], tf.string))
    excl = m.signatures["serving_exclude"](exclude_item_ids=tf.constant(json.loads(sys.argv[3])),
                                           **users)
    excl_empty = m.signatures["serving_exclude"](
        user_id=tf.constant([], tf.string), country=tf.constant([], tf.string),
        exclude_item_ids=tf.zeros([0, 2], tf.string))
    print(json.dumps({
        "ids": out["item_ids"].numpy().astype(str).tolist(),
        "scores": out["scores"].numpy().tolist(),
        "user_emb": emb.numpy().tolist(),
        "item_emb": items["embedding"].numpy().tolist(),
        "empty": list(empty["item_ids"].shape),
        "excl_ids": excl["item_ids"].numpy().astype(str).tolist(),
        "excl_scores": excl["scores"].numpy().tolist(),
        "excl_empty": list(excl_empty["item_ids"].shape),
        "signatures": sorted(m.signatures),
        "inputs": sorted(m.signatures["serving_default"].structured_input_signature[1]),
    }))
    """
)


def load_in_fresh_process(path, index, env, exclude):
    env = {k: v for k, v in env.items() if k != "TF_USE_LEGACY_KERAS"}  # a plain TF user
    out = subprocess.run(
        [sys.executable, "-c", LOADER, path, index, json.dumps(exclude)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# Row 0 excludes two of its exact top 10 (filled in by the test) and an unknown id;
# row 1 excludes nothing (all padding); row 2 excludes every item but i7 and i9.
def exclusion_lists(exact):
    top = np.argsort(-exact, axis=1, kind="stable")
    width = N_ITEMS - 2
    rows = [[f"i{top[0, 0]}", f"i{top[0, 3]}", "not-an-item"], [],
            [f"i{j}" for j in range(N_ITEMS) if j not in (7, 9)]]
    return [r + [""] * (width - len(r)) for r in rows]


@pytest.mark.parametrize("index", ["brute_force", "scann", "partitioned"])
def test_fresh_process_load_matches_exact_search(model, index, tmp_path, subprocess_env):
    users = {"user_id": np.array(["u0", "u1", "nobody"], object),
             "country": np.array(["fr", "", "xx"], object)}
    exact = embed_users(model, users) @ embed_items(model, ITEMS).T
    exclude = exclusion_lists(exact)
    path = export_saved_model(model, ITEMS, str(tmp_path / "export"), k=10, index=index)
    assert os.path.basename(path) == "1"
    got = load_in_fresh_process(path, index, subprocess_env, exclude)
    users = {"user_id": np.array(["u0", "u1", "nobody"], object),
             "country": np.array(["fr", "", "xx"], object)}
    u = embed_users(model, users)
    v = embed_items(model, ITEMS)
    np.testing.assert_allclose(got["user_emb"], u, rtol=1e-5, atol=1e-6)
    # Exact reference in numpy: compare scores (ties make id comparison flaky), then ids.
    exact = u @ v.T
    ref_scores = -np.sort(-exact, axis=1)[:, :10]
    np.testing.assert_allclose(got["scores"], ref_scores, rtol=1e-4, atol=1e-5)
    for row in range(3):
        ids = np.array(got["ids"][row])
        idx = np.array([int(i[1:]) for i in ids])
        np.testing.assert_allclose(exact[row, idx], got["scores"][row], rtol=1e-4, atol=1e-5)
    item_ref = embed_items(model, {"item_id": np.array(["i0", "i5", "new"], object),
                                   "price": np.array([1.0, np.nan, 3.0], np.float32)})
    np.testing.assert_allclose(got["item_emb"], item_ref, rtol=1e-5, atol=1e-6)
    assert got["empty"] == [0, 10]
    assert got["inputs"] == ["country", "user_id"]
    meta = json.load(open(os.path.join(path, "assets.extra", "tfrecall_export.json")))
    assert meta["index"] == index and meta["num_items"] == N_ITEMS and meta["k"] == 10
    assert got["signatures"] == ["item_embedding", "serving_default", "serving_exclude",
                                 "user_embedding"]

    # serving_exclude: the exact top 10 among the items not excluded (unknown ids and ""
    # padding exclude nothing); row 2 has only 2 eligible items, then "" slots.
    for row in range(3):
        banned = {int(i[1:]) for i in exclude[row] if i.startswith("i")}
        allowed = [j for j in np.argsort(-exact[row], kind="stable") if j not in banned][:10]
        ids = got["excl_ids"][row]
        assert not set(ids) & set(exclude[row]) - {""}
        want = exact[row, allowed]
        np.testing.assert_allclose(got["excl_scores"][row][: len(want)], want, rtol=1e-4,
                                   atol=1e-5)
        got_idx = [int(i[1:]) for i in ids[: len(want)]]
        np.testing.assert_allclose(exact[row, got_idx], want, rtol=1e-4, atol=1e-5)
    assert sorted(got["excl_ids"][2][:2]) == ["i7", "i9"] and got["excl_ids"][2][2:] == [""] * 8
    assert got["excl_empty"] == [0, 10]
    # The facts of the export travel with it and come back to the caller.
    assert meta["recall_at_10"] == 1.0  # 60 items: below exact_below, searched exactly
    assert meta["index_report"]["mode"] == "exact"
    assert meta["index_bytes"] > 0 and meta["index_build_seconds"] >= 0
    assert meta["saved_model_bytes"] > meta["index_bytes"]
    assert path.info["version"] == 1 and path.info["pruned_versions"] == []
    written = {k: v for k, v in path.info.items() if k not in ("version", "pruned_versions")}
    assert read_export_info(path) == json.loads(json.dumps(written))


def test_versions_increase_and_k_is_capped(model, tmp_path):
    base = str(tmp_path / "export")
    first = export_saved_model(model, ITEMS, base, k=500, index="brute_force")
    second = export_saved_model(model, ITEMS, base, k=5, index="brute_force")
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    loaded = tf.saved_model.load(first)
    out = loaded.signatures["serving_default"](
        user_id=tf.constant(["u0"]), country=tf.constant(["fr"])
    )
    assert out["item_ids"].shape == (1, N_ITEMS)  # k=500 capped at the catalogue


def test_interrupted_export_leaves_no_visible_version(model, tmp_path, monkeypatch):
    base = tmp_path / "export"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, ITEMS, str(base), index="brute_force")
    assert os.listdir(base) == []  # neither a version nor a temporary directory


def test_bad_export_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="index"):
        export_saved_model(model, ITEMS, str(tmp_path), index="faiss")
    with pytest.raises(ValueError, match="duplicate"):
        export_saved_model(model, {"item_id": np.array(["a", "a"], object)}, str(tmp_path))
    with pytest.raises(ValueError, match="empty"):
        export_saved_model(model, {"item_id": np.array([], object)}, str(tmp_path))


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from tfrecall._backend import keras, tf
    from tfrecall.config import FeatureSpec, TowerConfig
    from tfrecall.models import TwoTowerModel
    from tfrecall.serving import export_saved_model

    items = {"item_id": np.array(["a", "b", "c"], object)}
    m = TwoTowerModel.from_specs([FeatureSpec("user_id", "id")], [FeatureSpec("item_id", "id")],
                                 tower=TowerConfig(hidden_units=(), output_dim=4))
    m.adapt({"user_id": np.array(["u"], object)}, items)
    real_save = tf.saved_model.save

    def save_then_die(obj, path, **kwargs):
        real_save(obj, path, **kwargs)  # a complete SavedModel, not yet renamed into place
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup runs

    tf.saved_model.save = save_then_die
    export_saved_model(m, items, sys.argv[1], index="brute_force")
    """
)


def test_killed_export_leaves_no_visible_version(model, tmp_path, subprocess_env):
    base = tmp_path / "export"
    out = subprocess.run([sys.executable, "-c", KILLER, str(base)], capture_output=True,
                         text=True, env=subprocess_env, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    left = os.listdir(base)
    # Only a hidden temporary remains, which TF Serving ignores (not a number).
    assert len(left) == 1 and left[0].startswith(".tmp-") and not any(d.isdigit() for d in left)
    assert os.path.isfile(base / left[0] / "saved_model.pb")
    # The next export removes the dead process's temporary and takes version 1.
    path = export_saved_model(model, ITEMS, str(base), index="brute_force")
    assert sorted(os.listdir(base)) == ["1"] and os.path.basename(path) == "1"


def test_keep_versions_keeps_the_newest(model, tmp_path):
    base = str(tmp_path / "export")
    paths = [export_saved_model(model, ITEMS, base, k=3, index="brute_force", keep_versions=2)
             for _ in range(3)]
    assert sorted(os.listdir(base)) == ["2", "3"]
    assert paths[-1].info["pruned_versions"] == [os.path.join(base, "1")]
    # An explicit older version number is written and kept even though it is not newest.
    old = export_saved_model(model, ITEMS, base, k=3, index="brute_force", version=1,
                             keep_versions=1)
    assert sorted(os.listdir(base)) == ["1", "3"] and os.path.basename(old) == "1"


@pytest.fixture(scope="module")
def loaded(model, tmp_path_factory):
    logs = []
    path = export_saved_model(model, ITEMS, str(tmp_path_factory.mktemp("checked")), k=500,
                              index="brute_force", log=logs.append)
    return tf.saved_model.load(path), path, logs


@pytest.mark.parametrize("signature, feed, message", [
    # Rank: a (B, 1) column instead of (B,) names the input (issue 13: a MatMul error).
    ("serving_default", {"user_id": [["u0"]], "country": ["fr"]},
     r"serving_default: input user_id must have rank 1 \(shape \(B,\)"),
    ("serving_exclude", {"user_id": ["u0"], "country": ["fr"], "exclude_item_ids": ["i0"]},
     r"serving_exclude: input exclude_item_ids must have rank 2 \(shape \(B, M\)"),
    # Batch sizes: two users' ids, one country (issue 13: "ConcatOp : Dimension 0").
    ("serving_default", {"user_id": ["u0", "u1"], "country": ["fr"]},
     r"serving_default: input user_id has a different batch size than input country"),
    ("serving_exclude", {"user_id": ["u0"], "country": ["fr"],
                         "exclude_item_ids": [["i0"], ["i1"]]},
     r"serving_exclude: input exclude_item_ids has a different batch size"),
    ("item_embedding", {"item_id": ["i0", "i1"], "price": [1.0]},
     r"item_embedding: input price has a different batch size than input item_id"),
])
def test_signature_inputs_are_checked_by_name(loaded, signature, feed, message):
    sig = loaded[0].signatures[signature]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        sig(**{k: tf.constant(v) for k, v in feed.items()})


def test_signature_metadata_maps_the_dtype_error_position_to_the_input(loaded):
    module, path, logs = loaded
    inputs = read_export_info(path)["inputs"]
    assert inputs["serving_default"] == {"country": "string", "user_id": "string"}
    assert list(inputs["item_embedding"]) == ["item_id", "price"]
    assert inputs["item_embedding"]["price"] == "float32"
    # TensorFlow refuses a wrong dtype before the graph runs, by position: "input #1" is
    # the metadata's second input of the signature.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input #1\(zero-based\)"):
        module.signatures["item_embedding"](item_id=tf.constant(["i0"]),
                                            price=tf.constant(["cheap"]))
    assert any("note: k=500 exceeds the catalogue's 60 items: capped at k=60" in line
               for line in logs)
    # The index's recall is labelled as such, not read as the model's held-out recall.
    assert any("index recall@10 vs exact search=1.0000" in line for line in logs)


def test_serving_strips_ids_as_training_does(loaded):
    sig = loaded[0].signatures["serving_exclude"]
    clean = sig(user_id=tf.constant(["u0"]), country=tf.constant(["fr"]),
                exclude_item_ids=tf.constant([["i3"]]))
    padded = sig(user_id=tf.constant(["  u0 "]), country=tf.constant([" fr\t"]),
                 exclude_item_ids=tf.constant([[" i3 "]]))
    np.testing.assert_array_equal(padded["item_ids"].numpy(), clean["item_ids"].numpy())
    np.testing.assert_allclose(padded["scores"].numpy(), clean["scores"].numpy())
    assert b"i3" not in padded["item_ids"].numpy()[0].tolist()
