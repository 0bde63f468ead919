"""The graph every runner but the DirectRunner gets (no spill folder, no forked processes), run for real.

Beam's job service and an external worker pool, both started here on 127.0.0.1, play a Flink or Spark
cluster's part: the launcher submits the job to the service, which has the pool start SDK worker
processes, and the work runs there. The FnApiRunner named by class with two worker processes runs the
same graph on this machine. Every file each run publishes must equal the local runner's byte for byte.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SUBSET = 120  # images of the first incremental run; the second adds the rest of the 200
# summary.json's config entries that name how the run was run, not what it wrote
RUN_SETTINGS = {"allow_local_paths"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(pid: int) -> List[int]:
    found = []
    for listing in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            children = [int(child) for child in Path(listing).read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _ticks_and_written(pid: int):
    """CPU ticks (user + system) and bytes written of a process; an exited child not yet reaped keeps both."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields[11]) + int(fields[12]), int(io["wchar"])


class ChildWatch(threading.Thread):
    """The processes `parent` and its descendants start while the watch runs: executable, command line, CPU ticks and bytes
    written, sampled every 20 ms and read once more when it stops."""

    def __init__(self, parent: int):
        super().__init__(daemon=True)
        self.parent, self.before, self.seen = parent, set(_descendants(parent)), {}
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            self._sample()
            self._done.wait(0.02)

    def _sample(self):
        for pid in set(_descendants(self.parent)) - self.before:
            info = self.seen.setdefault(pid, {"exe": None, "cmdline": "", "ticks": 0, "written": 0})
            try:
                # read at every sample: one first seen between its fork and its exec still shows its parent's
                exe = os.path.realpath(os.readlink(f"/proc/{pid}/exe"))  # raises once it has exited
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                if cmdline:  # empty once it has exited
                    info["exe"], info["cmdline"] = exe, cmdline
                ticks, written = _ticks_and_written(pid)
                info["ticks"], info["written"] = max(info["ticks"], ticks), max(info["written"], written)
            except (OSError, ValueError, IndexError):
                pass  # gone between the listing and the read

    def stop(self) -> Dict[int, dict]:
        self._done.set()
        self.join()
        self._sample()
        return self.seen


