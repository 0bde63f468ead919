"""CVAT for images 1.1 XML: one file lists every image of a task or project with its shapes.

Boxes come from <box> (rotated ones by their axis-aligned bounding box), <polygon> and <ellipse>;
every other shape (polyline, points, mask, skeleton, cuboid) is rejected by name so that nothing is
dropped silently, and <tag> (an image-level label without geometry) is not an object at all. Project
exports name each image's subset, which becomes the record's split.

The labels <meta> declares number the classes from 1 in their order (`parse_numbered`), as Datumaro
reads them: a task's, a project's or a job's <labels>, each top-level <label> (a skeleton's points,
which name a <parent>, are not classes of their own), used by a shape or not.
"""
from __future__ import annotations

import math
import functools
import re
import xml.etree.ElementTree as ElementTree
from typing import Iterator, List, Optional, Tuple

from transforms.formats import NO_CONTEXT, AnnotationFormat, ClassNumbering, ParseContext, Parsed, _text
from transforms.formats._xml import CVAT, parse_xml, xml_kinds
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, ImageRecord, Rejection, carried
from transforms.source_splits import canonical_split

BOX_SHAPES = ("box", "polygon", "ellipse")
NOT_OBJECTS = ("tag",)  # image-level labels: no geometry, nothing to drop

# A task without a subset is exported as "default" (or "default_1" when a real subset took that name).
_NO_SUBSET = re.compile(r"default(_\d+)?")


def sniff(path: str, head: bytes) -> bool:
    """An XML file whose root element is <annotations> with a <meta> or an <image> (Pascal VOC's is <annotation>)."""
    return path.lower().endswith(".xml") and xml_kinds(head) == {CVAT}


def _split(subset: Optional[str]) -> Optional[str]:
    """CVAT's subset (Train, Validation, Test or free text) as a split name; None when there is none."""
    name = canonical_split(subset or "")  # valid/validation -> val, training -> train, ...
    if not name or _NO_SUBSET.fullmatch(name):
        return None
    return name


def _turn(rotation: float) -> Tuple[float, float]:
    """|cos| and |sin| of a rotation in degrees; exact for quarter turns."""
    if not math.isfinite(rotation):
        raise ValueError(f"rotation {rotation} is not finite")
    quarter = rotation % 180
    if quarter == 0:
        return 1.0, 0.0
    if quarter == 90:
        return 0.0, 1.0
    angle = math.radians(quarter)
    return abs(math.cos(angle)), abs(math.sin(angle))


def _span(values: List[float]) -> Tuple[float, float]:
    # min() and max() of a list with NaN depend on its order: keep the NaN for the writer to reject.
    if any(math.isnan(value) for value in values):
        return math.nan, math.nan
    return min(values), max(values)


