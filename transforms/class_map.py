"""--class_map: one vocabulary across sources (`Person`, `person`, `pedestrian` -> `person`; `null` drops)."""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple

from transforms.model import ImageRecord

ClassMap = Mapping[str, Optional[str]]


def apply_class_map(record: ImageRecord, class_map: ClassMap) -> Tuple[ImageRecord, int]:
    """The record with its box labels renamed, and how many boxes a `null` target dropped.

    Names the map does not mention are kept as they are.
    """
    if not class_map:
        return record, 0
    boxes = []
    for box in record.boxes:
        if box.label not in class_map:
            boxes.append(box)
        elif class_map[box.label] is not None:
            boxes.append(dataclasses.replace(box, label=class_map[box.label]))
    return dataclasses.replace(record, boxes=tuple(boxes)), len(record.boxes) - len(boxes)
