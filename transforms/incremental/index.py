"""The ingested-keys index: one entry per image an incremental run wrote, one JSON-lines part per shard.

A shard's writer reads its own part (OUTPUT/.state/rNNNN/index-SSSSS.jsonl): an image whose annotation
fingerprint is unchanged is not even read; a changed or deleted one is found at its live file and
position, so that file is rewritten without it. Entries are stored with short keys: a part of a
dataset with millions of images is read by every run.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Dict, Mapping, Optional

from transforms import storage


@dataclasses.dataclass(slots=True)
class IndexEntry:
    key: str  # what the image is across runs (manifest.identity)
    sha256: str  # of its image bytes
    fingerprint: str  # of its annotation (manifest.fingerprint)
    split: str
    file: str  # the id of the live shard file that holds its record
    position: int  # its record's place in that file
    boxes: Optional[int] = None  # boxes in its record (None in entries written before it was kept)
    size: Optional[int] = None  # its record's bytes

    def stored(self) -> dict:
        return {short: value for name, short in _STORED_AS.items() if (value := getattr(self, name)) is not None}

    @classmethod
    def from_stored(cls, stored: Mapping) -> "IndexEntry":
        return cls(**{name: stored[short] for name, short in _STORED_AS.items() if short in stored})


_STORED_AS = {"key": "k", "sha256": "sha", "fingerprint": "fp", "split": "split", "file": "file",
              "position": "pos", "boxes": "b", "size": "n"}


def parse_index(text: str) -> Dict[str, IndexEntry]:
    entries = {}
    for line in text.splitlines():
        if line.strip():
            entry = IndexEntry.from_stored(json.loads(line))
            entries[entry.key] = entry
    return entries


def format_index(entries: Mapping[str, IndexEntry]) -> str:
    return "".join(json.dumps(entries[key].stored(), sort_keys=True, ensure_ascii=False) + "\n" for key in sorted(entries))


def read_index_part(path: Optional[str]) -> Dict[str, IndexEntry]:
    if not path:
        return {}
    return parse_index(storage.read_bytes(path).decode("utf-8"))
