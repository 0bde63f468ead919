"""Apple CreateML object-detection JSON (Create ML, Roboflow and labelImg export it).

One file lists images: `[{"image": "a.jpg", "annotations": [{"label": "cat", "coordinates": {"x": cx,
"y": cy, "width": w, "height": h}}]}]`, in pixels, with `x`/`y` the box's CENTER (not a corner).
Image names are relative to --images. An image with an empty (or no) `annotations` list is a negative
example. The file states no image size.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Union

from transforms.formats import NO_CONTEXT, AnnotationFormat, ParseContext, Parsed, _json
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, ImageRecord, Rejection, carried

_IMAGE_KEY = re.compile(rb'"image"\s*:')
_ANNOTATIONS_KEY = re.compile(rb'"annotations"\s*:')
_COORDINATES_KEY = re.compile(rb'"coordinates"\s*:')
_FIELDS = ("x", "y", "width", "height")


def _box(source: str, where: str, annotation: Any) -> Union[Box, Rejection]:
    if not isinstance(annotation, dict):
        return Rejection(source, "box_malformed", f"{where} is not an object", ITEM_BOX)
    label = annotation.get("label")
    label = "" if label is None else _json.text(label)  # no label: the writer rejects it as box_no_label
    if label is None:
        return Rejection(source, "box_malformed", f"{where}: label {_json.brief(annotation.get('label'))} is not text", ITEM_BOX)
    where = f"{where} ({label or 'no label'})"
    coordinates = annotation.get("coordinates")
    values = [_json.number(coordinates.get(field)) for field in _FIELDS] if isinstance(coordinates, dict) else [None]
    if None in values:
        return Rejection(
            source,
            "box_malformed",
            f"{where}: coordinates {_json.brief(coordinates)} are not {{x, y, width, height}} numbers",
            ITEM_BOX,
        )
    x, y, width, height = values
    return Box(label, x - width / 2, y - height / 2, x + width / 2, y + height / 2)


def sniff(path: str, head: bytes) -> bool:
    """A JSON list whose items have `coordinates`, or `image` and `annotations` (COCO and LabelMe files are objects)."""
    if not path.lower().endswith(".json") or _json.head_start(head) != b"[":
        return False
    if _COORDINATES_KEY.search(head):
        return True
    return _IMAGE_KEY.search(head) is not None and _ANNOTATIONS_KEY.search(head) is not None


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT) -> Iterator[Parsed]:
    document = _json.load(source, data)
    if isinstance(document, Rejection):
        yield document
        return
    if not isinstance(document, list):
        yield Rejection(source, "createml_invalid", "not a JSON list of images", ITEM_ANNOTATION)
        return
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            yield Rejection(source, "createml_invalid", f"item {index} is not an object", ITEM_ANNOTATION)
            continue
        annotations = item.get("annotations")
        if annotations is None:
            annotations = []
        boxes_named = len(annotations) if isinstance(annotations, list) else 0
        name = _json.text(item.get("image"))
        if not name:
            yield Rejection(
                source,
                "createml_invalid",
                f"item {index} has no image name ({_json.brief(item.get('image'))})",
                ITEM_ANNOTATION,
                boxes_named,
            )
            continue
        if not isinstance(annotations, list):
            yield Rejection(
                source, "createml_invalid", f"item {index} ({name}): `annotations` is not a list", ITEM_ANNOTATION
            )
            continue
        boxes, rejected = [], []  # the rejected annotations travel with the image's record
        for number, annotation in enumerate(annotations):
            box = _box(source, f"{name}: annotation {number}", annotation)
            (rejected if isinstance(box, Rejection) else boxes).append(box)
        yield ImageRecord(key=name, source=source, boxes=tuple(boxes), rejected_boxes=carried(rejected))


FORMAT = AnnotationFormat(
    name="createml",
    summary="Apple CreateML JSON, one list of images per file (box x/y are centers, in pixels)",
    example="--format createml --annotations train/_annotations.createml.json --images train",
    folder_patterns=("*.json",),
    parse=parse,
    sniff=sniff,
)