def _convert(annotations, images, output, *extra, watch=None):
    """The real CLI in a new process; with `watch` (a pid, or "launcher"), the processes that pid starts meanwhile."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "convert", "--format", "voc", "--annotations", str(annotations),
         "--images", str(images), "--output", str(output), *map(str, extra)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watcher = ChildWatch(process.pid if watch == "launcher" else watch) if watch else None
    if watcher:
        watcher.start()
    try:
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
        seen = watcher.stop() if watcher else {}
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err[-4000:]}"
    return out, seen


def _published(output: Path) -> Dict[str, bytes]:
    """Every file of OUTPUT; summaries and the manifest without durations and run settings, run logs by order."""
    files = {}
    for path in sorted(output.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(output))] = path.read_bytes()
    runs = sorted(name for name in files if name.startswith("runs/"))
    for index, name in enumerate(runs):
        files[f"runs/{index}"] = files.pop(name)
    for name in ["summary.json", "manifest.json", *[f"runs/{index}" for index in range(len(runs))]]:
        if name in files:
            record = json.loads(files[name])
            record.pop("durations", None)
            for key in RUN_SETTINGS:
                record["config"].pop(key, None)
            files[name] = json.dumps(record, sort_keys=True).encode()
    return files


def _assert_same(expected: Dict[str, bytes], got: Dict[str, bytes]):
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if got[name] != expected[name]]
    assert not different, f"differ from the local run: {different}"


def _shard_bytes(output: Path, before=()) -> int:
    return sum(path.stat().st_size for path in output.glob("*.tfrecord-*") if path.name not in before)


def _subset(raccoon: Path, folder: Path, count=None) -> tuple:
    """annotations/ and images/ holding the first `count` raccoon images (all when None), as copies."""
    annotations, images = folder / "annotations", folder / "images"
    annotations.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    for xml in sorted((raccoon / "annotations").glob("*.xml"))[:count]:
        shutil.copy(xml, annotations / xml.name)
        image = raccoon / "images" / f"{xml.stem}.jpg"
        if image.exists():
            shutil.copy(image, images / image.name)
    return annotations, images


def _wait_listening(port: int, process: subprocess.Popen, log: Path, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{process.args} did not listen on 127.0.0.1:{port} within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """Beam's job service and an external worker pool on free 127.0.0.1 ports, each in its own process group,
    killed whole however the tests end. The pool starts each SDK worker as `python -c ...` found on PATH;
    a `python` that is this interpreter comes first on its PATH, so the workers run the tests' Python."""
    folder = tmp_path_factory.mktemp("services")
    interpreter = folder / "bin" / "python"
    interpreter.parent.mkdir()
    interpreter.symlink_to(sys.executable)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{interpreter.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    job_port, pool_port = _free_port(), _free_port()
    commands = {
        "job_service": ([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                         "--port", str(job_port)], job_port),
        "worker_pool": ([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                         "--service_port", str(pool_port)], pool_port),
    }
    started = []
    try:
        for name, (command, port) in commands.items():
            log = folder / f"{name}.log"
            with open(log, "wb") as handle:
                process = subprocess.Popen(command, env=env, cwd=folder, stdout=handle, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            started.append(process)
            _wait_listening(port, process, log)
        yield {"job_port": job_port, "pool_port": pool_port, "pool_pid": started[1].pid, "folder": folder}
    finally:
        for process in started:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)  # the pool's SDK workers are in its group
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue


@pytest.fixture(scope="module")
def local_reference(raccoon, tmp_path_factory):
    """The local runner's output for the full raccoon set, written where the other runs write theirs."""
    folder = tmp_path_factory.mktemp("reference")
    output = folder / "out"
    _convert(raccoon / "annotations", raccoon / "images", output)
    published = _published(output)
    shutil.rmtree(output)
    return output, published


def _portable(services) -> List[str]:
    return ["--runner", "PortableRunner", "--job_endpoint", f"localhost:{services['job_port']}",
            "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{services['pool_port']}",
            "--allow_local_paths"]


def _assert_ran_in_sdk_workers(seen: Dict[int, dict], output: Path, before=(), command="SdkHarness", at_least=1):
    """SDK worker processes of this interpreter did the work: together they wrote at least the run's shard bytes."""
    workers = {pid: info for pid, info in seen.items()
               if command in info["cmdline"] and not info["cmdline"].startswith("/bin/sh")}  # not the shell starting one
    assert len(workers) >= at_least, f"no SDK worker process ran: {seen}"
    for info in workers.values():
        assert info["exe"] == os.path.realpath(sys.executable), info
    shards = _shard_bytes(output, before)
    assert shards > 0
    assert sum(info["written"] for info in workers.values()) >= shards, (shards, workers)
    assert sum(info["ticks"] for info in workers.values()) > 0, workers
    return workers


def test_a_portable_job_on_an_external_worker_pool_writes_the_local_runs_bytes(raccoon, portable_services, local_reference, tmp_path):
    output, expected = local_reference
    out, seen = _convert(raccoon / "annotations", raccoon / "images", output, *_portable(portable_services),
                         watch=portable_services["pool_pid"])
    assert "Wrote 200 of 200 images" in out
    _assert_ran_in_sdk_workers(seen, output)
    assert not (output / ".lock").exists()  # the job's publish released it
    _assert_same(expected, _published(output))
    shutil.rmtree(output)

    # --incremental, twice, images added between; the same folders for both runners, so paths match too
    data, output = tmp_path / "data", tmp_path / "out"
    results = {}
    for mode, extra, watch in (("local", [], None), ("portable", _portable(portable_services), portable_services["pool_pid"])):
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(output, ignore_errors=True)
        annotations, images = _subset(raccoon, data, SUBSET)
        states = []
        for step in range(2):
            if step:
                _subset(raccoon, data)
            before = {path.name for path in output.glob("*.tfrecord-*")}
            out, seen = _convert(annotations, images, output, "--incremental", *extra, watch=watch)
            assert f"incremental run {step + 1}: {SUBSET if not step else 200 - SUBSET} new" in out, out
            if watch:
                _assert_ran_in_sdk_workers(seen, output, before)
            states.append(_published(output))
        results[mode] = states
    for local, portable in zip(results["local"], results["portable"]):
        _assert_same(local, portable)


def test_the_fnapi_runner_with_two_worker_processes_writes_the_local_runs_bytes(raccoon, local_reference):
    from pipeline.local_runner import is_local_runner

    assert not is_local_runner("FnApiRunner")  # so it gets the graph other runners get: no spill folder, no forks
    output, expected = local_reference
    out, seen = _convert(raccoon / "annotations", raccoon / "images", output, "--runner", "FnApiRunner",
                         "--direct_running_mode", "multi_processing", "--direct_num_workers", "2", watch="launcher")
    assert "Wrote 200 of 200 images" in out
    workers = _assert_ran_in_sdk_workers(seen, output, command="sdk_worker_main", at_least=2)
    assert all(info["ticks"] > 0 for info in workers.values())
    _assert_same(expected, _published(output))
    shutil.rmtree(output)