def _corners(shape: ElementTree.Element) -> Tuple[float, float, float, float]:
    """The axis-aligned bounding box of a box, polygon or ellipse, in pixels."""
    if shape.tag == "polygon":
        text = shape.get("points")
        if text is None:
            raise ValueError("points is missing")
        pairs = [pair.split(",") for pair in text.split(";") if pair.strip()]
        if not pairs or any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"points {text[:50]!r} is not x1,y1;x2,y2;...")
        xs = [_text.number(x, "x") for x, _ in pairs]
        ys = [_text.number(y, "y") for _, y in pairs]
        (xmin, xmax), (ymin, ymax) = _span(xs), _span(ys)
        return xmin, ymin, xmax, ymax
    cos, sin = _turn(_text.number(shape.get("rotation", "0"), "rotation"))
    if shape.tag == "box":
        xtl, ytl, xbr, ybr = (_text.number(shape.get(name), name) for name in ("xtl", "ytl", "xbr", "ybr"))
        if sin == 0:
            return xtl, ytl, xbr, ybr
        # CVAT turns the box about its centre; its bounding box is what a detector can learn.
        cx, cy, half_w, half_h = (xtl + xbr) / 2, (ytl + ybr) / 2, abs(xbr - xtl) / 2, abs(ybr - ytl) / 2
        if cos == 0:
            half_w, half_h = half_h, half_w
        else:
            half_w, half_h = half_w * cos + half_h * sin, half_w * sin + half_h * cos
        return cx - half_w, cy - half_h, cx + half_w, cy + half_h
    cx, cy, rx, ry = (_text.number(shape.get(name), name) for name in ("cx", "cy", "rx", "ry"))
    rx, ry = abs(rx), abs(ry)
    if sin == 0:
        half_w, half_h = rx, ry
    elif cos == 0:
        half_w, half_h = ry, rx
    else:
        half_w, half_h = math.hypot(rx * cos, ry * sin), math.hypot(rx * sin, ry * cos)
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def declared_labels(root: ElementTree.Element) -> Tuple[str, ...]:
    """The names of the labels <meta> declares, in its order (the first <labels> in it: a task's, a
    project's or a job's); a skeleton's sublabels (with a <parent>) are left out, a name given twice counts
    at its first place."""
    meta = root.find("meta")
    labels = next(meta.iter("labels"), None) if meta is not None else None
    names = []
    for label in labels.findall("label") if labels is not None else ():
        name = (label.findtext("name") or "").strip()
        if name and not (label.findtext("parent") or "").strip() and name not in names:
            names.append(name)
    return tuple(names)


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT, numbered: bool = False) -> Iterator[Parsed]:
    root = parse_xml(source, data)
    if isinstance(root, Rejection):
        yield root
        return
    if root.tag != "annotations":
        hint = " (Pascal VOC? use --format voc)" if root.tag == "annotation" else ""
        yield Rejection(source, "cvat_invalid", f"root element is <{root.tag}>, not <annotations>{hint}", ITEM_ANNOTATION)
        return
    labels = declared_labels(root) if numbered else ()
    if labels:
        yield ClassNumbering(tuple(enumerate(labels, 1)))
    tracks = root.findall("track")
    if tracks:
        # CVAT for video 1.1: shapes belong to tracks over frame numbers, not to named images.
        shapes = sum(1 for track in tracks for shape in track if shape.get("outside") != "1")
        yield Rejection(
            source,
            "cvat_invalid",
            f"{len(tracks)} <track> element(s) of CVAT for video 1.1; export as CVAT for images 1.1",
            ITEM_ANNOTATION,
            shapes,
        )
    for index, image in enumerate(root.findall("image")):
        yield from _image(source, index, image)


def _image(source: str, index: int, image: ElementTree.Element) -> Iterator[Parsed]:
    name = image.get("name") or ""
    if not name.strip():
        boxes = sum(1 for shape in image if shape.tag in BOX_SHAPES)
        detail = f"image {index} (id {image.get('id')!r}) has no name"
        yield Rejection(source, "cvat_invalid", detail, ITEM_ANNOTATION, boxes)
        return
    boxes, rejected = [], []  # the rejected shapes travel with the image's record
    shapes = (shape for shape in image if shape.tag not in NOT_OBJECTS)
    for number, shape in enumerate(shapes):
        label = (shape.get("label") or "").strip()
        where = f"image {name!r}, {shape.tag} {number} ({label})"
        if shape.tag not in BOX_SHAPES:
            detail = f"{where}: <{shape.tag}> is not supported; only box, polygon and ellipse become boxes"
            rejected.append(Rejection(source, "shape_unsupported", detail, ITEM_BOX))
            continue
        try:
            corners = _corners(shape)
        except ValueError as error:
            rejected.append(Rejection(source, "box_malformed", f"{where}: {error}", ITEM_BOX))
            continue
        boxes.append(Box(label, *corners, truncated=_text.flag(shape.get("occluded"))))
    width, height = _text.positive_int(image.get("width")), _text.positive_int(image.get("height"))
    yield ImageRecord(
        key=name,
        source=source,
        boxes=tuple(boxes),
        annotated_size=(width, height) if width and height else None,
        source_split=_split(image.get("subset")),
        rejected_boxes=carried(rejected),
    )


FORMAT = AnnotationFormat(
    name="cvat",
    summary="CVAT for images 1.1 XML, one file per task or project",
    example="--format cvat --annotations export/annotations.xml --images export/images",
    folder_patterns=("*.xml",),
    parse=parse,
    sniff=sniff,
    parse_numbered=functools.partial(parse, numbered=True),
)
