"""What to try when a run refused to publish: computed on the launcher from the refused run's report.

The usual causes of an empty or mostly rejected result are a path or a format off by one step:
`--images` one folder too high or too low (VOC's JPEGImages/, COCO's val2017/), or files read as the
wrong format. The refused run's rejections (OUTPUT/.refused/rejected.jsonl) name the image paths it
looked for; looking for those names one folder down and one up finds where they are, and format
detection says what the annotation files look like.
"""
from __future__ import annotations

import itertools
import json
import os
import posixpath
from typing import Iterable, List, Optional

from transforms import paths, storage
from transforms.join import MISSING_DETAIL

SAMPLE = 50  # missing images looked for
FOLDERS = 200  # subfolders of --images tried


def refusal_hint(job, refused_folder: str) -> Optional[str]:
    """One clause to add to the refusal's line, or None when nothing better can be said."""
    try:
        rejected = storage.read_bytes(paths.join(refused_folder, "rejected.jsonl"), 4 * 1024 * 1024)
    except Exception:
        return None
    lines = rejected.decode("utf-8", "replace").splitlines()  # a line cut at the read's end does not parse: skipped
    missing = [entry["detail"].split(MISSING_DETAIL)[0] for entry in _entries(lines)
               if entry.get("reason") == "image_missing" and MISSING_DETAIL in entry.get("detail", "")]
    if missing:
        return _where_images_are(job, missing[:SAMPLE]) or None
    entries = list(_entries(lines))
    unknown = sum(1 for entry in entries if "box_unknown_class" in (entry.get("reason", "") + entry.get("detail", "")))
    if entries and unknown * 2 >= len(entries):
        return ("most boxes name a class id that the source does not declare: check --classes (YOLO) or the "
                "file's categories (COCO)")
    return _other_format(job)


def _entries(lines: Iterable[str]):
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def _where_images_are(job, keys: List[str]) -> Optional[str]:
    """The folder, one level below or above a source's --images, that holds most of the missing images."""
    for source in job.sources:
        root = source.images.rstrip("/")
        for candidate in _candidate_folders(root):
            if sum(1 for key in keys if _exists(candidate, key)) * 2 >= len(keys):
                return f"the images the annotations name are in {candidate}: pass --images {candidate}"
    return None


def _exists(folder: str, key: str) -> bool:
    """Is the image there? YOLO names images without their extension."""
    if posixpath.splitext(key)[1]:
        return storage.exists(paths.join(folder, key))
    return any(storage.exists(paths.join(folder, key + extension)) for extension in (".jpg", ".jpeg", ".png"))


def _candidate_folders(root: str) -> List[str]:
    """One level down (the folders in --images), then one level up."""
    down: List[str] = []
    if storage.is_local(root) and os.path.isdir(root):
        with os.scandir(root) as entries:
            down = sorted(entry.path for entry in itertools.islice(
                (entry for entry in entries if entry.is_dir() and not entry.name.startswith(".")), FOLDERS))
    up = posixpath.dirname(root)
    return down + ([up] if up and up != root else [])


def _other_format(job) -> Optional[str]:
    from pipeline.errors import UsageError
    from pipeline.sources import detect_format

    for source in job.sources:
        try:
            detected = detect_format(source.annotations)
        except UsageError:
            continue
        if detected.name != source.format.name:
            return f"the files at {source.annotations} look like {detected.name}, not {source.format.name}: " \
                   f"try --format {detected.name}"
    return None
