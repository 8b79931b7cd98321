"""`python -m pipelines.evaluate`: the same metrics as training, a JSON file and a PNG plot."""

import json
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tfrecall.recipe import RecipeConfig, run

    tmp = tmp_path_factory.mktemp("run")
    result = run(RecipeConfig(synthetic_users=600, synthetic_items=300, epochs=2,
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
    # Brute-force export: the same ranking as exact scoring, minus the training items the
    # export cannot exclude unless it has the exclusion signature, so never higher.
    assert via_export.metrics["num_pairs"] == result.metrics["num_pairs"]
    assert via_export.metrics["recall@10"] <= result.metrics["recall@10"] + 1e-9
    assert via_export.metrics["recall@10"] > 0.5 * result.metrics["recall@10"]


def test_missing_model_dir_is_a_clear_error(tmp_path, subprocess_env):
    out = subprocess.run([sys.executable, "-m", "pipelines.evaluate",
                          f"--model_dir={tmp_path}/nope"], cwd=REPO, env=subprocess_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "recipe.json" in out.stderr and "Traceback" not in out.stderr
