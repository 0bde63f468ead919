"""OUTPUT/.lock: exclusive, refused while its holder lives, taken over when stale; local and gs://."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from transforms.incremental import lock


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_second_run_is_refused_until_the_first_releases(tmp_path):
    token = lock.acquire(str(tmp_path), 24)
    with pytest.raises(lock.LockHeld, match="another run is writing this output"):
        lock.acquire(str(tmp_path), 24)
    lock.release(str(tmp_path), "someone else's token")  # not ours to release
    assert (tmp_path / lock.LOCK).exists()
    lock.release(str(tmp_path), token)
    assert not (tmp_path / lock.LOCK).exists()
    lock.release(lock.acquire(str(tmp_path), 24) and str(tmp_path), "x")


def test_a_lock_of_a_dead_process_on_this_host_is_stale(tmp_path):
    holder = {"host": socket.gethostname(), "pid": _dead_pid(), "started_at": time.time(), "token": "old"}
    (tmp_path / lock.LOCK).write_text(json.dumps(holder))
    token = lock.acquire(str(tmp_path), 24)
    assert json.loads((tmp_path / lock.LOCK).read_text())["token"] == token


def test_an_old_lock_of_another_host_is_stale_a_young_one_is_not(tmp_path):
    holder = {"host": "other-host", "pid": 1, "started_at": time.time() - 3 * 3600, "token": "old"}
    (tmp_path / lock.LOCK).write_text(json.dumps(holder))
    with pytest.raises(lock.LockHeld, match="other-host"):
        lock.acquire(str(tmp_path), 4)
    lock.acquire(str(tmp_path), 2)


class _FakeBlob:
    """A GCS object with GCS's preconditions (gcp-storage-emulator ignores ifGenerationMatch, so it cannot
    show exclusivity): an upload with if_generation_match=0 fails when the object exists, and so on."""

    def __init__(self, store, name):
        self._store, self._name, self.generation = store, name, None

    def upload_from_string(self, data, if_generation_match=None, retry=None):
        from google.api_core import exceptions

        current = self._store.get(self._name)
        if if_generation_match is not None and (current[0] if current else 0) != if_generation_match:
            raise exceptions.PreconditionFailed("exists")
        self._store[self._name] = ((current[0] if current else 0) + 1, data)

    def reload(self):
        from google.api_core import exceptions

        if self._name not in self._store:
            raise exceptions.NotFound("gone")
        self.generation = self._store[self._name][0]

    def download_as_bytes(self, if_generation_match=None):
        return self._store[self._name][1]

    def delete(self, if_generation_match=None):
        from google.api_core import exceptions

        if if_generation_match is not None and self._store[self._name][0] != if_generation_match:
            raise exceptions.PreconditionFailed("changed")
        del self._store[self._name]


def test_gcs_lock_is_a_conditional_create(monkeypatch):
    from types import SimpleNamespace

    from transforms import storage

    store = {}
    bucket = SimpleNamespace(blob=lambda name: _FakeBlob(store, name))
    monkeypatch.setattr(storage, "gcs_client", lambda: SimpleNamespace(bucket=lambda name: bucket))
    output = "gs://bucket/out"
    token = lock.acquire(output, 24)
    with pytest.raises(lock.LockHeld, match="another run"):
        lock.acquire(output, 24)
    lock.release(output, "not ours")
    assert "out/.lock" in store
    lock.release(output, token)
    assert store == {}
    store["out/.lock"] = (7, json.dumps(
        {"host": socket.gethostname(), "pid": _dead_pid(), "started_at": time.time(), "token": "old"}).encode())
    token = lock.acquire(output, 24)  # stale: deleted with if_generation_match=7, then created again
    assert json.loads(store["out/.lock"][1])["token"] == token


def test_the_lock_records_the_runner_and_a_remote_jobs_lock_outlives_its_launcher(tmp_path):
    token = lock.acquire(str(tmp_path), 24, runner="FlinkRunner", remote=True)
    held = json.loads((tmp_path / lock.LOCK).read_text())
    assert held["runner"] == "FlinkRunner" and held["remote"] is True and held["token"] == token
    # its launcher gone (the job runs on the cluster and releases the lock when it publishes): still held
    held["pid"] = _dead_pid()
    (tmp_path / lock.LOCK).write_text(json.dumps(held))
    with pytest.raises(lock.LockHeld, match="a job on FlinkRunner launched from host .* goes stale only after"):
        lock.acquire(str(tmp_path), 24)
    assert json.loads((tmp_path / lock.LOCK).read_text())["token"] == token
    # only its age makes it stale
    held["started_at"] = time.time() - 3 * 3600
    (tmp_path / lock.LOCK).write_text(json.dumps(held))
    taken = lock.acquire(str(tmp_path), 2)
    assert json.loads((tmp_path / lock.LOCK).read_text()) | {"started_at": 0} == {
        "host": socket.gethostname(), "pid": os.getpid(), "started_at": 0, "token": taken, "runner": "DirectRunner",
        "remote": False}


def test_a_remote_jobs_lock_on_gcs_is_not_taken_over_for_a_gone_launcher(monkeypatch):
    from types import SimpleNamespace

    from transforms import storage

    store = {}
    bucket = SimpleNamespace(blob=lambda name: _FakeBlob(store, name))
    monkeypatch.setattr(storage, "gcs_client", lambda: SimpleNamespace(bucket=lambda name: bucket))
    store["out/.lock"] = (3, json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started_at": time.time(),
                                         "token": "job", "runner": "DataflowRunner", "remote": True}).encode())
    with pytest.raises(lock.LockHeld, match="a job on DataflowRunner"):
        lock.acquire("gs://bucket/out", 24)
    assert json.loads(store["out/.lock"][1])["token"] == "job"
