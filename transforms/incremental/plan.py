"""What an incremental run's workers are given of the published state: a few fields, whatever its history.

Each shard's writer gets its shard's index part path with its shard's marker (`shard_markers`), and a
writer that rewrites live files looks their names up in OUTPUT/manifest.json itself; both check that the
manifest is still the one the command started from.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from transforms import paths
from transforms.incremental import manifest as state

ALL_SHARDS = "shards"  # one marker per shard, so every shard's writer runs: incremental runs (deletions), spilled runs


@dataclasses.dataclass(frozen=True)
class IncrementalPlan:
    """What a shard writer of an incremental run needs to find the published state: a few fields, whatever
    the dataset's history. Each writer gets its shard's index part path with its shard's marker
    (`shard_markers`), and a writer that rewrites live files looks their names up in the manifest itself."""

    run: int
    output: str
    previous_run: Optional[int]  # the published manifest's run this one extends; None: a first run (or --resplit)
    update_changed: bool

    def live_paths(self, file_ids) -> Dict[str, Tuple[str, str]]:
        """file id -> (file name, path) of these live shard files, read from OUTPUT/manifest.json."""
        names = state.live_file_names(self.output, self.previous_run, file_ids)
        return {file_id: (name, paths.join(self.output, name)) for file_id, name in names.items()}


def shard_markers(num_shards: int, plan: Optional[IncrementalPlan] = None):
    """(shard, marker) for every shard, so each shard's writer runs. In an incremental run over a published
    dataset the marker is that shard's index part path (None: no image of it ingested yet), from
    OUTPUT/manifest.json read here, on a worker: the job carries no list of them."""
    if plan is None or plan.previous_run is None:
        return [(shard, None if plan else True) for shard in range(num_shards)]
    published = state.read_published(plan.output, plan.previous_run)
    return [(shard, paths.join(plan.output, part) if part else None) for shard, part in enumerate(published["index"])]


def index_part_path(grouped) -> Optional[str]:
    """The index part path a shard's markers carry (see `shard_markers`)."""
    return next((marker for marker in grouped.get(ALL_SHARDS, ()) if isinstance(marker, str)), None)


@dataclasses.dataclass(frozen=True)
class IncrementalRun:
    """What an incremental run's graph needs of the published state, read by the command under the lock."""

    plan: IncrementalPlan  # what the writers and the duplicate hasher get
    index_shards: Optional[int]  # the published index's shard count, which never changes (None: a first run, --resplit)
    seed: int
    run_log: str  # where publish writes this run's summary, also when nothing changed

    @property
    def run(self) -> int:
        return self.plan.run

    @property
    def previous_run(self) -> Optional[int]:
        """The published manifest's run this one extends: publish reads it again and checks it still is."""
        return self.plan.previous_run

    @property
    def update_changed(self) -> bool:
        return self.plan.update_changed
