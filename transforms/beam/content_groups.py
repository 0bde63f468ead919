"""Image hashes grouped for the duplicate search: by the sha256's first hex digit, in batches by its second.

Sixteen groups keep the elements that cross the shuffle few (at most sixteen per shard writer); each
group's batches are tagged by the second digit, so the step that reads a group holds one 256th of all
hashes at a time, not a sixteenth.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator, List, Tuple

from transforms.model import pack, unpack


def content_batches(rows: Iterable[tuple]) -> Iterator[Tuple[str, List[Tuple[int, bytes]]]]:
    """(sha256 hex, ...) rows -> (group, [(second hex digit, packed rows)]) for each group that has rows."""
    by_group = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_group[row[0][0]][int(row[0][1], 16)].append(row)
    for group in sorted(by_group):
        yield group, [(digit, pack(batch)) for digit, batch in sorted(by_group[group].items())]


def copies_by_content(exchange, kind: str, group: str, batches) -> Iterator[List[tuple]]:
    """The rows (without the sha256) of each sha256 of one group, as `exchange` (transforms/beam/runtime.py)
    gathers them, a 256th of the hashes at a time."""
    packed_by_digit = defaultdict(list)
    for digit, packed in exchange.gather(kind, group, batches):
        packed_by_digit[digit].append(packed)
    for digit in sorted(packed_by_digit):
        by_sha256 = defaultdict(list)
        for packed in packed_by_digit[digit]:
            for sha256, *rest in unpack(packed):
                by_sha256[sha256].append(tuple(rest))
        yield from by_sha256.values()
