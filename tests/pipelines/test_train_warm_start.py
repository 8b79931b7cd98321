"""Freshness: continue a trained model on a new log; new items become retrievable."""

import numpy as np

from tfrecall._backend import tf


def _log(path, rows):
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(
        f"{u},{i},{t}" for t, (u, i) in enumerate(rows)) + "\n")
    return str(path)


def test_warm_start_grows_vocabularies_keeps_old_rows_and_retrieves_new_items(tmp_path):
    from tfrecall.recipe import RecipeConfig, load_model, run

    rng = np.random.default_rng(0)
    # Old log: 40 users, items i0..i19, each user group of 4 likes 2 items.
    old_rows = [(f"u{u}", f"i{(u % 10) * 2 + rng.integers(2)}") for u in range(40)
                for _ in range(6)]
    common = dict(epochs=4, batch_size=32, model_dir=str(tmp_path / "run1"), index="brute_force",
                  export_k=10, baselines=(), verbose=0, test_fraction=0.1,
                  # Every held-out pair of these logs repeats a training pair: with them
                  # excluded there would be nothing to evaluate (which stops a run).
                  exclude_train=False,
                  # Id rows for users as well as the history through the item table: the
                  # warm start grows both vocabularies and carries the shared table once.
                  user_id_embedding=True)
    run(RecipeConfig.from_flat(interactions=_log(tmp_path / "old.csv", old_rows), **common),
        log=lambda *_: None)
    old = load_model(str(tmp_path / "run1"))
    old_vocab = list(old.item_tower.encoder.feature_layers[0].vocabulary)
    old_table = old.item_tower.encoder.feature_layers[0].embeddings.numpy()
    assert "fresh" not in old_vocab

    # New log: one taste group (u0, u10, u20, u30: items i0/i1) now takes a new item
    # "fresh"; everyone keeps an old favourite.
    group = [0, 10, 20, 30]
    new_rows = [(f"u{u}", "fresh") for u in group for _ in range(3)]
    new_rows += [(f"u{u}", f"i{(u % 10) * 2 + k}") for u in range(40) if u % 10 < 8
                 for k in (0, 1) for _ in range(2)]  # 16 rows per old item, 12 for the new
    # (groups 8 and 9 are absent: their items i16..i19 are only in the old log)
    logs = []
    result = run(RecipeConfig.from_flat(interactions=_log(tmp_path / "new.csv", new_rows),
                              warm_start_from=str(tmp_path / "run1"),
                              **{**common, "model_dir": str(tmp_path / "run2")}),
                 log=logs.append)
    assert any("warm start: item_id: 1 new ids" in line for line in logs)
    # The feature tables printed are the kept model's (issue 13: kinds inferred from the
    # new files were printed), and the data line says what its counts are.
    assert any(line.startswith(f"user features (kept from {tmp_path / 'run1'})") for line in logs)
    assert any(line.startswith("item features (kept)") for line in logs)
    assert any("rows (exposures included" in line for line in logs if line.startswith("data:"))
    new = load_model(str(tmp_path / "run2"))
    new_vocab = list(new.item_tower.encoder.feature_layers[0].vocabulary)
    # Old ids keep their index (the new one is appended), so old rows stay aligned.
    assert new_vocab[: len(old_vocab)] == old_vocab and new_vocab[-1] == "fresh"
    assert new.item_tower.encoder.feature_layers[0].embeddings.shape[0] == old_table.shape[0] + 1
    # The new export serves the new item to the users who took it, and still knows the
    # old items that the new log never mentions (i16..i19 appear only in the old log).
    sig = tf.saved_model.load(result.export_path).signatures["serving_default"]
    others = [1, 2, 3, 5]
    users = group + others
    history = tf.constant([f"i{(u % 10) * 2}" for u in users])  # their old favourites
    out = sig(user_id=tf.constant([f"u{u}" for u in users]), history=history)["item_ids"]
    top3 = out.numpy().astype(str)[:, :3].tolist()
    assert all("fresh" in row for row in top3[:4])  # the group that took it: in its top 3
    assert sum("fresh" in row for row in top3[4:]) <= 1  # the other groups: mostly not
    item_sig = tf.saved_model.load(result.export_path).signatures["item_embedding"]
    assert item_sig(item_id=tf.constant(["i17"]))["embedding"].shape == (1, 64)
    catalogue = tf.saved_model.load(result.export_path).item_ids.numpy().astype(str)
    assert {"i17", "fresh"} <= set(catalogue.tolist())
