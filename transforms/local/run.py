"""A run on this machine: the runtime (transforms/beam/runtime.py) that the local runner's steps get."""
from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from transforms.beam.runtime import Runtime
from transforms.local.ahead import ClaimingWorkers, ahead_for
from transforms.local.pool import ForkedWorkers, grpc_threads_alive
from transforms.local.progress import ProgressNotes
from transforms.local.spill import Spill


@dataclasses.dataclass(frozen=True)
class LocalRun(Runtime):
    """Metadata spilled to `spill_dir`, the parse and write steps on `processes` forked workers (1: in
    place), progress noted in `progress_dir` for the launcher's progress line; the tasks parsed ahead
    claimed (transforms/local/ahead.py)."""

    spill_dir: str
    progress_dir: Optional[str] = None
    processes: int = 1

    @property
    def exchange(self) -> Spill:
        return Spill(self.spill_dir)

    def workers(self, dofn):
        ahead = ahead_for(self.spill_dir)
        if ahead is not None and ahead.parses(dofn):
            return ClaimingWorkers(dofn, ahead, lambda: self._own_workers(dofn))
        return self._own_workers(dofn)

    def _own_workers(self, dofn):
        if self.processes <= 1:
            return super().workers(dofn)
        if grpc_threads_alive():
            logging.getLogger(__name__).warning(
                "gRPC runs threads in this process, and a fork could hang in its fork handler: %s runs in place, "
                "on one core", type(dofn).__name__)
            return super().workers(dofn)
        return ForkedWorkers(dofn, self.processes)

    def notes(self) -> ProgressNotes:
        return ProgressNotes(self.progress_dir)
