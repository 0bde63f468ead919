"""The values that travel between the pipeline's steps.

Only these small metadata objects cross a shuffle (records in packed batches); image bytes are read in
the shard writer.
"""
from __future__ import annotations

import dataclasses
import json
import operator
import pickle
import zlib
from typing import Iterable, Iterator, List, Optional, Tuple

PIXELS = "pixels"  # box coordinates in pixels of the annotated image
RELATIVE = "relative"  # box coordinates already divided by width and height (YOLO, CreateML-style)

# What a rejected item is: an annotation file, an image, or a single box.
ITEM_ANNOTATION = "annotation"
ITEM_IMAGE = "image"
ITEM_BOX = "box"
MAX_DETAIL = 300  # characters of a rejection's detail


@dataclasses.dataclass(frozen=True)
class Box:
    """One object as the source annotated it; validated and normalized in the writer."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: Optional[bool] = None
    truncated: Optional[bool] = None
    is_crowd: Optional[bool] = None
    area: Optional[float] = None
    segmentation: Optional[str] = None  # COCO polygons or RLE as JSON text, rendered only for --include_masks
    view: Optional[str] = None  # VOC <pose> (image/object/view, as the OD API's create_pascal_tf_record writes it)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """Everything one annotation source says about one image.

    `key` is the image's path relative to --images, normalized; it joins the record with the image
    file and drives the shard assignment, so it must be stable across runs.
    """

    key: str
    source: str  # the annotation file this came from
    source_id: str = ""  # empty: the key (the relative image path) is the id
    boxes: Tuple[Box, ...] = ()
    units: str = PIXELS
    annotated_size: Optional[Tuple[int, int]] = None  # (width, height) as the annotation states
    source_split: Optional[str] = None
    image_bytes: int = 0  # file size, known after the join; used to size shards
    images_root: str = ""  # the --images folder the key is relative to, set by the join
    embedded_format: str = ""  # set when the image is not a file but embedded in `source`, in this format
    # (reason, detail) of each of the image's boxes its parser rejected (an unknown class, bad numbers, ...):
    # they travel with the image, so the writer can tell an image that lost every box from a negative
    # (transforms/records/encode.py unlabeled_rejection); `box_rejections` makes them Rejections again.
    rejected_boxes: Tuple[Tuple[str, str], ...] = ()


def carried(rejections: Iterable["Rejection"]) -> Tuple[Tuple[str, str], ...]:
    """Box rejections of one image as a record carries them (`ImageRecord.rejected_boxes`): their source is
    the record's, their item a box, so (reason, detail) is all that needs to travel."""
    return tuple((rejection.reason, rejection.detail) for rejection in rejections)


def rejected_box(reason: str, detail: str) -> Tuple[str, str]:
    """One rejected box as a record carries it, made without a Rejection (a parser that may reject a box per
    line of a huge file holds these small pairs only): the detail made one line, as a Rejection's is."""
    return reason, one_line(detail)


def one_line(detail) -> str:
    """A rejection's detail: one line for a person, whatever an exception's message held, at most MAX_DETAIL."""
    return " ".join(str(detail).split())[:MAX_DETAIL]


def box_rejections(record: ImageRecord) -> Iterator["Rejection"]:
    """The box rejections its parser made for `record`, as Rejections of its annotation file, made one at a
    time (a record may carry a rejection per line of a huge label file)."""
    return (Rejection(record.source, reason, detail, ITEM_BOX) for reason, detail in record.rejected_boxes)


def boxes_given(record: ImageRecord) -> int:
    """How many boxes the annotation gave the image: those it carries and those its parser rejected."""
    return len(record.boxes) + len(record.rejected_boxes)


_BOX_FIELDS = tuple(field.name for field in dataclasses.fields(Box))
_RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(ImageRecord))
_BOXES = _RECORD_FIELDS.index("boxes")
# every field of a box (a record) as a tuple, in one C call: a getattr per field was a tenth of the parse step
_BOX_ROW = operator.attrgetter(*_BOX_FIELDS)
_RECORD_ROW = operator.attrgetter(*_RECORD_FIELDS)


def pack(values: list) -> bytes:
    """A list of plain values as one compressed byte string: how per-image metadata crosses a shuffle.

    A local run keeps every shuffled element in the runner's memory between steps, decoded into Python
    objects when it groups them; a batch packed is one bytes object there, a fifth of the size of the
    same values as Beam-coded tuples and nothing for the runner to decode. Only the step that uses the
    values unpacks them.
    """
    return zlib.compress(pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpack(packed: bytes) -> list:
    """The values `pack` packed (only ever bytes this pipeline made: they are unpickled)."""
    return pickle.loads(zlib.decompress(packed))


def pack_records(records: Iterable[ImageRecord]) -> bytes:
    """A batch of records, packed as tuples of plain values: pickling dataclasses costs a call per object."""
    rows = []
    for record in records:
        row = list(_RECORD_ROW(record))
        row[_BOXES] = tuple(map(_BOX_ROW, record.boxes))
        rows.append(tuple(row))
    return pack(rows)


def _frozen(cls, names, values):
    made = object.__new__(cls)
    made.__dict__.update(zip(names, values))  # what the generated __init__ does, without its per-field cost
    return made


def unpack_records(packed: bytes) -> List[ImageRecord]:
    """The records pack_records packed."""
    records = []
    for row in unpack(packed):
        values = list(row)
        values[_BOXES] = tuple(_frozen(Box, _BOX_FIELDS, box) for box in row[_BOXES])
        records.append(_frozen(ImageRecord, _RECORD_FIELDS, values))
    return records


@dataclasses.dataclass(frozen=True)
class Ignored:
    """Source content the OD API record has no place for (COCO keypoints, ...): counted, not an error."""

    what: str
    count: int


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Something the run could not use, with a stable reason code and a line for a person."""

    source: str
    reason: str
    detail: str
    item: str = ITEM_IMAGE
    boxes: int = 0  # boxes of the rejected image or annotation, which are therefore not written

    def __post_init__(self):
        # One line for a person, whatever an exception's message held: rejected.jsonl is read by eye too.
        object.__setattr__(self, "detail", one_line(self.detail))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)

    def sort_key(self):
        return (self.source, self.item, self.reason, self.detail)
