"""export_query_model: a TFRS model (tfrs.Model + tfrs.tasks.Retrieval) exported through every
index kind, loaded in a fresh process without tfrecall (and without scann for the stock
kinds), against `tfrs.layers.factorized_top_k.BruteForce` on the same model."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_recommenders as tfrs

from tfrecall._backend import keras, tf
from tfrecall.serving import export_query_model, read_export_info

N_USERS, N_ITEMS, DIM, K = 40, 600, 16, 10
USERS = np.array([f"u{i}" for i in range(N_USERS)])
ITEMS = np.array([f"i{j}" for j in range(N_ITEMS)])
USER_ID = tf.TensorSpec([None], tf.string, name="user_id")
TARGET = 0.9


@pytest.fixture(scope="module")
def trained():
    """The TFRS basic-retrieval tutorial's model, trained on a small clustered world."""
    rng = np.random.default_rng(0)
    users = rng.choice(N_USERS, 6000)
    # User u likes items 15u .. 15u + 29 (overlapping neighbourhoods), so there is signal.
    items = (users * 15 + rng.integers(0, 30, len(users))) % N_ITEMS
    keras.utils.set_random_seed(0)
    user_model = keras.Sequential([keras.layers.StringLookup(vocabulary=USERS, mask_token=None),
                                   keras.layers.Embedding(N_USERS + 1, DIM)])
    item_model = keras.Sequential([keras.layers.StringLookup(vocabulary=ITEMS, mask_token=None),
                                   keras.layers.Embedding(N_ITEMS + 1, DIM)])

    class Model(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user_model, self.item_model = user_model, item_model
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]),
                             self.item_model(features["item_id"]), compute_metrics=False)

    model = Model()
    model.compile(optimizer=keras.optimizers.Adagrad(0.5))
    data = tf.data.Dataset.from_tensor_slices({"user_id": USERS[users], "item_id": ITEMS[items]})
    model.fit(data.batch(256), epochs=3, verbose=0)
    bf = tfrs.layers.factorized_top_k.BruteForce(user_model, k=K)
    bf.index_from_dataset(tf.data.Dataset.from_tensor_slices(ITEMS).batch(128).map(
        lambda ids: (ids, item_model(ids))))
    return model, bf


def item_embeddings(model):
    return model.item_model(tf.constant(ITEMS)).numpy()


