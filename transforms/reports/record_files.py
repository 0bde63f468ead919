"""Finding OD API record files in a folder (local or gs://), and their label map, for inspect and verify."""
from __future__ import annotations

import os
import posixpath
from typing import List, NamedTuple, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

from transforms import paths, storage
from transforms.records.reader import guess_split, is_record_file


class RecordFile(NamedTuple):
    path: str
    relative: str  # to the folder it was found in
    split: str


def _hidden(relative: str) -> bool:
    """Under a dot-folder, such as a run's `.staging/`, whose files are not (yet) part of the dataset."""
    return any(part.startswith(".") for part in relative.split("/")[:-1])


def list_folder(folder: str) -> List[Tuple[str, str, int]]:
    """(path, path relative to `folder`, size) of every file below it, hidden folders left out."""
    listed = []
    for path, size in storage.matching_files([paths.join(storage.literal(folder), "**")]):
        relative = paths.relative_to(folder, path)
        if relative is not None and not _hidden(relative):
            listed.append((path, relative, size))
    return sorted(listed)


def find_record_files(folder_or_file: str) -> List[RecordFile]:
    """Every TFRecord file under a folder (or the one file given), with the split its name suggests."""
    if _is_file(folder_or_file):
        name = posixpath.basename(folder_or_file)
        return [RecordFile(folder_or_file, name, guess_split(name))]
    return [
        RecordFile(path, relative, guess_split(relative))
        for path, relative, _ in list_folder(folder_or_file)
        if is_record_file(posixpath.basename(relative))
    ]


def _is_file(path: str) -> bool:
    """A file, not a folder; on object stores a prefix is no object, so `exists` says which."""
    return os.path.isfile(path) if storage.is_local(path) else FileSystems.exists(path)


def read_file_text(path: str) -> str:
    return storage.read_bytes(path).decode("utf-8", "replace")


def find_label_map(folder: str) -> Optional[str]:
    """`label_map.pbtxt` in the folder, else the first `*label_map*.pbtxt` below it (Roboflow names it
    `{project}_label_map.pbtxt` in each split folder), else None."""
    candidates = [
        (relative.count("/"), relative != "label_map.pbtxt", path)
        for path, relative, _ in list_folder(folder)
        if relative.endswith(".pbtxt") and "label_map" in posixpath.basename(relative)
    ]
    return min(candidates)[2] if candidates else None
