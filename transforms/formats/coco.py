"""COCO object-detection JSON: one file lists every image, category and box of a split.

Ids are what tie boxes to images and names to boxes, so an id given twice is never guessed at
(`coco_duplicate_id`): every `images` entry sharing an id is rejected, with the boxes of that id counted
once, on the first of them (they would land on whichever image came last); a box whose category id is
declared with two different names is rejected (it would take the last name). A category declared
twice with the same name is the same category, and its boxes are kept.

An annotation rejected while its image is known (an undeclared category, a bbox that is not [x, y, w, h],
a category declared with two names) travels with that image's record (`ImageRecord.rejected_boxes`), so
an image that lost every box is rejected rather than written as a negative; one that names no known
image, and those of an image the file itself gets wrong (a shared id, no file_name), are rejected apart.

Category ids are the label ids (`parse_numbered`, `parse_part_numbered`: a ClassNumbering of every declared
category, used or not): ints, or strings of digits some tools write; an id declared with two names, or
that is no whole number >= 0, numbers nothing. A file whose boxes use category 0 has its ids shifted by
one by the label map (0 is the background).
"""
from __future__ import annotations

import codecs
import io
import json
import math
import re
import functools
import zlib
from collections import defaultdict
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional

from transforms.formats import NO_CONTEXT, AnnotationFormat, ClassNumbering, ParseContext, Parsed, _json
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, Ignored, ImageRecord, Rejection, carried


