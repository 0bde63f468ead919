"""Image paths named by annotations: normalized, and never allowed outside --images."""
from __future__ import annotations

import posixpath
import re
from typing import Optional

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def image_key(name: str) -> Optional[str]:
    """The normalized path of `name` relative to the images root, or None when it leaves the root.

    Absolute paths, drive letters, URLs and any `..` that climbs above the root are refused, so a
    crafted annotation can never make the pipeline open a file outside --images.
    """
    if not name or "\x00" in name:
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape names no file
        return None
    name = name.replace("\\", "/")
    if name.startswith("/") or _WINDOWS_DRIVE.match(name) or "://" in name:
        return None
    normalized = posixpath.normpath(name)
    if normalized in (".", "..") or normalized.startswith("../"):
        return None
    return normalized


def join(root: str, relative: str) -> str:
    """`root/relative` for local folders and gs:// prefixes alike."""
    return root.rstrip("/") + "/" + relative


def relative_to(root: str, path: str) -> Optional[str]:
    """`path` relative to the folder `root`, or None when it is not under it."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    return path[len(prefix):]
