"""Crash safety: SIGKILL pipelines.train mid-run, run the same command again, it resumes."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, start_until


@pytest.mark.slow
def test_hard_kill_then_same_command_resumes_from_last_epoch(tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipelines.train", f"--model_dir={model_dir}", "--epochs=8",
           "--validation_fraction=0", "--noexport", "--baselines=popularity", "--verbose=0"]
    # Without a validation slice one stage ("final") trains, with its own folders.
    proc = start_until(cmd, subprocess_env, model_dir / "checkpoints" / "final" / "ckpt-002.index",
                       start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill: no cleanup, no atexit
    proc.wait(timeout=60)
    assert (model_dir / "backup").is_dir(), "no backup left behind to resume from"

    out = subprocess.run(cmd, cwd=REPO, env=subprocess_env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming from the backup" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("resumed: trained epochs"))
    first = int(line.split("epochs ")[1].split("..")[0])
    assert 3 <= first <= 8 and line.endswith("..8")
    assert (model_dir / "checkpoints" / "final" / "ckpt-008.index").exists()
    backup = model_dir / "backup"
    assert not backup.exists() or not any(backup.iterdir())  # emptied once fit completed
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    m, pop = summary["metrics"], summary["baselines"]["popularity"]
    assert m["recall@100"] > pop["recall@100"]  # a healthy model, not a fresh one


def _state(model):
    from tfrecall._backend import tf

    """Every model weight and optimizer variable (slots and iteration count), by name."""
    # Slots are created at the first step; build them now, so a deferred restore fills them.
    model.optimizer.build(model.trainable_variables)
    def key(i, v):  # without the model's own name, which Keras numbers per process
        return f"{i}/" + v.name.replace(model.name + "/", "")

    state = {"model/" + key(i, v): v.numpy() for i, v in enumerate(model.weights)
             if isinstance(v, tf.Variable)}  # (lookup tables are data, not state)
    state.update({"optimizer/" + key(i, v): v.numpy()
                  for i, v in enumerate(model.optimizer.variables())})
    return state


@pytest.mark.slow
def test_resume_restores_weights_and_optimizer_slots_bit_for_bit(tmp_path, monkeypatch):
    # The recipe's own training stage, crashed right after epoch 2's backup, then run again:
    # the state the second run starts from is the state the first run had, exactly.
    from tfrecall._backend import keras
    from tfrecall.recipe import RecipeConfig, run

    saved, restored = {}, {}
    board = keras.callbacks.TensorBoard

    class CrashAfterEpoch2(board):  # after BackupAndRestore and ModelCheckpoint in the list
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                saved.update(_state(self.model))
                raise RuntimeError("crash")
            super().on_epoch_end(epoch, logs)

    class CaptureStart(board):
        def on_train_begin(self, logs=None):  # BackupAndRestore has restored by now
            restored.update(_state(self.model))
            super().on_train_begin(logs)

    config = RecipeConfig.from_flat(synthetic_users=300, synthetic_items=150, epochs=4,
                                    validation_fraction=0, export=False, baselines=(),
                                    model_dir=str(tmp_path / "run"), verbose=0)
    monkeypatch.setattr(keras.callbacks, "TensorBoard", CrashAfterEpoch2)
    logs = []
    with pytest.raises(RuntimeError, match="crash"):
        run(config, log=logs.append)
    monkeypatch.setattr(keras.callbacks, "TensorBoard", CaptureStart)
    run(config, log=lambda *_: None)
    assert sorted(saved) == sorted(restored) and len(saved) > 10
    assert sum(k.startswith("optimizer/") and "/m/" in k for k in saved) >= 8  # Adam's slots
    for name, value in saved.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    # Two whole epochs of optimizer steps were taken, and are what resumes.
    batches = int(re.search(r"batches/epoch=(\d+)", "\n".join(map(str, logs)))[1])
    iterations = [v for k, v in saved.items() if k.startswith("optimizer/0/")]
    assert iterations == [2 * batches], (iterations, batches)