LOADER = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    kinds = json.loads(sys.argv[1])
    if any(kind.startswith("scann") for kind in kinds):
        import scann  # registers the ScaNN ops
    out = {}
    for kind, path in kinds.items():
        m = tf.saved_model.load(path)
        users = tf.constant(json.loads(sys.argv[2]))
        top = m.signatures["serving_default"](user_id=users)
        excl = m.signatures["serving_exclude"](user_id=users[:2],
                                               exclude_item_ids=tf.constant(json.loads(sys.argv[3])))
        inputs = m.signatures["serving_default"].structured_input_signature[1]
        out[kind] = {"ids": top["item_ids"].numpy().astype(str).tolist(),
                     "scores": top["scores"].numpy().tolist(),
                     "excl_ids": excl["item_ids"].numpy().astype(str).tolist(),
                     "excl_scores": excl["scores"].numpy().tolist(),
                     "signatures": sorted(m.signatures),
                     "inputs": sorted(inputs)}
    out["modules"] = sorted(m for m in ("tfrecall", "scann", "tensorflow_recommenders", "tf_keras")
                            if m in sys.modules)
    print(json.dumps(out))
    """
)


def load_in_fresh_process(paths, exclude, env):
    env = {k: v for k, v in env.items() if k != "TF_USE_LEGACY_KERAS"}  # a plain TF user
    out = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(paths), json.dumps(USERS.tolist()),
         json.dumps(exclude)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall_at_10(ids, query_emb, item_emb, ref_scores):
    """Score-based recall (ties make ids ambiguous): returned items scoring >= the 10th best."""
    rows = np.array([[int(i[1:]) for i in row] for row in ids])
    scores = np.einsum("qd,qkd->qk", query_emb, item_emb[rows])
    return float((scores >= ref_scores[:, K - 1 : K] - 1e-4).mean())


# Exact: brute force, and every kind below exact_below; approximate: partitioned and ScaNN
# forced above it (600 items > exact_below=100), tuned on the users they then serve.
GROUPS = {
    "stock": {"brute_force": ("brute_force", 10_000), "partitioned_exact": ("partitioned", 10_000),
              "partitioned": ("partitioned", 100)},
    "scann": {"scann_exact": ("scann", 10_000), "scann": ("scann", 100)},
}


@pytest.mark.slow  # a fresh TensorFlow process per group (about 10-30 s on 2 shared cores)
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_fresh_process_matches_tfrs_brute_force(trained, group, tmp_path, subprocess_env):
    model, bf = trained
    ref_scores, ref_ids = (t.numpy() for t in bf(tf.constant(USERS)))
    ref_ids = ref_ids.astype(str)
    # Users 0 and 1 exclude their best item, their 4th and an unknown id.
    exclude = [[ref_ids[u, 0], ref_ids[u, 3], "not-an-item"] for u in range(2)]
    ex_scores, ex_ids = (t.numpy() for t in bf.query_with_exclusions(
        tf.constant(USERS[:2]), tf.constant(exclude)))
    paths, infos = {}, {}
    for name, (kind, exact_below) in GROUPS[group].items():
        path = export_query_model(
            model.user_model, str(tmp_path / name), ITEMS, candidate_model=model.item_model,
            candidates=tf.data.Dataset.from_tensor_slices(ITEMS).batch(100),
            input_signature=USER_ID, k=K, index=kind, exact_below=exact_below,
            tuning_queries=USERS, target_recall=TARGET)
        paths[name], infos[name] = str(path), path.info
    got = load_in_fresh_process(paths, exclude, subprocess_env)
    assert got.pop("modules") == ([] if group == "stock" else ["scann"])
    user_emb = model.user_model(tf.constant(USERS)).numpy()
    items = item_embeddings(model)
    for name, out in got.items():
        assert out["signatures"] == ["item_embedding", "serving_default", "serving_exclude",
                                     "user_embedding"]
        assert out["inputs"] == ["user_id"]
        exact = infos[name]["index_report"]["mode"] == "exact"
        assert exact == name.endswith(("exact", "brute_force")), name
        if exact:  # the same top 10 as TFRS' BruteForce: scores, then ids where not tied
            np.testing.assert_allclose(out["scores"], ref_scores, rtol=1e-4, atol=1e-4)
            tied = np.isclose(ref_scores[:, :, None], ref_scores[:, None, :], atol=1e-4).sum(-1)
            assert (np.array(out["ids"])[tied == 1] == ref_ids[tied == 1]).all()
            np.testing.assert_allclose(out["excl_scores"], ex_scores, rtol=1e-4, atol=1e-4)
            assert set(map(tuple, out["excl_ids"])) == set(map(tuple, ex_ids.astype(str)))
        else:  # recall@10 against BruteForce reaches what the export was tuned to
            recall = recall_at_10(out["ids"], user_emb, items, ref_scores)
            assert recall >= TARGET and infos[name]["recall_at_10"] >= TARGET, (name, recall)
            assert abs(recall - infos[name]["recall_at_10"]) < 1e-6  # tuned on these users
        for row in range(2):  # the excluded never come back; K items still do
            assert not set(out["excl_ids"][row]) & set(exclude[row])
            assert "" not in out["excl_ids"][row]


def test_candidate_embeddings_and_named_inputs(trained, tmp_path):
    model, bf = trained
    # A functional query model over two named inputs: the names come from the model.
    uid = keras.Input((), dtype=tf.string, name="user_id")
    boost = keras.Input((), dtype=tf.float32, name="boost")
    query = keras.Model([uid, boost], model.user_model(uid) * boost[:, None])
    path = export_query_model(query, str(tmp_path / "f"), ITEMS, item_embeddings(model), k=K,
                              index="brute_force")
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](user_id=tf.constant(USERS[:4]),
                                               boost=tf.constant([1.0, 2.0, 1.0, 0.5]))
    ref_scores, ref_ids = bf(tf.constant(USERS[:4]))
    np.testing.assert_allclose(out["scores"].numpy(),
                               ref_scores.numpy() * np.array([[1.0], [2.0], [1.0], [0.5]]),
                               rtol=1e-4, atol=1e-4)
    assert sorted(loaded.signatures) == ["serving_default", "serving_exclude", "user_embedding"]
    info = read_export_info(path)
    assert info["user_features"] == ["boost", "user_id"] and info["item_features"] == []
    assert info["query_model"] == "Functional" and info["num_items"] == N_ITEMS

    # A tf.Module with a traced signature (no Keras): the name comes from its spec.
    class Query(tf.Module):
        def __init__(self):
            super().__init__()
            self.tower = model.user_model

        @tf.function(input_signature=[USER_ID])
        def __call__(self, ids):
            return self.tower(ids)

    path = export_query_model(Query(), str(tmp_path / "m"), tf.constant(ITEMS),
                              item_embeddings(model), k=3, index="partitioned")
    out = tf.saved_model.load(path).signatures["serving_default"](user_id=tf.constant(["u5"]))
    np.testing.assert_allclose(out["scores"].numpy(), bf(tf.constant(["u5"]), k=3)[0].numpy(),
                               rtol=1e-4, atol=1e-4)


def test_bad_input_is_named(trained, tmp_path):
    model, _ = trained
    emb = item_embeddings(model)
    base = str(tmp_path / "x")

    def export(query=model.user_model, ids=ITEMS, embeddings=emb, **kw):
        kw.setdefault("input_signature", USER_ID)
        return export_query_model(query, base, ids, embeddings, index="brute_force", **kw)

    three_d = keras.Sequential([model.user_model, keras.layers.Reshape((1, DIM))])
    with pytest.raises(ValueError, match=r"query_model must return \(B, D\) .*\(None, 1, 16\)"):
        export(three_d)
    with pytest.raises(ValueError, match="query_model must return one"):
        export(lambda ids: {"q": model.user_model(ids)})
    with pytest.raises(ValueError, match="candidate_ids has 600 ids but candidate_embeddings "
                                         "has 599"):
        export(embeddings=emb[:-1])
    with pytest.raises(ValueError, match=r"candidate_embeddings must be \(n, 16\)"):
        export(embeddings=emb[:, :8])
    with pytest.raises(ValueError, match="exactly one"):
        export(candidate_model=model.item_model, candidates=ITEMS)
    with pytest.raises(ValueError, match="exactly one"):
        export(embeddings=None)
    with pytest.raises(ValueError, match="candidate_model needs candidates"):
        export(embeddings=None, candidate_model=model.item_model)
    with pytest.raises(ValueError, match=r"candidate_model returns \(B, 8\)"):
        export(embeddings=None, candidate_model=keras.Sequential(
            [model.item_model, keras.layers.Dense(8)]), candidates=ITEMS,
            candidate_signature=tf.TensorSpec([None], tf.string, name="item_id"))
    with pytest.raises(ValueError, match="candidate_ids has 600 ids but candidates gave 300"):
        export(embeddings=None, candidate_model=model.item_model, candidates=ITEMS[:300])
    fresh = keras.Sequential([keras.layers.Dense(DIM)])
    with pytest.raises(ValueError, match="query_model has no input signature"):
        export(fresh, input_signature=None)
    with pytest.raises(ValueError, match="every input needs a name"):
        export(input_signature=tf.TensorSpec([None], tf.string))
    with pytest.raises(ValueError, match="exclude_item_ids"):
        export(input_signature=tf.TensorSpec([None], tf.string, name="exclude_item_ids"))
    with pytest.raises(ValueError, match="duplicate item ids"):
        export(ids=np.r_[ITEMS[:-1], ITEMS[:1]])
    with pytest.raises(ValueError, match=r"candidate_ids must be \(n,\)"):
        export(ids=ITEMS.reshape(2, -1))
