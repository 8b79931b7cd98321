"""Versioned export directories: atomic writes, retention, stale temporaries."""

import os
import socket

import pytest

from tfrecall.serving import versions


def write_marker(text):
    def write(tmp):
        with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
            f.write(text)
    return write


def test_versions_are_numbered_and_pruned_to_the_newest(tmp_path):
    base = str(tmp_path)
    paths = [versions.write_version(base, write_marker(str(i))) for i in range(4)]
    assert [os.path.basename(p) for p in paths] == ["1", "2", "3", "4"]
    os.mkdir(os.path.join(base, "notes"))  # non-numeric: not a version, never touched
    removed = versions.prune_versions(base, keep=2)
    assert sorted(os.path.basename(p) for p in removed) == ["1", "2"]
    assert versions.list_versions(base) == [3, 4]
    assert sorted(os.listdir(base)) == ["3", "4", "notes"]  # no hidden leftovers
    assert versions.prune_versions(base, keep=None) == []
    with pytest.raises(ValueError, match="keep_versions"):
        versions.prune_versions(base, keep=0)


def test_prune_never_deletes_the_version_just_written(tmp_path):
    base = str(tmp_path)
    for v in (5, 6, 7):
        versions.write_version(base, write_marker("x"), version=v)
    just = versions.write_version(base, write_marker("old number"), version=2)
    versions.prune_versions(base, keep=1, protect=just)
    # Newest is 7; 2 was just written; 5 and 6 go.
    assert versions.list_versions(base) == [2, 7]


def test_explicit_existing_version_is_refused_and_leaves_nothing(tmp_path):
    base = str(tmp_path)
    versions.write_version(base, write_marker("a"), version=1)
    with pytest.raises(ValueError, match="already exists"):
        versions.write_version(base, write_marker("b"), version=1)
    assert os.listdir(base) == ["1"]
    with open(os.path.join(base, "1", "saved_model.pb")) as f:
        assert f.read() == "a"
    with pytest.raises(ValueError, match="positive integer"):
        versions.write_version(base, write_marker("c"), version=0)


def test_failed_write_leaves_no_directory(tmp_path):
    def crash(tmp):
        write_marker("partial")(tmp)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        versions.write_version(str(tmp_path), crash)
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    host = socket.gethostname()
    dead_pid = 2**22 + 17  # above the default pid_max (4194304): never a live process
    stale = tmp_path / f".tmp-deadbeef-{dead_pid}@{host}"
    live = tmp_path / f".tmp-cafe0000-{os.getpid()}@{host}"
    other_host = tmp_path / f".tmp-deadbeef-{dead_pid}@not-{host}"
    for d in (stale, live, other_host):
        d.mkdir()
    removed = versions.remove_stale_temporaries(str(tmp_path))
    assert removed == [str(stale)]
    assert live.exists() and other_host.exists() and not stale.exists()
