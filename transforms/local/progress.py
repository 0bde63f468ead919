"""Progress a person can watch on a local run: each worker writes its own running counts to a file.

Beam's DirectRunner shows no metrics until a run ends, so the parse and write steps also note how far
they are, every few seconds, in one small file per worker in a local folder that the launcher reads
(pipeline/progress.py). On Dataflow there is no such folder: its UI shows the Beam counters instead.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from typing import Dict, Optional

FLUSH_SECONDS = 2.0


class ProgressNotes:
    """Running counts of one worker (e.g. {"parsed": 1200, "written": 800}), flushed every few seconds."""

    def __init__(self, folder: Optional[str]):
        self._folder = folder
        self._start()

    def _start(self) -> None:
        self._path = os.path.join(self._folder, f"{uuid.uuid4().hex}.json") if self._folder else None
        self._pid = os.getpid()
        self._counts: Counter = Counter()
        self._flushed_at = time.monotonic()

    def add(self, kind: str, n: int = 1) -> None:
        if self._path is None:
            return
        if os.getpid() != self._pid:  # a forked worker (transforms.local.pool) keeps notes of its own
            self._start()
        self._counts[kind] += n
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._path is None or not self._counts:
            return
        partial = self._path + ".partial"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(self._counts, handle)
        os.replace(partial, self._path)  # a reader never sees half a file
        self._flushed_at = time.monotonic()


def read_progress(folder: str) -> Dict[str, int]:
    """The counts of every worker in `folder`, added up."""
    total: Counter = Counter()
    for name in os.listdir(folder):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                total.update(json.load(handle))
        except (OSError, ValueError):  # replaced while we read it: next time
            continue
    return dict(total)
