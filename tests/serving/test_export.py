"""SavedModel export: fresh-process loads with TensorFlow (+ scann) only, exact top-K, atomicity."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.models import TwoTowerModel
from tfrecall.serving import embed_items, embed_users, export_saved_model

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
        [FeatureSpec("item_id", "id", embedding_dim=8), FeatureSpec("price", "continuous", log1p=True)],
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
    print(json.dumps({
        "ids": out["item_ids"].numpy().astype(str).tolist(),
        "scores": out["scores"].numpy().tolist(),
        "user_emb": emb.numpy().tolist(),
        "item_emb": items["embedding"].numpy().tolist(),
        "empty": list(empty["item_ids"].shape),
        "inputs": sorted(m.signatures["serving_default"].structured_input_signature[1]),
    }))
    """
)


def load_in_fresh_process(path, index, env):
    env = {k: v for k, v in env.items() if k != "TF_USE_LEGACY_KERAS"}  # a plain TF user
    out = subprocess.run(
        [sys.executable, "-c", LOADER, path, index],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", ["brute_force", "scann"])
def test_fresh_process_load_matches_exact_search(model, index, tmp_path, subprocess_env):
    path = export_saved_model(model, ITEMS, str(tmp_path / "export"), k=10, index=index)
    assert os.path.basename(path) == "1"
    got = load_in_fresh_process(path, index, subprocess_env)
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
