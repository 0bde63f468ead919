"""Per-image metadata waits on this machine's disk for its shard, not in the local runner's memory.

Beam's local runner keeps every element that crosses a shuffle in its own process until the step that
reads it is done, and decodes and re-encodes them on the way: for a conversion, every image's record,
file name and content hash. So on a local run the steps that would emit a packed batch for a shard
append it to that shard's files in a local folder instead, and the step that reads the shard reads
them back. Only one marker per shard (and per duplicate-search group) then crosses the shuffle, and
the runner's memory stays the same whatever the number of images. The parse tasks and the image
listing, which cross a shuffle (or a step boundary) before the shards are known, wait there too, by
task and by listing chunk. Distributed runners have a shuffle service built for this and get no
spill folder: their batches travel as elements.

Each process (and thread) appends to files of its own (<kind>/<key>/<pid>-<thread>), so concurrent
workers never interleave a write; each batch is framed with its length, so a file cut short fails
loudly instead of being misread. Local runners do not retry a bundle: a failed step fails the run, and
the folder goes with it.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import struct
import tempfile
import threading
from typing import Iterable, Iterator, List, Tuple

from transforms.beam.runtime import Batch, Exchange

_HEADER = struct.Struct(">IQ")  # tag (a source index, a hash digit, or 0), payload length
FOLDER_PREFIX = "od-tfrecords-spill-"
OWNER = "owner"  # the file a living run holds an flock on


def new_folder() -> str:
    """A new, empty spill folder in the system's temporary folder ($TMPDIR), locked while this run lives.

    The run removes its folder when it ends, however it ends, unless it is killed outright; so first the
    folders no living run holds are removed, and runs killed night after night do not fill the disk. The
    hold is an flock on the folder's owner file, which the kernel releases when the last process of the
    run exits: unlike a process id, it cannot be mistaken for another process's, nor missed across
    containers that share the folder.
    """
    return new_held_folder(FOLDER_PREFIX)[0]


def new_held_folder(prefix: str) -> Tuple[str, int]:
    """(folder, descriptor): a new folder named prefix... in $TMPDIR, held through the descriptor's flock on
    its owner file, after removing the folders of that prefix that no living process holds.

    The hold lasts until the descriptor is closed in this process and in every process forked from it.
    """
    parent = tempfile.gettempdir()
    for name in os.listdir(parent):
        if name.startswith(prefix) and not _held(os.path.join(parent, name, OWNER)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=prefix)
    owner = os.open(os.path.join(folder, OWNER), os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)  # held until this process and the workers it forks have exited
    return folder, owner


def _held(owner: str) -> bool:
    """Does a living run hold this owner file? A folder without one is still being made: held."""
    try:
        descriptor = os.open(owner, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # releases the lock if it was taken
    return False


class Spill(Exchange):
    """A local folder of framed (tag, payload) batches, by kind and key; every worker of the run can reach it."""

    spilled = True

    def __init__(self, folder: str):
        self.folder = folder

    def send(self, kind: str, key, batches: Iterable[Tuple[int, bytes]], marker: bool = False) -> List:
        """Appends a key's batches to the folder at once; emits only a marker (key, (0, None)), if `marker`,
        so the key still reaches its reader."""
        for tag, payload in batches:
            self.append(kind, key, tag, payload)
        return [(key, (0, None))] if marker else []

    def gather(self, kind: str, key, batches: Iterable[Batch]) -> List[Tuple[int, bytes]]:
        """A key's batches: those that travelled as elements, then those in the folder."""
        return super().gather(kind, key, batches) + list(self.read(kind, key))

    def _key_folder(self, kind: str, key) -> str:
        return os.path.join(self.folder, kind, str(key))

    def append(self, kind: str, key, tag: int, payload: bytes) -> None:
        folder = self._key_folder(kind, key)
        os.makedirs(folder, exist_ok=True)
        frame = memoryview(_HEADER.pack(tag, len(payload)) + payload)
        writer = f"{os.getpid()}-{threading.get_ident()}"
        descriptor = os.open(os.path.join(folder, writer), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while frame:
                frame = frame[os.write(descriptor, frame):]
        finally:
            os.close(descriptor)

    def read(self, kind: str, key) -> Iterator[Tuple[int, bytes]]:
        if not os.path.isdir(self.folder):  # never read as "nothing was spilled"
            raise OSError(f"the spill folder {self.folder} is gone")
        folder = self._key_folder(kind, key)
        if not os.path.isdir(folder):
            return
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                data = handle.read()
            position = 0
            while position < len(data):
                if position + _HEADER.size > len(data):
                    raise OSError(f"spill file {path} is cut short")
                tag, length = _HEADER.unpack_from(data, position)
                position += _HEADER.size
                if position + length > len(data):
                    raise OSError(f"spill file {path} is cut short")
                yield tag, data[position : position + length]
                position += length
