"""A local run killed outright (SIGKILL, as the OOM killer does) takes its forked workers with it, and the
next run reclaims its spill folder."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from tests import image_factory as make
from tests.conftest import REPO
from transforms.local import spill

pytestmark = pytest.mark.slow

IMAGES = 400
OBJECT = "<object><name>thing</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"


def _dataset(root):
    """VOC annotations for IMAGES noisy 1200 x 900 JPEGs (8 distinct photos, hard-linked): a full decode of
    each keeps two writers busy for several seconds, and the folder costs 8 files of disk."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    photos = []
    for index in range(8):
        pixels = np.asarray(make.gradient(1200, 900)).astype(np.int16) + rng.integers(-40, 40, (900, 1200, 3))
        photo = root / f"photo{index}.jpg"
        photo.write_bytes(make.encode(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), "JPEG", quality=90))
        photos.append(photo)
    for index in range(IMAGES):
        os.link(photos[index % 8], root / "images" / f"{index}.jpg")
        (root / "annotations" / f"{index}.xml").write_text(
            f"<annotation><filename>{index}.jpg</filename>{OBJECT}</annotation>")
    return root


def _children() -> dict:
    """{pid: parent pid} of every process, read from /proc."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    stat = handle.read()
            except OSError:  # gone meanwhile
                continue
            parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> set:
    parents = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie (an exited process nobody reaped yet holds no files, no locks, no CPU)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_killing_the_launcher_kills_its_workers_and_frees_the_spill_folder(tmp_path, monkeypatch):
    data = _dataset(tmp_path / "data")
    temporary = tmp_path / "tmp"  # this run's own TMPDIR: its spill folder is the only one there
    temporary.mkdir()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "convert", "--format", "voc", "--annotations", str(data / "annotations"),
         "--images", str(data / "images"), "--output", str(tmp_path / "out"), "--validate_images", "full",
         "--num_shards", "4", "--local_processes", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temporary)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    workers: set = set()
    try:
        deadline = time.monotonic() + 20
        while len(workers) < 2 and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _descendants(launcher.pid)
        assert len(workers) >= 2, f"no forked workers seen (exit {launcher.poll()}): {launcher.stderr.read1().decode()[-2000:]}"
        time.sleep(0.5)  # at work
        workers |= _descendants(launcher.pid)
        (spilled,) = [name for name in os.listdir(temporary) if name.startswith(spill.FOLDER_PREFIX)]
        assert launcher.poll() is None, "the run ended before it could be killed: give it more work"

        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "forked workers outlived their launcher"

        monkeypatch.setattr(tempfile, "tempdir", str(temporary))
        # What the next run does first: remove the folders nobody holds. Workers forked after the sample
        # above (the writers' pool) die the same way; give the kernel a moment to close their files.
        deadline = time.monotonic() + 5
        while True:
            shutil.rmtree(spill.new_folder(), ignore_errors=True)
            if spilled not in os.listdir(temporary) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert spilled not in os.listdir(temporary)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in workers:  # without the fix they live on: end them here, not in the next test
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        launcher.stderr.close()
