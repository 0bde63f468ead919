"""COCO object-detection JSON: one file lists every image, category and box of a split."""
from __future__ import annotations

import json

import math
import re
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Optional

from transforms.formats import NO_CONTEXT, AnnotationFormat, ParseContext, Parsed, _json
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, Ignored, ImageRecord, Rejection


def _positive_int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _id(value: Any) -> Any:
    """COCO ids are ints (some tools write strings); anything else can match nothing."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


_FLOAT32_MAX = 3.4028234663852886e38
_number = _json.number
_IMAGES_KEY = re.compile(rb'"images"\s*:')


def _box(annotation: dict, label: str) -> Optional[Box]:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        return None
    x, y, width, height = (_number(value) for value in bbox)
    if None in (x, y, width, height):
        return None
    area = _number(annotation.get("area"))
    if area is not None and not 0 <= area <= _FLOAT32_MAX:  # NaN, negative or beyond float32: not an area
        area = None
    crowd = annotation.get("iscrowd")
    segmentation = annotation.get("segmentation")
    return Box(
        label,
        x,
        y,
        x + width if math.isfinite(width) else width,
        y + height if math.isfinite(height) else height,
        is_crowd=bool(crowd) if isinstance(crowd, (int, bool)) else None,
        area=area,
        segmentation=json.dumps(segmentation, separators=(",", ":")) if _is_segmentation(segmentation) else None,
    )


def _is_segmentation(value) -> bool:
    """Polygons ([[x, y, ...], ...]) or RLE ({"counts": ..., "size": [h, w]}), as COCO stores them."""
    if isinstance(value, list):
        return bool(value) and all(
            isinstance(polygon, list) and all(_number(v) is not None for v in polygon) for polygon in value
        )
    return (
        isinstance(value, dict)
        and isinstance(value.get("counts"), (str, list))
        and isinstance(value.get("size"), list)
        and len(value["size"]) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value["size"])
    )


def sniff(path: str, head: bytes) -> bool:
    """A JSON object with an `images` key (LabelMe files have none; CreateML files are lists).

    The key, not the word: a LabelMe shape labelled "images" is not COCO.
    """
    return (
        path.lower().endswith(".json")
        and _json.head_start(head) == b"{"
        and _IMAGES_KEY.search(head) is not None
    )


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT) -> Iterator[Parsed]:
    document = _json.load(source, data)
    if isinstance(document, Rejection):
        yield document
        return
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        yield Rejection(source, "coco_invalid", "no `images` list at the top level", ITEM_ANNOTATION)
        return
    for section in ("categories", "annotations"):
        if not isinstance(document.get(section) or [], list):
            yield Rejection(source, "coco_invalid", f"`{section}` is not a list", ITEM_ANNOTATION)
            return
    categories: Dict[Any, str] = {}
    for category in document.get("categories") or []:
        if isinstance(category, dict) and isinstance(category.get("name"), str):
            categories[_id(category.get("id"))] = category["name"]

    boxes_by_image: Dict[Any, List[Box]] = defaultdict(list)
    keypoints = 0
    known_images = {_id(image.get("id")) for image in document["images"] if isinstance(image, dict)}
    for index, annotation in enumerate(document.get("annotations") or []):
        if not isinstance(annotation, dict):
            yield Rejection(source, "box_malformed", f"annotation {index} is not an object", ITEM_BOX)
            continue
        where = f"annotation {annotation.get('id', index)}"
        image_id = _id(annotation.get("image_id"))
        if image_id is None or image_id not in known_images:
            yield Rejection(source, "box_unknown_image", f"{where}: image_id {annotation.get('image_id')!r} is not in `images`", ITEM_BOX)
            continue
        category_id = _id(annotation.get("category_id"))
        if category_id is None or category_id not in categories:
            yield Rejection(source, "box_unknown_class", f"{where}: category_id {annotation.get('category_id')!r} is not in `categories`", ITEM_BOX)
            continue
        box = _box(annotation, categories[category_id])
        if box is None:
            yield Rejection(source, "box_malformed", f"{where}: bbox {annotation.get('bbox')!r} is not [x, y, w, h]", ITEM_BOX)
            continue
        boxes_by_image[image_id].append(box)
        if annotation.get("keypoints"):
            keypoints += 1
    if keypoints:
        yield Ignored("coco_keypoints", keypoints)

    for index, image in enumerate(document["images"]):
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if not isinstance(file_name, str) or not file_name:
            image_id = _id(image.get("id")) if isinstance(image, dict) else None
            lost = len(boxes_by_image.get(image_id, ())) if image_id is not None else 0
            yield Rejection(source, "coco_invalid", f"image {index} has no file_name", ITEM_ANNOTATION, lost)
            continue
        width, height = _positive_int(image.get("width")), _positive_int(image.get("height"))
        yield ImageRecord(
            key=file_name,
            source=source,
            source_id=str(image.get("id", "")),
            boxes=tuple(boxes_by_image.get(_id(image.get("id")), ())),
            annotated_size=(width, height) if width and height else None,
        )


FORMAT = AnnotationFormat(
    name="coco",
    summary="COCO detection JSON, one file per split",
    example="--format coco --annotations annotations/instances_val2017.json --images val2017",
    folder_patterns=("*.json",),
    parse=parse,
    sniff=sniff,
)