def _positive_int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _id(value: Any) -> Any:
    """COCO ids are ints (some tools write strings); anything else can match nothing."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


_FLOAT32_MAX = 3.4028234663852886e38
_number = _json.number
_IMAGES_KEY = re.compile(rb'"images"\s*:')


def _box_fields(annotation: dict) -> Optional[tuple]:
    """(xmin, ymin, xmax, ymax, is_crowd, area, segmentation) of an annotation; None if its bbox is not [x, y, w, h]."""
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
    return (
        x,
        y,
        x + width if math.isfinite(width) else width,
        y + height if math.isfinite(height) else height,
        bool(crowd) if isinstance(crowd, (int, bool)) else None,
        area,
        json.dumps(segmentation, separators=(",", ":")) if _is_segmentation(segmentation) else None,
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


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT, numbered: bool = False) -> Iterator[Parsed]:
    """Every record and rejection of a COCO file already in memory (the streaming parse, as one part)."""
    return parse_part(source, lambda: io.BytesIO(data), context, 0, 1, numbered)


def numeric_id(category_id: Any) -> Optional[int]:
    """A category id as a label id: an int >= 0, or a string of ASCII digits; None for anything else."""
    if isinstance(category_id, int) and not isinstance(category_id, bool):
        return category_id if category_id >= 0 else None
    if isinstance(category_id, str) and category_id.isascii() and category_id.isdigit():
        return int(category_id)
    return None


def part_of(image_id: Any, parts: int) -> int:
    """The part (0..parts-1) an image id belongs to, the same in every process: a CRC of its canonical text.

    Ints and strings differ (1 is not "1", as in matching); an id that can match nothing is part 0.
    """
    image_id = _id(image_id)
    if parts <= 1 or image_id is None:
        return 0
    if isinstance(image_id, int):
        return zlib.crc32(b"i%d" % image_id) % parts
    return zlib.crc32(b"s" + image_id.encode("utf-8", "surrogatepass")) % parts


def parse_part(
    source: str, open_stream: Callable[[], BinaryIO], context: ParseContext, part: int, parts: int,
    numbered: bool = False,
) -> Iterator[Parsed]:
    """The records of part `part` of `parts`, with the rejections and counts that belong to it.

    One streaming pass over the file (memory: the part's share, not the file): each element of
    `images`, `annotations` and `categories` is decoded on its own by the standard decoder, so values
    are exactly what `json.loads` gives. An image is in part `part_of(id)`; an annotation in the part
    of its image_id. Categories are read by every part. File-level rejections (malformed JSON, no
    `images` list) come from part 0 only, so the union over the parts reports everything once.
    With `numbered`, a ClassNumbering too: the declared categories from part 0, whether the part's boxes
    use category 0 from every part.
    """
    state = _Document(part, parts)
    with open_stream() as stream:
        problem = state.read(source, stream)
    if problem is not None:
        if part == 0:
            yield problem
        return
    yield from state.results(source, numbered)


_SECTIONS = ("images", "annotations", "categories")


class _Document:
    """What one part keeps of a COCO file while it streams by; `results` resolves it at the end.

    A top-level key given twice counts once, the last time (as `json.loads` does): a section seen
    again starts over.
    """

    def __init__(self, part: int, parts: int):
        self.part, self.parts = part, parts
        self.is_object = False
        self.kinds: Dict[str, str] = {}  # section -> "list", "empty" (a falsy non-list) or "invalid"
        self.images: List[tuple] = []  # this part's images, as _image gives them
        self.annotations: List[Any] = []  # this part's annotations, as _annotation gives them
        self.categories: Dict[Any, List[str]] = {}  # category id -> its distinct names, in order
        self.source = ""

    def read(self, source: str, stream: BinaryIO) -> Optional[Rejection]:
        """Stream the file through; a `json_malformed` rejection if it is not JSON, else None."""
        self.source = source
        try:
            self._read(_Reader(stream))
        except _Malformed as error:
            return Rejection(source, "json_malformed", str(error), ITEM_ANNOTATION)
        except UnicodeDecodeError as error:
            return Rejection(source, "json_malformed", str(error)[:200], ITEM_ANNOTATION)
        except (ValueError, RecursionError) as error:  # int digit limit, nesting beyond the stack, as json.loads
            return Rejection(source, "json_malformed", str(error)[:200] or type(error).__name__, ITEM_ANNOTATION)
        return None

    def _read(self, reader: "_Reader") -> None:
        if reader.peek() != "{":
            reader.skip()  # valid JSON that is not an object is coco_invalid; invalid JSON is malformed
        else:
            self.is_object = True
            for key in reader.members():
                if key in _SECTIONS and reader.peek() == "[":
                    self.kinds[key] = "list"
                    getattr(self, f"_read_{key}")(reader)
                else:
                    truthy = reader.skip()
                    if key in _SECTIONS:
                        self.kinds[key] = "invalid" if truthy else "empty"
        reader.end()

    def _read_images(self, reader: "_Reader") -> None:
        self.images = []
        for index, image in enumerate(reader.elements()):
            image_id = image.get("id") if isinstance(image, dict) else None
            if part_of(image_id, self.parts) == self.part:
                self.images.append(_image(index, image))

    def _read_annotations(self, reader: "_Reader") -> None:
        self.annotations = []
        for index, annotation in enumerate(reader.elements()):
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            if part_of(image_id, self.parts) == self.part:
                self.annotations.append(_annotation(self.source, index, annotation))

    def _read_categories(self, reader: "_Reader") -> None:
        self.categories = {}
        for category in reader.elements():
            if isinstance(category, dict) and isinstance(category.get("name"), str):
                names = self.categories.setdefault(_id(category.get("id")), [])
                if category["name"] not in names:
                    names.append(category["name"])

    def results(self, source: str, numbered: bool = False) -> Iterator[Parsed]:
        if not self.is_object or self.kinds.get("images") != "list":
            if self.part == 0:
                yield Rejection(source, "coco_invalid", "no `images` list at the top level", ITEM_ANNOTATION)
            return
        for section in ("categories", "annotations"):
            if self.kinds.get(section) == "invalid":
                if self.part == 0:
                    yield Rejection(source, "coco_invalid", f"`{section}` is not a list", ITEM_ANNOTATION)
                return
        annotations = self.annotations if self.kinds.get("annotations") == "list" else []
        categories = self.categories if self.kinds.get("categories") == "list" else {}
        known_images = {image[1] for image in self.images if image[1] is not _NOT_AN_OBJECT}
        boxes_by_image: Dict[Any, List[Box]] = defaultdict(list)
        rejected_by_image: Dict[Any, List[Rejection]] = defaultdict(list)  # box rejections of a known image
        keypoints, zero_used = 0, False
        for pending in annotations:
            resolved = _resolve(source, pending, known_images, categories)
            if isinstance(resolved, Rejection):  # it names no known image: rejected on its own
                yield resolved
                continue
            image_id, box, has_keypoints = resolved
            if isinstance(box, Rejection):
                rejected_by_image[image_id].append(box)
                continue
            boxes_by_image[image_id].append(box)
            keypoints += has_keypoints
            zero_used = zero_used or numeric_id(_id(pending[2])) == 0
        if keypoints:
            yield Ignored("coco_keypoints", keypoints)
        if numbered:
            declared = _declared(categories) if self.part == 0 else ()
            if declared or zero_used:
                yield ClassNumbering(declared, zero_used)
        shared = _shared_ids(self.images)
        for index, image_id, file_name, source_id, size in self.images:
            if image_id in shared:
                yield _shared_id(source, index, image_id, file_name, shared[image_id], boxes_by_image)
                if index == shared[image_id][0]:  # the id's boxes are counted once, on its first entry
                    yield from rejected_by_image.get(image_id, ())
                continue
            if file_name is None:
                lost = len(boxes_by_image.get(image_id, ())) if image_id not in (None, _NOT_AN_OBJECT) else 0
                yield Rejection(source, "coco_invalid", f"image {index} has no file_name", ITEM_ANNOTATION, lost)
                if image_id not in (None, _NOT_AN_OBJECT):
                    yield from rejected_by_image.get(image_id, ())
                continue
            yield ImageRecord(
                key=file_name,
                source=source,
                source_id=source_id,
                boxes=tuple(boxes_by_image.get(image_id, ())),
                annotated_size=size,
                rejected_boxes=carried(rejected_by_image.get(image_id, ())),
            )


def _declared(categories: Dict[Any, List[str]]) -> tuple:
    """(label id, name) of every category declared with one name and a usable id, in id order."""
    declared = []
    for category_id, names in categories.items():
        number = numeric_id(category_id)
        if number is not None and len(names) == 1:
            declared.append((number, names[0]))
    return tuple(sorted(declared))


_NOT_AN_OBJECT = object()  # the id of an `images` entry that is not an object: it is no known image


def _shared_ids(images: List[tuple]) -> Dict[Any, List[int]]:
    """The ids given to more than one `images` entry, each with the indexes of its entries.

    An image id is in one part (`part_of`), so each part finds every entry of the ids it holds.
    """
    indexes: Dict[Any, List[int]] = defaultdict(list)
    for index, image_id, *_ in images:
        if image_id is not None and image_id is not _NOT_AN_OBJECT:  # ids no annotation can name
            indexes[image_id].append(index)
    return {image_id: found for image_id, found in indexes.items() if len(found) > 1}


def _shared_id(source: str, index: int, image_id: Any, file_name: Optional[str], entries: List[int],
               boxes_by_image: Dict[Any, List[Box]]) -> Rejection:
    """The rejection of an `images` entry whose id another entry has too; the first carries the id's boxes."""
    listed = ", ".join(map(str, entries[:5])) + (", ..." if len(entries) > 5 else "")
    detail = (f"image {index}: id {image_id!r} is the id of {len(entries)} images ({listed}), whose boxes "
              f"cannot be told apart (counted on image {entries[0]}); file_name {file_name!r}")
    boxes = len(boxes_by_image.get(image_id, ())) if index == entries[0] else 0
    return Rejection(source, "coco_duplicate_id", detail, ITEM_ANNOTATION, boxes)


def _image(index: int, image: Any) -> tuple:
    """(index, id, file name or None, source id, annotated size) of one `images` entry."""
    if not isinstance(image, dict):
        return (index, _NOT_AN_OBJECT, None, "", None)
    image_id = _id(image.get("id"))
    file_name = image.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        return (index, image_id, None, "", None)
    width, height = _positive_int(image.get("width")), _positive_int(image.get("height"))
    return (index, image_id, file_name, str(image.get("id", "")), (width, height) if width and height else None)


def _annotation(source: str, index: int, annotation: Any) -> Any:
    """One `annotations` entry, read as far as it can be without the images and categories."""
    if not isinstance(annotation, dict):
        return Rejection(source, "box_malformed", f"annotation {index} is not an object", ITEM_BOX)
    fields = _box_fields(annotation)
    return (
        f"annotation {annotation.get('id', index)}",
        annotation.get("image_id"),
        annotation.get("category_id"),
        fields,
        annotation.get("bbox") if fields is None else None,
        bool(annotation.get("keypoints")),
    )


def _resolve(source: str, pending: Any, known_images: set, categories: Dict[Any, List[str]]):
    """(image id, box or its rejection, has keypoints) of a read annotation of a known image; the rejection
    of one that names no known image (or is not an object)."""
    if isinstance(pending, Rejection):
        return pending
    where, raw_image_id, raw_category_id, fields, bbox, has_keypoints = pending
    image_id = _id(raw_image_id)
    if image_id is None or image_id not in known_images:
        return Rejection(source, "box_unknown_image", f"{where}: image_id {raw_image_id!r} is not in `images`", ITEM_BOX)
    category_id = _id(raw_category_id)
    if category_id is None or category_id not in categories:
        detail = f"{where}: category_id {raw_category_id!r} is not in `categories`"
        return image_id, Rejection(source, "box_unknown_class", detail, ITEM_BOX), False
    names = categories[category_id]
    if len(names) > 1:
        shown = ", ".join(map(repr, names[:3])) + (", ..." if len(names) > 3 else "")
        detail = f"{where}: category_id {raw_category_id!r} is declared with {len(names)} names ({shown})"
        return image_id, Rejection(source, "coco_duplicate_id", detail, ITEM_BOX), False
    if fields is None:
        return image_id, Rejection(source, "box_malformed", f"{where}: bbox {bbox!r} is not [x, y, w, h]", ITEM_BOX), False
    xmin, ymin, xmax, ymax, is_crowd, area, segmentation = fields
    box = Box(names[0], xmin, ymin, xmax, ymax, is_crowd=is_crowd, area=area, segmentation=segmentation)
    return image_id, box, has_keypoints


class _Malformed(Exception):
    """The file is not JSON."""


_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as json.loads skips it
_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")  # between elements, or the end of the array
_CHUNK = 8 << 20  # bytes read at a time
_MARGIN = 1 << 20  # characters kept ahead of a value being decoded
_DECODER = json.JSONDecoder()


class _Reader:
    """A JSON text streamed from a binary file, walked one level at a time.

    Scalars and the elements of the arrays and objects it walks are decoded whole by the standard
    decoder (`raw_decode`), so they are exactly what `json.loads` makes of them; memory is one chunk
    plus the largest single element. Encodings are detected as `json.loads` detects them.
    """

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.buf = ""
        self.pos = 0
        self.base = 0  # characters dropped before buf
        self.eof = False
        head = stream.read(_CHUNK)
        self.decoder = codecs.getincrementaldecoder(json.detect_encoding(head))("strict")
        self._append(head)

    def _append(self, data: bytes) -> None:
        text = self.decoder.decode(data, final=not data)
        self.eof = not data
        self.base += self.pos
        self.buf = self.buf[self.pos:] + text
        self.pos = 0

    def _more(self, need: int) -> None:
        """Read until `need` characters lie ahead of pos, or the end of the file."""
        while not self.eof and len(self.buf) - self.pos < need:
            self._append(self.stream.read(max(_CHUNK, need)))

    def _fail(self, what: str, at: Optional[int] = None):
        raise _Malformed(f"{what} (char {self.base + (self.pos if at is None else at)})")

    def peek(self) -> str:
        """The next significant character ('' at the end), not consumed."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos:self.pos + 1]
            self._more(1)

    def value(self) -> Any:
        """The next value, decoded whole."""
        self.peek()
        need = _MARGIN
        while True:
            self._more(need)
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as error:
                truncated = error.pos >= len(self.buf) - 64 or error.msg.startswith("Unterminated string")
                if truncated and not self.eof:
                    need = 2 * (len(self.buf) - self.pos)
                    continue
                self._fail(error.msg, error.pos)
            if end >= len(self.buf) - 64 and not self.eof:  # a number may go on in the next chunk
                need = 2 * (len(self.buf) - self.pos)
                continue
            self.pos = end
            return value

    def _expect(self, char: str) -> None:
        if self.peek() != char:
            self._fail(f"Expecting {char!r}")
        self.pos += 1

    def _another(self, closer: str) -> bool:
        """After an element: past its ',' (True: another follows) or past `closer` (False: the end)."""
        char = self.peek()
        self.pos += 1
        if char == closer:
            return False
        if char != ",":
            self.pos -= 1
            self._fail("Expecting ',' delimiter")
        return True

    def elements(self) -> Iterator[Any]:
        """The elements of the array that comes next, each decoded whole."""
        self._expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        scan, separator = _DECODER.scan_once, _SEPARATOR.match
        while True:
            buf, pos = self.buf, self.pos
            if len(buf) - pos > _MARGIN or self.eof:  # the fast path: the element is surely in buf
                try:
                    value, end = scan(buf, pos)
                except (StopIteration, json.JSONDecodeError):  # cut by the buffer's end, or malformed
                    value = self.value()  # the slow path reads on, or raises the decoder's error
                else:
                    if end < len(buf) - 64 or self.eof:
                        self.pos = end
                    else:  # a number may go on in the next chunk
                        value = self.value()
            else:
                value = self.value()
            yield value
            found = separator(self.buf, self.pos)
            if found is not None:
                self.pos = found.end()
                if found.group(1) == "]":
                    return
                continue
            if not self._another("]"):
                return

    def members(self) -> Iterator[str]:
        """The keys of the object that comes next; the caller consumes each key's value."""
        self._expect("{")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                self._fail("Expecting property name enclosed in double quotes")
            key = self.value()
            self._expect(":")
            yield key
            if not self._another("}"):
                return

    def skip(self) -> bool:
        """Consume the next value, an array or object element by element; whether it is truthy."""
        char = self.peek()
        count = 0
        if char == "[":
            for _ in self.elements():
                count += 1
            return count > 0
        if char == "{":
            for _ in self.members():
                self.skip()
                count += 1
            return count > 0
        if char == "":
            self._fail("Expecting value")
        return bool(self.value())

    def end(self) -> None:
        if self.peek() != "":
            self._fail("Extra data")


FORMAT = AnnotationFormat(
    name="coco",
    summary="COCO detection JSON, one file per split",
    example="--format coco --annotations annotations/instances_val2017.json --images val2017",
    folder_patterns=("*.json",),
    parse=parse,
    sniff=sniff,
    parse_part=parse_part,
    parse_numbered=functools.partial(parse, numbered=True),
    parse_part_numbered=functools.partial(parse_part, numbered=True),
)
