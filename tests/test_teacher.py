"""EASE as a teacher: top-N unseen lists against a by-hand EASE in numpy, and the rows
`EaseTeacher.augment` adds."""

import numpy as np
import pytest

import tfrecall  # noqa: F401  (Keras 2 before TensorFlow)
from tfrecall.io.schema import RecallData
from tfrecall.recipe.teacher import EaseTeacher, teacher_top_lists


def _log(pairs, extra_negative=()):
    rows = [(u, i, True) for u, i in pairs] + [(u, i, False) for u, i in extra_negative]
    users, items, pos = zip(*rows, strict=True)
    return RecallData({
        "user_id": np.asarray(users, dtype=object),
        "item_id": np.asarray(items, dtype=object),
        "label": np.asarray([1.0 if p else 0.0 for p in pos], np.float32),
        "positive": np.asarray(pos, bool),
        "timestamp": np.arange(len(rows), dtype=np.int64),
        "request_id": np.asarray([f"r{k}" for k in range(len(rows))], dtype=object),
    }, name="log")


def _reference_ease_top(x: np.ndarray, l2: float, n: int):
    """Steck 2019 eq. 8 directly: B = I - P diag(P)^-1, P = (X^T X + l2 I)^-1; per user
    the n best unseen items (ties: lower index), by plain Python sorting."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    scores = x @ b
    out = []
    for u in range(x.shape[0]):
        unseen = [j for j in range(x.shape[1]) if x[u, j] == 0]
        unseen.sort(key=lambda j: (-scores[u, j], j))
        out.append(unseen[:n])
    return out


def test_teacher_top_lists_masks_seen_and_pads():
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0]])
    top = teacher_top_lists(scores, np.array([0, 1, 1, 1]), np.array([1, 3, 2, 1]), 3)
    assert top.tolist() == [[2, 3, 0], [0, -1, -1]]


@pytest.mark.parametrize("l2", [0.5, 3.0])
def test_augment_adds_ease_top_n_of_the_fit_split(l2):
    rng = np.random.default_rng(0)
    num_users, num_items, n = 7, 9, 3
    x = (rng.random((num_users, num_items)) < 0.35).astype(float)
    x[:, 0] = 1.0  # every user has a positive
    x[0, :] = 1.0  # user 0 has seen everything: no teacher rows
    x[1, :] = 0.0
    x[1, 4] = 1.0
    user_ids = np.asarray([f"u{u}" for u in range(num_users)], dtype=object)
    catalogue = np.asarray([f"i{j}" for j in range(num_items)], dtype=object)
    pairs = [(user_ids[u], catalogue[j]) for u, j in zip(*np.nonzero(x), strict=True)]
    fit = _log(pairs, extra_negative=[("u1", "i5")])  # an exposure is not a positive
    teacher = EaseTeacher(n, l2=l2)
    out = teacher.augment(fit, user_ids, catalogue, log=lambda *a: None)

    want = _reference_ease_top(x, l2, n)
    inter = out.interactions
    added = np.arange(out.num_interactions) >= fit.num_interactions
    assert inter["positive"][added].all()
    assert set(inter["event"][added].tolist()) == {"teacher"} if "event" in inter else True
    got = {}
    for u, i in zip(inter["user_id"][added].tolist(), inter["item_id"][added].tolist(),
                    strict=True):
        got.setdefault(u, []).append(int(i[1:]))
    for u in range(num_users):
        assert got.get(user_ids[u], []) == want[u], u
    # The real rows are kept as they were, the added ones carry filler columns.
    for name, col in fit.interactions.items():
        np.testing.assert_array_equal(inter[name][:fit.num_interactions], col)
    assert (inter["timestamp"][added] == fit.num_interactions - 1).all()
    assert all(r.startswith("teacher:") for r in inter["request_id"][added].tolist())


def test_prepare_chooses_lambda_on_training_split_only():
    rng = np.random.default_rng(1)
    pairs = [(f"u{u}", f"i{j}") for u in range(30) for j in range(20) if rng.random() < 0.3]
    train = _log(pairs)
    user_ids = train.user_ids()
    catalogue = train.item_catalogue()
    teacher = EaseTeacher(2).prepare(train, user_ids, catalogue, log=lambda *a: None)
    assert teacher.l2 in (10.0, 10 ** 1.5, 100.0, 10 ** 2.5, 1000.0, 10 ** 3.5, 10000.0)
    with pytest.raises(ValueError, match="top_n"):
        EaseTeacher(0)


def test_teacher_settings_are_checked():
    from tfrecall.recipe import RecipeConfig

    with pytest.raises(ValueError, match="teacher_ratio must be >= 0"):
        RecipeConfig(teacher_ratio=-1.0)
    with pytest.raises(ValueError, match="teacher_top_n must be >= 0"):
        RecipeConfig(teacher_top_n=-1)


def test_a_catalogue_over_the_ease_budget_is_a_clear_error():
    user_ids = np.asarray(["u0", "u1"], dtype=object)
    catalogue = np.asarray(["a", "b", "c"], dtype=object)
    train = _log([("u0", "a"), ("u0", "b"), ("u1", "b"), ("u1", "c")])
    with pytest.raises(ValueError, match="the teacher needs EASE, which does not fit"):
        EaseTeacher(2, max_bytes=8).prepare(train, user_ids, catalogue, log=lambda *a: None)


def test_resolve_teacher_modes():
    from tfrecall.recipe import RecipeConfig
    from tfrecall.recipe.teacher import resolve_teacher

    train = _log([(f"u{u}", f"i{(u + j) % 6}") for u in range(8) for j in range(3)])
    args = (train, train.user_ids(), train.item_catalogue())
    lines = []
    for config, has_validation in ((RecipeConfig(teacher="off"), True),
                                   (RecipeConfig(teacher_top_n=0), True),
                                   (RecipeConfig(teacher_top_n=0, teacher="on"), True)):
        assert resolve_teacher(config, *args, has_validation, log=lines.append) == ("off", None)
    assert lines == []
    # auto: nothing to choose on without a validation slice, or EASE over its budget
    assert resolve_teacher(RecipeConfig(), *args, False, log=lines.append) == ("off", None)
    assert "has none" in lines[-1]
    assert resolve_teacher(RecipeConfig(), *args, True, log=lines.append,
                           max_bytes=8) == ("off", None)
    assert "over its budget" in lines[-1]
    listwise = RecipeConfig.from_flat(view="listwise", loss="softmax")
    assert resolve_teacher(listwise, *args, True, log=lines.append) == ("off", None)
    assert "this run's view is listwise" in lines[-1]
    with pytest.raises(ValueError, match="the teacher needs EASE"):  # on: the user asked
        resolve_teacher(RecipeConfig(teacher="on"), *args, True, log=lines.append, max_bytes=8)
    for mode in ("auto", "on"):
        got, teacher = resolve_teacher(RecipeConfig(teacher=mode), *args, True, log=lines.append)
        assert got == mode and teacher.top_n == 20 and teacher.ratio == 0.2
        assert teacher.l2 is not None  # prepared: lambda chosen on the training split
    # The budget counts users and items with training positives, as EASE's fit does: a
    # catalogue of 200 more items never positive (8 x 206: 27,904 bytes by hand, against
    # 864 for the 8 x 6 active) stays within a 5,000-byte budget.
    from tfrecall.evaluation.baselines import EASE
    assert EASE.memory_bytes(8, 6) == 864 and EASE.memory_bytes(8, 206) == 27904
    wide = np.concatenate([args[2], np.asarray([f"x{j}" for j in range(200)], object)])
    got, teacher = resolve_teacher(RecipeConfig(), train, args[1], wide, True,
                                   log=lines.append, max_bytes=5000)
    assert got == "auto" and teacher.l2 is not None
    with pytest.raises(ValueError, match="teacher"):
        RecipeConfig(teacher="sometimes")


@pytest.mark.parametrize("world", ["default", "longtail"])
def test_auto_teacher_keeps_the_better_search_and_trains_the_final_stage_with_it(
        tmp_path, world, monkeypatch):
    """teacher=auto: two search stages; the final stage trains with EASE's lists exactly
    when their search reached the better validation recall, and the run reports the
    chosen search's curve. EASE's lambda grid runs once: the EASE baseline reuses the
    teacher's choice, and reports what it reports choosing on its own."""
    from tfrecall.evaluation import baselines, harness
    from tfrecall.recipe import RecipeConfig, run, teacher
    from tfrecall.recipe.prepare import prepare

    grids = []

    def counted(*args, **kwargs):
        grids.append(kwargs.get("k"))
        return baselines.select_ease_l2(*args, **kwargs)

    monkeypatch.setattr(teacher, "select_ease_l2", counted)
    monkeypatch.setattr(harness, "select_ease_l2", counted)
    config = RecipeConfig.from_flat(
        synthetic_world=world, synthetic_users=300, synthetic_items=200, epochs=3,
        patience=1, export=False, baselines=("ease",), verbose=0,
        model_dir=str(tmp_path / "run"))
    lines = []
    result = run(config, log=lines.append)
    assert grids == [100]
    monkeypatch.undo()
    alone = harness.evaluate_ease(prepare(config).eval_set, config.ks)
    assert result.baselines["ease"] == alone
    assert any(line.endswith("the teacher's choice)") for line in lines)
    choice = result.teacher
    best = choice["best_validation"]
    assert choice["used"] == (best["with"] > best["without"])
    assert round(max(result.validation_curve), 5) == max(best.values())
    taught = [line for line in lines if "EASE positives" in line]
    assert len(taught) == 1 + choice["used"]  # the teacher's search, and the final stage
    assert any(line.startswith(f"teacher: {'on' if choice['used'] else 'off'} (auto")
               for line in lines)
    summary = result.summary_json()
    assert summary["teacher"] == choice
