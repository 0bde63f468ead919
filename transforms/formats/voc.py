"""Pascal VOC XML: one file per image (LabelImg, CVAT and Roboflow exports)."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Iterator, Optional

from transforms.formats import NO_CONTEXT, AnnotationFormat, ParseContext, Parsed, _text
from transforms.formats._xml import VOC, parse_xml, xml_kinds
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, ImageRecord, Rejection, carried
from transforms.source_splits import listed_split


UNSPECIFIED_POSE = "Unspecified"  # what VOC and LabelImg write when no pose is given


def _child(element: Optional[ElementTree.Element], name: str) -> Optional[str]:
    """The stripped text of the first child called `name` (a plain tag: the C find, not ElementPath)."""
    found = None if element is None else element.find(name)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _size(root: ElementTree.Element) -> Optional[tuple]:
    size = root.find("size")
    width = _text.positive_int(_child(size, "width"))
    height = _text.positive_int(_child(size, "height"))
    return (width, height) if width and height else None


def sniff(path: str, head: bytes) -> bool:
    """An XML file with root <annotation> and a <filename> (with <object><bndbox> or <size>, unless it is a
    negative without size), and nothing of MIT LabelMe's XML (<object><polygon><pt>, <imagesize>,
    <source><sourceImage>), whose root is <annotation> too (CVAT's is <annotations>): see _xml.xml_kinds."""
    return path.lower().endswith(".xml") and xml_kinds(head) == {VOC}


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT) -> Iterator[Parsed]:
    root = parse_xml(source, data)
    if isinstance(root, Rejection):
        yield root
        return
    if root.tag != "annotation":
        yield Rejection(source, "voc_invalid", f"root element is <{root.tag}>, not <annotation>", ITEM_ANNOTATION)
        return
    filename = _child(root, "filename")
    if not filename:
        yield Rejection(source, "voc_invalid", "no <filename>", ITEM_ANNOTATION)
        return
    boxes, rejected = [], []  # the rejected boxes travel with the record
    for index, obj in enumerate(root.iter("object")):
        label = _child(obj, "name") or ""
        bndbox = obj.find("bndbox")
        try:
            corners = [
                _text.number(_child(bndbox, corner), f"<bndbox/{corner}>")
                for corner in ("xmin", "ymin", "xmax", "ymax")
            ]
        except ValueError as error:
            rejected.append(Rejection(source, "box_malformed", f"object {index} ({label}): {error}", ITEM_BOX))
            continue
        # As the OD API's create_pascal_tf_record: every object has difficult, truncated and view; a tag an
        # object lacks is 0 (or VOC's "Unspecified" pose) for that object, never a key dropped for the image.
        boxes.append(
            Box(
                label,
                *corners,
                difficult=bool(_text.flag(_child(obj, "difficult"))),
                truncated=bool(_text.flag(_child(obj, "truncated"))),
                view=_child(obj, "pose") or UNSPECIFIED_POSE,
            )
        )
    yield ImageRecord(
        key=filename,
        source=source,
        boxes=tuple(boxes),
        annotated_size=_size(root),
        # ImageSets/Main lists ids: the annotation file's stem (Annotations/{id}.xml), else the image's
        source_split=listed_split(context.image_splits, source, filename),
        rejected_boxes=carried(rejected),
    )


FORMAT = AnnotationFormat(
    name="voc",
    summary="Pascal VOC XML, one file per image",
    example="--format voc --annotations data/Annotations --images data/JPEGImages",
    folder_patterns=("**.xml",),
    parse=parse,
    sniff=sniff,
)
