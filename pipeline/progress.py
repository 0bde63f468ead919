"""The progress line of a local run: images parsed, then written, with images/s and the time left."""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import Optional, TextIO

from transforms.local.progress import read_progress
from transforms.local.spill import new_held_folder

EVERY_SECONDS = 5.0
FOLDER_PREFIX = "od-tfrecords-progress-"


def format_progress(counts: dict, written_per_second: Optional[float]) -> str:
    parsed, written = counts.get("parsed", 0), counts.get("written", 0)
    if not written:
        return f"progress: {parsed:,} images parsed"
    share = min(100.0, 100 * written / max(parsed, 1))  # unannotated negatives (YOLO) may add a few
    line = f"progress: {written:,} of {parsed:,} images written ({share:.0f}%)"
    if written_per_second:
        left = max(parsed - written, 0) / written_per_second
        line += f", {written_per_second:,.0f} images/s, about {_duration(left)} left"
    return line


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressLine:
    """A thread that prints the workers' progress notes every few seconds while the run lasts.

    The workers write their notes into `folder`, a temporary folder removed at the end. A run killed
    outright cannot remove it, so the folder is held as the spill folder is (transforms/local/spill.py): an
    flock on its owner file, released by the kernel when the run's last process exits, and a new
    progress line first removes the folders nobody holds.
    """

    def __init__(self, stream: TextIO = sys.stderr, every: float = EVERY_SECONDS):
        self.folder, self._owner = new_held_folder(FOLDER_PREFIX)
        self._stream = stream
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> "ProgressLine":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._owner)

    def _run(self) -> None:
        first_written = None  # (time, count) when writing was first seen: the rate excludes the parse
        while not self._stop.wait(self._every):
            counts = read_progress(self.folder)
            if not counts:
                continue
            now, written = time.monotonic(), counts.get("written", 0)
            if written and first_written is None:
                first_written = (now, written)
            rate = None
            if first_written and now > first_written[0] and written > first_written[1]:
                rate = (written - first_written[1]) / (now - first_written[0])
            print(format_progress(counts, rate), file=self._stream, flush=True)
