"""rejected.jsonl without holding it: rejections are counted and written to sorted part files as they
arrive, and publish merges the parts into one file in order.

A run can reject millions of items (a YOLO file of bad lines rejects each line); holding them all in
one worker until publish cost ~2 KB each. Each bundle here keeps at most PART_ROWS of them, sorts them
and writes a part under the run's staging folder; only the parts' paths reach publish, which streams a
k-way merge of them. The merged order is the rejections' sort key, so the file's bytes do not depend on
how the runner cut its bundles.
"""
from __future__ import annotations

import heapq
import json
import uuid
from typing import Iterable, List

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from transforms import paths
from transforms.model import Rejection
from transforms.beam.tally import CountingDoFn

PART_ROWS = 10_000  # rejections a bundle holds before it writes them out (~20 MB)
MERGE_FAN_IN = 256  # parts merged at once; more are merged in rounds (each an open file)
PARTS_FOLDER = "rejected-parts"
_REJECTED_ITEMS = {"annotation": "rejected_annotations", "image": "rejected_images", "box": "rejected_boxes"}


def _line_order(line: bytes):
    """A line's place in rejected.jsonl: the rejection's sort key, then the whole line (a total order)."""
    fields = json.loads(line)
    return fields["source"], fields["item"], fields["reason"], fields["detail"], line


class StageRejections(CountingDoFn):
    """Rejection -> the path of a sorted part file holding it (one per PART_ROWS or bundle); counted as
    tallies: `("rejected", reason)`, `rejected_images` (`_boxes`, `_annotations`), `boxes_on_rejected_items`.
    A retried bundle writes new parts, and only the emitted paths are merged, so nothing counts twice."""

    def __init__(self, staging_dir: str):
        self._folder = paths.join(staging_dir, PARTS_FOLDER)

    def start_bundle(self):
        super().start_bundle()
        self._pending: List[Rejection] = []

    def process(self, rejection: Rejection):
        self.count(("rejected", rejection.reason))
        self.count(_REJECTED_ITEMS.get(rejection.item, f"rejected_{rejection.item}"))
        self.count("boxes_on_rejected_items", rejection.boxes)
        self._pending.append(rejection)
        if len(self._pending) >= PART_ROWS:
            yield self._write_part()

    def finish_bundle(self):
        if self._pending:
            window = GlobalWindow()
            yield WindowedValue(self._write_part(), window.max_timestamp(), [window])
        yield from super().finish_bundle()

    def _write_part(self) -> str:
        lines = sorted(((rejection.to_json() + "\n").encode("utf-8", "backslashreplace") for rejection in self._pending),
                       key=_line_order)
        self._pending = []
        path = paths.join(self._folder, f"part-{uuid.uuid4().hex}.jsonl")
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.writelines(lines)
        return path


def merge_parts(parts: Iterable[str], destination: str, scratch_folder: str) -> None:
    """Write the sorted parts' lines to `destination` in order, holding one line per open part.
    Parts beyond MERGE_FAN_IN are first merged in rounds into bigger parts under `scratch_folder`."""
    parts = sorted(parts)
    round_number = 0
    while len(parts) > MERGE_FAN_IN:
        merged = []
        for start in range(0, len(parts), MERGE_FAN_IN):
            path = paths.join(scratch_folder, f"merged-{round_number}-{start // MERGE_FAN_IN:06d}.jsonl")
            _merge(parts[start:start + MERGE_FAN_IN], path)
            merged.append(path)
        parts, round_number = merged, round_number + 1
    _merge(parts, destination)


def _merge(parts: List[str], destination: str) -> None:
    handles = [FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) for part in parts]
    try:
        with FileSystems.create(destination, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            out.writelines(heapq.merge(*handles, key=_line_order))
    finally:
        for handle in handles:
            handle.close()
