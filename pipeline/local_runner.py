"""The DirectRunner's parallelism, chosen from the CPU count and the size of the job.

Beam's DirectRunner runs everything in one process by default, which leaves all but one core idle.
Its multi_processing mode runs one worker process per core, but each worker costs seconds of start-up
(it imports Beam and this package), which a small dataset never earns back. So, unless the user chose
--direct_running_mode or --direct_num_workers, a local run of at least PARALLEL_FROM_IMAGES images
gets one worker process per core (measured; see the README's performance section).
"""
from __future__ import annotations

import os
from typing import List, Sequence

from transforms import storage
from transforms.read import IMAGE_EXTENSIONS

PARALLEL_FROM_IMAGES = 5000
_DIRECT_RUNNERS = (None, "DirectRunner", "direct")


def is_local_runner(runner) -> bool:
    return runner in _DIRECT_RUNNERS


def _at_least(images_roots: Sequence[str], count: int) -> bool:
    """Are there at least `count` image files under the roots? Stops counting once there are."""
    found = 0
    for root in images_roots:
        if not storage.is_local(root):
            return True  # listing a bucket costs time of its own; a dataset kept there is rarely small
        for _, _, files in os.walk(root):
            found += sum(1 for name in files if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
            if found >= count:
                return True
    return False


def direct_runner_args(beam_args: List[str], runner, images_roots: Sequence[str]) -> List[str]:
    """`beam_args` plus the DirectRunner's parallelism when the user left it to us."""
    chosen = any(arg.split("=")[0] in ("--direct_running_mode", "--direct_num_workers") for arg in beam_args)
    cores = os.cpu_count() or 1
    if chosen or not is_local_runner(runner) or cores < 2 or not _at_least(images_roots, PARALLEL_FROM_IMAGES):
        return beam_args
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
