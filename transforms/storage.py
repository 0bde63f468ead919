"""The few file operations the publish step needs, the same for local folders and gs:// prefixes."""
from __future__ import annotations

import os
import shutil
from typing import List, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    return "://" not in path


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


def list_files(pattern: str) -> List[str]:
    (result,) = FileSystems.match([pattern])
    return sorted(metadata.path for metadata in result.metadata_list)


def move(sources: Sequence[str], destinations: Sequence[str]) -> None:
    if sources:
        FileSystems.rename(list(sources), list(destinations))


def delete(paths: Sequence[str]) -> None:
    if paths:
        FileSystems.delete(list(paths))


def remove_tree(folder: str) -> None:
    """Delete a folder (or gs:// prefix) and everything below it; nothing when it does not exist."""
    if is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        delete(list_files(folder.rstrip("/") + "/**"))


def exists(path: str) -> bool:
    return os.path.exists(path) if is_local(path) else FileSystems.exists(path)


def remove_empty_folder(folder: str) -> None:
    """Remove a local folder left empty; object stores have no empty folders to remove."""
    if is_local(folder):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty (another run is staging there) or already gone
