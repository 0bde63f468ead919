"""YOLO txt (Ultralytics, Darknet, Roboflow): one label file per image, `class cx cy w h` per line.

Coordinates are fractions of the image size, so no image size is needed. Class names come from
--classes (a names file or a data.yaml). A label file names no image: `labels/train/x.txt` belongs
to the image `images/train/x.<any extension>` (Ultralytics' own rule: the last `labels` folder becomes
`images`), so records carry that path without its extension and the join matches it by stem. Images
without a label file are negatives. Segment lines (`class x1 y1 x2 y2 ...`) become their bounding box.
A line longer than 1 MiB is rejected unread (`annotation_line_too_long`) and the next one parsed.
A label file is one image's: the lines it rejects (an undeclared class index, bad numbers, a line too
long) travel with that image's record (`ImageRecord.rejected_boxes`), so an image that lost every box
is rejected, not written as a negative.
Class index k is label id k + 1, for every name --classes declares (transforms.formats.context_numbering).
"""
from __future__ import annotations

import math
import posixpath
import re
from typing import Iterator, List, Optional

from transforms import paths
from transforms.formats import NO_CONTEXT, AnnotationFormat, ParseContext, Parsed, _text
from transforms.model import ITEM_ANNOTATION, RELATIVE, Box, ImageRecord, Rejection, rejected_box

CLASS_LIST_FILES = ("classes.txt",)  # LabelImg writes its class list beside the labels
_NUMBER_LINE = re.compile(rb"^\s*\d+(\s+[-+0-9.eE]+){4,}\s*$")


def image_stem(label_path: str) -> str:
    """`labels/train/x.txt` -> `images/train/x`: the image's path without its extension."""
    parts = posixpath.splitext(label_path)[0].split("/")
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "labels":
            parts[index] = "images"
            break
    return "/".join(parts)


def _floats(tokens: List[str]) -> Optional[List[float]]:
    try:
        values = [float(token) for token in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(value) for value in values) else None


def _box(line_number: int, line: str, classes):
    """The line's Box, or its rejection as the record carries it (reason, detail)."""
    tokens = line.split()
    where = f"line {line_number}"
    try:
        class_index = int(tokens[0])
    except ValueError:
        return rejected_box("box_malformed", f"{where}: class {tokens[0][:50]!r} is not an index")
    values = _floats(tokens[1:])
    if values is None or len(values) < 4 or (len(values) > 4 and len(values) % 2):
        return rejected_box("box_malformed", f"{where}: expected `class cx cy w h` or a polygon")
    if not 0 <= class_index < len(classes):
        return rejected_box("box_unknown_class", f"{where}: class index {class_index} is not in the {len(classes)} --classes")
    if len(values) == 4:
        cx, cy, width, height = values
        corners = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
    else:  # a segment: x1 y1 x2 y2 ... as its bounding box
        xs, ys = values[0::2], values[1::2]
        corners = (min(xs), min(ys), max(xs), max(ys))
    return Box(classes[class_index], *corners)


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT) -> Iterator[Parsed]:
    if posixpath.basename(source) in CLASS_LIST_FILES:
        return
    # Rejections wait with the boxes: a file found not to be UTF-8 further down is one rejection, nothing else.
    # They are kept as the record carries them, (reason, detail) pairs: a file may hold millions of bad lines.
    boxes, rejections = [], []
    for line_number, _, line in _text.lines(data):
        if line is None:
            rejections.append(rejected_box(_text.LINE_TOO_LONG, _text.line_too_long_detail(line_number)))
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield Rejection(source, "txt_malformed", "not UTF-8 text", ITEM_ANNOTATION)
            return
        if not text.strip():
            continue
        item = _box(line_number, text, context.classes)
        (boxes if isinstance(item, Box) else rejections).append(item)
    relative = paths.relative_to(context.annotations_root, source) if context.annotations_root else None
    yield ImageRecord(
        key=image_stem(relative or posixpath.basename(source)),
        source=source,
        boxes=tuple(boxes),
        units=RELATIVE,
        rejected_boxes=tuple(rejections),
    )


def sniff(path: str, head: bytes) -> bool:
    """A .txt whose first line is `class cx cy w h` numbers (an empty label file is a negative)."""
    if not path.lower().endswith(".txt") or posixpath.basename(path) in CLASS_LIST_FILES:
        return False
    first = head.split(b"\n", 1)[0]
    return _NUMBER_LINE.match(first) is not None


FORMAT = AnnotationFormat(
    name="yolo",
    summary="YOLO txt labels (Ultralytics/Darknet), classes from --classes names file or data.yaml",
    example="--format yolo --annotations data/labels --images data/images --classes data/data.yaml",
    folder_patterns=("**.txt",),
    parse=parse,
    sniff=sniff,
    images_by_stem=True,
    unlabeled_images_are_negatives=True,
    needs_classes=True,
)
