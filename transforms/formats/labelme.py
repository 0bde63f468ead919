"""LabelMe JSON: one file per image, its objects drawn as shapes (rectangles, polygons, circles, ...).

Image path: LabelMe writes `imagePath` relative to the JSON file, usually just the file name. It is
used as the image's path under --images, except when it climbs out of the JSON file's folder
(`../images/a.jpg`, LabelMe's way of pointing at a sibling folder): then only its base name is kept
(`a.jpg`), so point --images at the folder that holds the images themselves. Any other path that
leaves --images (absolute, a drive letter) is rejected as `path_outside_images`.

`imageData`, the base64 copy of the image LabelMe can embed, is used when no file under --images
matches: the shard writer then reads it from the JSON file itself, so the bytes never travel through
the pipeline's shuffle.

Shapes become boxes: a rectangle (two opposite corners, in either order) its corners; a polygon or an
oriented rectangle (newer LabelMe) its bounding box; a circle (its center and a point on it) the
circle's bounding box. A shape without `shape_type` is a polygon, as LabelMe itself reads old files.
Lines, line strips, points and masks outline no box: each is rejected as `shape_unsupported`, naming
its type, so nothing is dropped silently. `imageWidth`/`imageHeight` are the annotated size.
"""
from __future__ import annotations

import base64
import math
import posixpath
import re
from typing import Any, Iterator, List, Optional, Tuple, Union

from transforms.formats import NO_CONTEXT, AnnotationFormat, ParseContext, Parsed, _json
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, ImageRecord, Rejection, carried

_BOX_SHAPES = ("rectangle", "polygon", "oriented_rectangle", "circle")
_MIN_POINTS = {"rectangle": 2, "polygon": 3, "oriented_rectangle": 4, "circle": 2}

_SHAPES_KEY = re.compile(rb'"shapes"\s*:')
# LabelMe writes `shapes` before `imagePath`; with many shapes, a shape's own keys are what the head holds.
_LABELME_KEY = re.compile(rb'"(?:imagePath|shape_type)"\s*:')


def _size(document: dict) -> Optional[Tuple[int, int]]:
    width, height = document.get("imageWidth"), document.get("imageHeight")
    if any(isinstance(value, bool) or not isinstance(value, int) or value <= 0 for value in (width, height)):
        return None
    return width, height


def image_key(image_path: str) -> str:
    """`imagePath` as a path under --images: kept, or its base name when it climbs out with `../`."""
    path = image_path.replace("\\", "/")
    normalized = posixpath.normpath(path) if path else path
    if normalized == ".." or normalized.startswith("../"):
        name = posixpath.basename(normalized)
        return "" if name == ".." else name  # `..` alone names no file
    return image_path


def _points(value: Any) -> Optional[List[Tuple[float, float]]]:
    """[[x, y], ...] as float pairs; None when anything is not a pair of numbers."""
    if not isinstance(value, list):
        return None
    points = []
    for point in value:
        if not isinstance(point, list) or len(point) != 2:
            return None
        x, y = _json.number(point[0]), _json.number(point[1])
        if x is None or y is None:
            return None
        points.append((x, y))
    return points


def _span(values: List[float]) -> Tuple[float, float]:
    """(min, max) of `values`; NaN in, NaN out (min and max would skip it or not, by position)."""
    if any(math.isnan(value) for value in values):
        return math.nan, math.nan
    return min(values), max(values)


def _corners(shape_type: str, points: List[Tuple[float, float]]) -> Tuple[float, float, float, float]:
    if shape_type == "circle":
        (cx, cy), (px, py) = points[0], points[1]
        radius = math.hypot(px - cx, py - cy)
        return cx - radius, cy - radius, cx + radius, cy + radius
    (xmin, xmax), (ymin, ymax) = _span([x for x, _ in points]), _span([y for _, y in points])
    return xmin, ymin, xmax, ymax


def _box(source: str, index: int, shape: Any) -> Union[Box, Rejection]:
    if not isinstance(shape, dict):
        return Rejection(source, "box_malformed", f"shape {index} is not an object", ITEM_BOX)
    label = shape.get("label")
    label = "" if label is None else _json.text(label)
    where = f"shape {index} ({label or 'no label'})"
    if label is None:
        return Rejection(source, "box_malformed", f"shape {index}: label {_json.brief(shape.get('label'))} is not text", ITEM_BOX)
    shape_type = shape.get("shape_type", "polygon")
    if shape_type not in _BOX_SHAPES:
        return Rejection(
            source, "shape_unsupported", f"{where}: a {_json.brief(shape_type)} shape outlines no box", ITEM_BOX
        )
    points = _points(shape.get("points"))
    if points is None:
        return Rejection(
            source, "box_malformed", f"{where}: points {_json.brief(shape.get('points'))} are not [[x, y], ...]", ITEM_BOX
        )
    if len(points) < _MIN_POINTS[shape_type] or (shape_type == "circle" and len(points) != 2):
        return Rejection(
            source, "box_malformed", f"{where}: a {shape_type} with {len(points)} point(s)", ITEM_BOX
        )
    return Box(label, *_corners(shape_type, points))


def sniff(path: str, head: bytes) -> bool:
    """A JSON object with a `shapes` key and an `imagePath` (or a shape's `shape_type`) key."""
    return (
        path.lower().endswith(".json")
        and _json.head_start(head) == b"{"
        and _SHAPES_KEY.search(head) is not None
        and _LABELME_KEY.search(head) is not None
    )


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT) -> Iterator[Parsed]:
    document = _json.load(source, data)
    if isinstance(document, Rejection):
        yield document
        return
    if not isinstance(document, dict):
        yield Rejection(source, "labelme_invalid", "not a JSON object", ITEM_ANNOTATION)
        return
    shapes = document.get("shapes")
    if shapes is None:
        shapes = []
    if not isinstance(shapes, list):
        yield Rejection(source, "labelme_invalid", "`shapes` is not a list", ITEM_ANNOTATION)
        return
    image_path = _json.text(document.get("imagePath"))
    key = image_key(image_path) if image_path else ""
    if not key:
        yield Rejection(
            source,
            "labelme_invalid",
            f"no usable imagePath ({_json.brief(document.get('imagePath'))})",
            ITEM_ANNOTATION,
            len(shapes),
        )
        return
    boxes, rejected = [], []  # the rejected shapes travel with the record
    for index, shape in enumerate(shapes):
        item = _box(source, index, shape)
        (rejected if isinstance(item, Rejection) else boxes).append(item)
    yield ImageRecord(
        key=key,
        source=source,
        boxes=tuple(boxes),
        annotated_size=_size(document),
        rejected_boxes=carried(rejected),
    )


def embedded_image(data: bytes) -> Optional[bytes]:
    """The image a LabelMe file embeds as base64 `imageData`, or None."""
    document = _json.load("", data)
    encoded = document.get("imageData") if isinstance(document, dict) else None
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        return None


FORMAT = AnnotationFormat(
    name="labelme",
    summary="LabelMe JSON, one file per image (rectangles, polygons and circles become boxes)",
    example="--format labelme --annotations data/labelme --images data/images",
    folder_patterns=("**.json",),
    parse=parse,
    sniff=sniff,
    embedded_image=embedded_image,
)
