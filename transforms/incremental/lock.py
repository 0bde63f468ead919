"""One run at a time per output: OUTPUT/.lock, created exclusively, with a stale-lock rule.

Local disk: `os.open(O_CREAT | O_EXCL)`. gs://: an upload with `if_generation_match=0`, which the
store refuses (412) when the object exists. The lock holds host, pid, start time, a random token and the
runner; it is stale when older than the timeout, or when it was taken on this host by a process that is
gone (a run killed with SIGKILL) and that process was the job (the DirectRunner's). A job on another
runner outlives the process that launched it, so its lock goes stale only with age; its publish step
releases it. A stale lock is taken over by one run only: locally it is renamed away
first (one rename wins), on gs:// it is deleted with `if_generation_match` of the generation read.
Release deletes the lock only if it still holds this run's token.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Optional

from transforms import paths, storage

LOCK = ".lock"


class LockHeld(Exception):
    """Another run holds the lock; the message says who and what to do."""


def _holder_alive(holder: dict) -> bool:
    if holder.get("remote"):
        return True  # the launcher's pid says nothing about a job that runs elsewhere: only the age makes it stale
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell: only the age makes it stale
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def is_stale(holder: dict, timeout_hours: float, now: Optional[float] = None) -> bool:
    now = time.time() if now is None else now
    started = float(holder.get("started_at", 0))
    return now - started > timeout_hours * 3600 or not _holder_alive(holder)


def _message(path: str, holder: dict, timeout_hours: float) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("started_at", 0))))
    if holder.get("remote"):
        return (
            f"another run is writing this output (lock {path}: a job on {holder.get('runner')} launched from host "
            f"{holder.get('host')}, pid {holder.get('pid')}, started {started}); wait for it to finish. The job releases "
            f"the lock when it publishes; the lock goes stale only after --lock_timeout_hours ({timeout_hours:g}); "
            "delete the file only if that job is no longer running"
        )
    return (
        f"another run is writing this output (lock {path}: host {holder.get('host')}, pid {holder.get('pid')}, "
        f"started {started}); wait for it to finish. The lock goes stale after --lock_timeout_hours "
        f"({timeout_hours:g}) or, on the same host, when that process is gone; delete the file only if no run is active"
    )


def _content(token: str, runner: str, remote: bool) -> bytes:
    return json.dumps({
        "host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(), "token": token,
        "runner": runner, "remote": remote,
    }).encode()


def acquire(output: str, timeout_hours: float, runner: Optional[str] = None, remote: bool = False) -> str:
    """Take OUTPUT/.lock; returns this run's token. Raises LockHeld when a live run holds it.

    `remote`: the job runs on its runner's workers, not in this process (any runner but the DirectRunner), so
    this process's pid is no sign of it; `runner` names the runner in the lock, for the person it stops."""
    path = paths.join(output, LOCK)
    token = uuid.uuid4().hex
    content = _content(token, runner or "DirectRunner", remote)
    for _ in range(3):
        if storage.is_gcs(output):
            holder = _acquire_gcs(path, token, timeout_hours, content)
        else:
            holder = _acquire_local(output, path, token, timeout_hours, content)
        if holder is None:
            return token
        if not holder.get("_taken_over"):
            raise LockHeld(_message(path, holder, timeout_hours))
    raise LockHeld(f"could not take the lock {path}: other runs keep taking it")


def _acquire_local(output: str, path: str, token: str, timeout_hours: float, content: bytes) -> Optional[dict]:
    os.makedirs(output, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            with open(path, "rb") as handle:
                holder = json.loads(handle.read() or b"{}")
        except (FileNotFoundError, ValueError):
            holder = {"started_at": 0}  # released meanwhile, or cut short by a crash: try again / stale
        if not is_stale(holder, timeout_hours):
            return holder
        try:  # one rename wins; the loser tries again and finds the winner's fresh lock
            os.rename(path, f"{path}.stale-{token}")
            os.remove(f"{path}.stale-{token}")
        except FileNotFoundError:
            pass
        return {"_taken_over": True}
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    return None


def _acquire_gcs(path: str, token: str, timeout_hours: float, content: bytes) -> Optional[dict]:
    from google.api_core import exceptions

    bucket, name = storage.split_gcs_path(path)
    blob = storage.gcs_client().bucket(bucket).blob(name)
    try:
        storage.with_retries(lambda: blob.upload_from_string(content, if_generation_match=0, retry=None))
        return None
    except exceptions.PreconditionFailed:
        pass
    try:
        blob.reload()
        holder = json.loads(blob.download_as_bytes(if_generation_match=blob.generation) or b"{}")
    except exceptions.NotFound:
        return {"_taken_over": True}
    except ValueError:
        holder = {"started_at": 0}
    if not is_stale(holder, timeout_hours):
        return holder
    try:
        blob.delete(if_generation_match=blob.generation)
    except (exceptions.NotFound, exceptions.PreconditionFailed):
        pass
    return {"_taken_over": True}


def release(output: str, token: str) -> None:
    """Delete OUTPUT/.lock if this run still holds it; never raises (a leftover lock goes stale)."""
    path = paths.join(output, LOCK)
    try:
        if storage.is_gcs(output):
            bucket, name = storage.split_gcs_path(path)
            blob = storage.gcs_client().bucket(bucket).blob(name)
            blob.reload()
            if json.loads(blob.download_as_bytes()).get("token") == token:
                blob.delete(if_generation_match=blob.generation)
        else:
            with open(path, "rb") as handle:
                if json.loads(handle.read()).get("token") == token:
                    os.remove(path)
    except Exception:
        pass
