"""The split a dataset came with, read from its paths (`--splits source`).

Roboflow exports `train/ valid/ test/` folders, Ultralytics `images/train`, COCO files are named
`instances_train2017.json`, CVAT writes subsets. `valid` and `validation` mean `val`.
"""
from __future__ import annotations

import re
from typing import Optional

_CANONICAL = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_NAME_TOKEN = re.compile(r"^(train|training|val|valid|validation|test|testing)\d*$")


def canonical_split(name: str) -> str:
    """A split name as the output uses it: `valid`/`validation` -> `val`, and since it ends up in file
    names, lower case with anything but letters, digits and _ made _ ("" when nothing is left)."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    return _CANONICAL.get(cleaned, cleaned)


def split_from_path(relative_path: str) -> Optional[str]:
    """The split a path names: its nearest folder called train/valid/test..., else a file-name token."""
    parts = relative_path.split("/")
    for folder in reversed(parts[:-1]):
        if folder.lower() in _CANONICAL:
            return _CANONICAL[folder.lower()]
    for token in re.split(r"[^a-z0-9]+", parts[-1].lower()):
        match = _NAME_TOKEN.match(token)
        if match:
            return _CANONICAL[match.group(1)]
    return None
