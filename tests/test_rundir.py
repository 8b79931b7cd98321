"""tfrecall.rundir: usable paths, a model_dir's run, fingerprinted backups (no TensorFlow)."""

import json
import os

import pytest

from tfrecall import rundir


def test_writable_dir_names_the_argument_for_a_file_and_an_impossible_path(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"^export_dir '.*afile' is a file, not a directory"):
        rundir.writable_dir(str(afile), "export_dir")
    with pytest.raises(ValueError, match=r"^model_dir '.*afile/sub' cannot be created"):
        rundir.writable_dir(str(afile / "sub"), "model_dir")
    with pytest.raises(ValueError, match=r"^model_dir '/proc/x' cannot be created"):
        rundir.writable_dir("/proc/x", "model_dir")
    rundir.writable_dir(str(tmp_path / "new" / "dir"), "model_dir")
    assert (tmp_path / "new" / "dir").is_dir()


def test_file_fingerprint_follows_content_not_name_or_time(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("user_id,item_id\nu1,i1\n")
    b.write_text("user_id,item_id\nu1,i1\n")
    os.utime(b, (0, 0))
    assert rundir.file_fingerprint(str(a)) == rundir.file_fingerprint(str(b))
    b.write_text("user_id,item_id\nu1,i2\n")  # same size, one byte changed
    assert rundir.file_fingerprint(str(a)) != rundir.file_fingerprint(str(b))
    big = tmp_path / "big.csv"  # a change in the last MiB of a large file is seen too
    big.write_bytes(b"x" * (3 << 20))
    before = rundir.file_fingerprint(str(big))
    big.write_bytes(b"x" * ((3 << 20) - 1) + b"y")
    assert rundir.file_fingerprint(str(big)) != before
    assert rundir.data_fingerprint({"interactions": str(a), "users": None}) == {
        "interactions": rundir.file_fingerprint(str(a))}


def test_different_settings_reads_a_missing_setting_as_its_default():
    old = {"loss": "softmax", "epochs": 3, "verbose": 1}
    new = {"loss": "bpr", "epochs": 3, "verbose": 0, "patience": 2}
    assert rundir.different_settings(old, new, {"patience": 2}, ignore=("verbose",)) == [
        "loss: 'softmax' -> 'bpr'"]
    assert rundir.summarize(["a", "b", "c", "d", "e"]) == "a; b; c; and 2 more"


def _fake_backup(path, fingerprint):
    os.makedirs(path / "chief")
    (path / "chief" / "checkpoint").write_text("x")
    if fingerprint is not None:
        rundir.write_fingerprint(str(path), fingerprint)


def test_a_backup_resumes_only_under_its_own_fingerprint(tmp_path):
    mine = {"settings": {"learning_rate": 0.01}, "data": {"interactions": "abc"}}
    assert not rundir.check_backup(str(tmp_path / "none"), mine, "x")  # nothing to resume
    backup = tmp_path / "backup" / "search"
    _fake_backup(backup, mine)
    assert rundir.check_backup(str(backup), mine, str(tmp_path / "backup"))
    other = {"settings": {"learning_rate": 0.1}, "data": {"interactions": "def"}}
    with pytest.raises(ValueError) as e:
        rundir.check_backup(str(backup), other, str(tmp_path / "backup"))
    message = str(e.value)
    assert "\n" not in message
    assert "learning_rate: 0.01 -> 0.1" in message and "data file interactions" in message
    assert f"rm -r {tmp_path / 'backup'}" in message and "overwrite=True" in message


def test_a_backup_without_fingerprint_resumes_and_clear_removes_the_folders(tmp_path):
    backup = tmp_path / "backup" / "final"
    _fake_backup(backup, None)  # an older version's backup: it cannot be told apart
    assert rundir.check_backup(str(backup), {"settings": {}, "data": {}}, "x")
    (backup / "chief" / "checkpoint").unlink()
    (backup / "chief").rmdir()  # what Keras leaves once fit completes
    rundir.write_fingerprint(str(backup), {"settings": {}, "data": {}})
    assert json.loads((backup / rundir.FINGERPRINT_FILE).read_text()) == {
        "data": {}, "settings": {}}
    rundir.clear_backup(str(backup))
    assert not (tmp_path / "backup").exists()
