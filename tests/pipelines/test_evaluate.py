"""`python -m pipelines.evaluate`: the same metrics as training, a JSON file and a PNG plot."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, assert_one_line_error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tfrecall.recipe import RecipeConfig, run

    tmp = tmp_path_factory.mktemp("run")
    result = run(RecipeConfig.from_flat(synthetic_users=600, synthetic_items=300, epochs=2,
                              model_dir=str(tmp), index="brute_force", export_k=50,
                              baselines=("popularity",), verbose=0), log=lambda *_: None)
    return tmp, result


def test_evaluate_pipeline_reproduces_training_metrics_and_writes_report(trained,
                                                                         subprocess_env):
    model_dir, result = trained
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.evaluate", f"--model_dir={model_dir}",
         "--ks=10,50", "--baselines=popularity,itemcf"],
        cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "itemcf" in out.stdout and "popularity" in out.stdout
    report = json.loads((model_dir / "eval" / "evaluation.json").read_text())
    # Same split, same model weights: the same held-out figures as at the end of training.
    for key in ("recall@10", "recall@50", "num_pairs"):
        assert report["model"][key] == pytest.approx(result.metrics[key], abs=1e-6), key
    assert report["baselines"]["popularity"]["recall@50"] == pytest.approx(
        result.baselines["popularity"]["recall@50"], abs=1e-6)
    png = (model_dir / "eval" / "recall_at_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_evaluate_through_the_export_matches_exact_scoring(trained):
    from tfrecall.recipe import evaluate_trained

    model_dir, result = trained
    via_export = evaluate_trained(str(model_dir), ks=(10,), baselines=(),
                                  export_path=result.export_path)
    # Brute-force export with the exclusion signature: the same ranking as exact scoring,
    # training items excluded by the index, so the same figures. Ties aside: an item tied
    # at the K-th place may be ordered differently, which moves at most one pair per user.
    assert via_export.metrics["num_pairs"] == result.metrics["num_pairs"]
    one_pair = 1.0 / result.metrics["num_pairs"]
    # (MRR is left out: it reads the whole ranking, and the export returns its top 50.)
    for key in ("recall@10", "hit_rate@10", "ndcg@10"):
        assert via_export.metrics[key] == pytest.approx(result.metrics[key], abs=one_pair), key


def test_missing_model_dir_is_a_clear_error(tmp_path, subprocess_env):
    out = subprocess.run([sys.executable, "-m", "pipelines.evaluate",
                          f"--model_dir={tmp_path}/nope"], cwd=REPO, env=subprocess_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "recipe.json" in out.stderr and "Traceback" not in out.stderr


def _evaluate(args, env):
    return subprocess.run([sys.executable, "-m", "pipelines.evaluate", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_readme_evaluate_command_through_the_export_caps_k_with_a_note(trained, subprocess_env):
    # README: pipelines.evaluate --model_dir=... --export_path=.../export/1 with the default
    # ks (up to 200) failed, the export returning fewer (here 50); now capped with a note.
    model_dir, result = trained
    out = _evaluate([f"--model_dir={model_dir}", f"--export_path={result.export_path}",
                     "--baselines="], subprocess_env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "note: K [100, 200] exceed the items the export returns (50): capped at K=50" in (
        out.stdout)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert "recall@50" in summary["metrics"] and "recall@100" not in summary["metrics"]
    assert "cuInit" not in out.stderr and "Traceback" not in out.stderr


def test_bad_paths_are_one_line_errors_naming_the_flag(trained, tmp_path, subprocess_env):
    model_dir, result = trained
    base = os.path.dirname(result.export_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = _evaluate([f"--model_dir={model_dir}", f"--export_path={base}"], subprocess_env)
    assert_one_line_error(out, f"--export_path '{base}' is an export base directory",
                    f"e.g. {result.export_path}")
    out = _evaluate([f"--model_dir={model_dir}", f"--output_dir={afile}", "--baselines="],
                    subprocess_env)
    assert_one_line_error(out, f"--output_dir '{afile}' is a file, not a directory")


def test_evaluate_refuses_nothing_missing_and_other_runs(trained, tmp_path):
    from tfrecall.recipe import evaluate_trained

    model_dir, result = trained
    with pytest.raises(ValueError, match=r"^export_path '.*nope' does not exist"):
        evaluate_trained(str(model_dir), export_path=str(tmp_path / "nope"))
    # An export made by another run (issue 13: README's own-data run replaced the
    # model_dir while export/1 still held the synthetic model; every metric printed 0).
    other = tmp_path / "other"
    shutil.copytree(result.export_path, other)
    info_path = other / "assets.extra" / "tfrecall_export.json"
    info = json.loads(info_path.read_text())
    info["recipe"]["interactions"] = "events.csv"
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"was exported by a different run than model_dir .*"
                                         r"interactions: 'events.csv' -> None"):
        evaluate_trained(str(model_dir), ks=(10,), baselines=(), export_path=str(other))
    # Exact scoring: K above the 300-item catalogue is capped, with a note.
    exact = evaluate_trained(str(model_dir), ks=(10, 500), baselines=("popularity",))
    assert sorted(k for k in exact.metrics if k.startswith("recall@")) == [
        "recall@10", "recall@300"]
    assert exact.notes == ("note: K [500] exceed the catalogue's 300 items: capped at K=300 "
                           "(recall@300 ranks the whole catalogue)",)
    with pytest.raises(ValueError, match="baselines: unknown"):
        evaluate_trained(str(model_dir), baselines=("random",))


def test_a_backup_of_other_settings_is_not_resumed(trained, tmp_path):
    from tfrecall import rundir
    from tfrecall.recipe import load_recipe_config, run, run_fingerprint

    model_dir, _ = trained
    config = dataclasses.replace(load_recipe_config(str(model_dir)),
                                 model_dir=str(tmp_path / "run"))
    # Interrupted under learning_rate 0.1 (issue 13: a rerun with other flags resumed it).
    stale = run_fingerprint(dataclasses.replace(config, learning_rate=0.1))
    backup = tmp_path / "run" / "backup" / "search"
    (backup / "chief").mkdir(parents=True)
    (backup / "chief" / "checkpoint").write_text("x")
    rundir.write_fingerprint(str(backup), stale)
    with pytest.raises(ValueError) as e:
        run(config, log=lambda *_: None)
    assert "learning_rate: 0.1 -> 0.01" in str(e.value)
    assert f"rm -r {tmp_path / 'run' / 'backup'}" in str(e.value)
