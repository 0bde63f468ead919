"""COCO's streaming parse by parts (transforms/formats/coco.py `parse_part`, `parse_annotation_part`).

The oracle is the pre-streaming parser (json.loads of the whole file), kept here verbatim in logic
(plus the refusal of duplicate ids, and the box rejections of a known image travelling with its record):
for any document, the union over parts of `parse_part` is exactly what it gives, each item once.
"""
from __future__ import annotations

import io
import json
from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_formats import _COCO, _COCO_ANNOTATION, _coco_document
from transforms.formats import AnnotationFormat, parse_annotation_file, parse_annotation_part
from transforms.formats import _json, coco
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, Ignored, ImageRecord, Rejection, carried

SOURCE = "annotations/instances_big.json"


def _oracle(source, data):
    """COCO as parsed before streaming: the whole document from json.loads."""
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
    categories = defaultdict(list)  # id -> its distinct names
    for category in document.get("categories") or []:
        if isinstance(category, dict) and isinstance(category.get("name"), str):
            if category["name"] not in categories[coco._id(category.get("id"))]:
                categories[coco._id(category.get("id"))].append(category["name"])
    entries = defaultdict(list)  # image id -> the indexes of the images that have it
    for index, image in enumerate(document["images"]):
        if isinstance(image, dict) and coco._id(image.get("id")) is not None:
            entries[coco._id(image.get("id"))].append(index)
    boxes_by_image = defaultdict(list)
    rejected_by_image = defaultdict(list)  # the box rejections of a known image, in annotation order
    keypoints = 0
    known_images = {coco._id(image.get("id")) for image in document["images"] if isinstance(image, dict)}
    for index, annotation in enumerate(document.get("annotations") or []):
        if not isinstance(annotation, dict):
            yield Rejection(source, "box_malformed", f"annotation {index} is not an object", ITEM_BOX)
            continue
        where = f"annotation {annotation.get('id', index)}"
        image_id = coco._id(annotation.get("image_id"))
        if image_id is None or image_id not in known_images:
            yield Rejection(source, "box_unknown_image", f"{where}: image_id {annotation.get('image_id')!r} is not in `images`", ITEM_BOX)
            continue
        category_id = coco._id(annotation.get("category_id"))
        if category_id is None or not categories.get(category_id):
            rejected_by_image[image_id].append(Rejection(source, "box_unknown_class", f"{where}: category_id {annotation.get('category_id')!r} is not in `categories`", ITEM_BOX))
            continue
        names = categories[category_id]
        if len(names) > 1:
            shown = ", ".join(map(repr, names[:3])) + (", ..." if len(names) > 3 else "")
            detail = f"{where}: category_id {annotation.get('category_id')!r} is declared with {len(names)} names ({shown})"
            rejected_by_image[image_id].append(Rejection(source, "coco_duplicate_id", detail, ITEM_BOX))
            continue
        fields = coco._box_fields(annotation)
        if fields is None:
            rejected_by_image[image_id].append(Rejection(source, "box_malformed", f"{where}: bbox {annotation.get('bbox')!r} is not [x, y, w, h]", ITEM_BOX))
            continue
        x1, y1, x2, y2, crowd, area, segmentation = fields
        boxes_by_image[image_id].append(
            Box(names[0], x1, y1, x2, y2, is_crowd=crowd, area=area, segmentation=segmentation)
        )
        if annotation.get("keypoints"):
            keypoints += 1
    if keypoints:
        yield Ignored("coco_keypoints", keypoints)
    for index, image in enumerate(document["images"]):
        file_name = image.get("file_name") if isinstance(image, dict) else None
        image_id = coco._id(image.get("id")) if isinstance(image, dict) else None
        if image_id is not None and len(entries[image_id]) > 1:
            shared = entries[image_id]
            listed = ", ".join(map(str, shared[:5])) + (", ..." if len(shared) > 5 else "")
            detail = (f"image {index}: id {image_id!r} is the id of {len(shared)} images ({listed}), whose boxes "
                      f"cannot be told apart (counted on image {shared[0]}); "
                      f"file_name {file_name if isinstance(file_name, str) and file_name else None!r}")
            lost = len(boxes_by_image.get(image_id, ())) if index == shared[0] else 0
            yield Rejection(source, "coco_duplicate_id", detail, ITEM_ANNOTATION, lost)
            if index == shared[0]:  # the id's box rejections, once, on their own
                yield from rejected_by_image.get(image_id, ())
            continue
        if not isinstance(file_name, str) or not file_name:
            lost = len(boxes_by_image.get(image_id, ())) if image_id is not None else 0
            yield Rejection(source, "coco_invalid", f"image {index} has no file_name", ITEM_ANNOTATION, lost)
            if image_id is not None:
                yield from rejected_by_image.get(image_id, ())
            continue
        width, height = coco._positive_int(image.get("width")), coco._positive_int(image.get("height"))
        yield ImageRecord(
            key=file_name, source=source, source_id=str(image.get("id", "")),
            boxes=tuple(boxes_by_image.get(image_id, ())),
            annotated_size=(width, height) if width and height else None,
            rejected_boxes=carried(rejected_by_image.get(image_id, ())),
        )


def _key(item):
    """A comparable, NaN-safe identity of an item (NaN != NaN would fail equal multisets).

    A json_malformed detail is the decoder's message, worded differently by the two; not compared.
    """
    if isinstance(item, Rejection) and item.reason == "json_malformed":
        return repr((item.source, item.reason, item.item, item.boxes))
    return repr(item)


def _multiset(items):
    return Counter(_key(item) for item in items)


def _union(data, parts, source=SOURCE, chunk=None):
    out = []
    for part in range(parts):
        out.extend(coco.parse_part(source, lambda: io.BytesIO(data), coco.NO_CONTEXT, part, parts))
    return out


def _merged_ignored(items):
    """Ignored counts summed per kind (each part counts its own), other items as they are."""
    counts = Counter()
    rest = []
    for item in items:
        if isinstance(item, Ignored):
            counts[item.what] += item.count
        else:
            rest.append(item)
    return rest + [Ignored(what, count) for what, count in sorted(counts.items())]


_ANNOTATION_WITH_KEYPOINTS = _COCO_ANNOTATION.flatmap(
    lambda annotation: st.sampled_from([[], [1, 2, 2], None]).map(lambda kp: {**annotation, "keypoints": kp})
)
_STRING_IDS = st.fixed_dictionaries(
    {
        "images": st.lists(
            st.fixed_dictionaries({"id": st.sampled_from(["a", "b", "c", 1, 2, "1"])},
                                  optional={"file_name": st.sampled_from(["x/a.jpg", "b.jpg", "", 5])}),
            max_size=8,
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {"image_id": st.sampled_from(["a", "b", "c", "d", 1, "1", 2, None, 1.0]),
                 "category_id": st.sampled_from([1, "1", 7]),
                 "bbox": st.sampled_from([[0, 0, 1, 1], [1.5, 2.25, 3, 4], [1, 2], "x"])},
                optional={"id": st.integers(0, 99), "keypoints": st.sampled_from([[1, 2, 2], []])},
            ) | _ANNOTATION_WITH_KEYPOINTS | st.integers(),
            max_size=12,
        ),
        "categories": st.sampled_from([
            [{"id": 1, "name": "dog"}, {"id": "1", "name": "cat"}],
            [{"id": 1, "name": "dog"}, {"id": 1, "name": "dog"}, {"id": "1", "name": "cat"}],  # twice, one name
            [{"id": 1, "name": "dog"}, {"id": "1", "name": "cat"}, {"id": 1, "name": "cow"}],  # two names
            [{"id": 7, "name": n} for n in ("a", "b", "c", "d", "a")] + [{"id": 1, "name": "dog"}],
        ]),
    }
)
_ANY_COCO = st.one_of(_COCO, _STRING_IDS)


def _text(document, order, indent):
    """The document as JSON text with its top-level keys in `order` (annotations may come first)."""
    if isinstance(document, dict):
        keys = sorted(document, key=lambda key: order.index(key) if key in order else -1)
        document = {key: document[key] for key in keys}
    return json.dumps(document, indent=indent).encode()


@given(
    _ANY_COCO,
    st.permutations(["images", "annotations", "categories"]),
    st.sampled_from([None, 1]),
)
def test_parts_together_are_the_whole_file_parse(document, order, indent):
    data = _text(document, order, indent)
    expected = _multiset(_oracle(SOURCE, data))
    assert _multiset(coco.parse(SOURCE, data)) == expected
    for parts in range(1, 6):
        items = _union(data, parts)
        assert _multiset(_merged_ignored(items)) == expected, parts


@given(st.binary(max_size=200) | st.text(max_size=60).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_bytes_that_are_not_coco_are_rejected_once_as_parse_rejects_them(data):
    expected = _multiset(_oracle(SOURCE, data))
    for parts in (1, 3):
        assert _multiset(_merged_ignored(_union(data, parts))) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"", b"{", b"{} {}", b"[1, 2,]", b"\xff\xfe\x00garbage", b"[" * 200000 + b"]" * 200000,
        b'{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [' + b"[" * 5000,
        b'{"images": [], "annotations": [], "categories": []}  x',
    ],
)
def test_malformed_json_is_one_json_malformed_from_part_0(data):
    assert [item.reason for item in coco.parse_part(SOURCE, lambda: io.BytesIO(data), coco.NO_CONTEXT, 0, 3)] == [
        "json_malformed"
    ]
    for part in (1, 2):
        assert list(coco.parse_part(SOURCE, lambda: io.BytesIO(data), coco.NO_CONTEXT, part, 3)) == []


def test_encodings_and_duplicate_keys_read_as_json_loads_reads_them():
    text = _coco_document().decode()
    for data in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16"), text.encode("utf-32-le"),
                 b'{"images": [{"id": 9, "file_name": "gone.jpg"}], ' + text[1:].encode()):
        assert _multiset(_union(data, 2)) == _multiset(_oracle(SOURCE, data)) != Counter()


def test_elements_larger_than_a_chunk_and_numbers_cut_by_a_chunk(monkeypatch):
    monkeypatch.setattr(coco, "_CHUNK", 7)
    monkeypatch.setattr(coco, "_MARGIN", 3)
    document = json.loads(_coco_document())
    document["images"][0]["file_name"] = "x" * 500 + ".jpg"
    document["annotations"][0]["bbox"] = [123456789.125, 20, 30.5, 1e-7]
    data = json.dumps(document).encode()
    assert _multiset(_union(data, 2)) == _multiset(_oracle(SOURCE, data))


def test_every_image_and_annotation_is_in_exactly_one_part():
    images = [{"id": index, "file_name": f"{index}.jpg"} for index in range(200)]
    annotations = [{"id": index, "image_id": index % 200, "category_id": 1, "bbox": [0, 0, 1, 1]} for index in range(400)]
    data = json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}).encode()
    sizes = []
    for part in range(4):
        records = list(coco.parse_part(SOURCE, lambda: io.BytesIO(data), coco.NO_CONTEXT, part, 4))
        assert all(len(record.boxes) == 2 for record in records)
        sizes.append(len(records))
    assert sum(sizes) == 200 and min(sizes) > 20  # spread, not all in one part
    assert coco.part_of(7, 4) == coco.part_of(7, 4) and coco.part_of("7", 1) == 0
    assert coco.part_of(None, 4) == coco.part_of([1], 4) == coco.part_of(True, 4) == 0


def test_parse_annotation_part_applies_the_file_checks_and_opens_a_fresh_stream_per_call():
    data = _coco_document(images=[{"id": 1, "file_name": "../up.jpg"}, {"id": 2, "file_name": "train/b.jpg"}])
    opened = []

    def open_stream():
        opened.append(1)
        return io.BytesIO(data)

    parts = [list(parse_annotation_part(coco.FORMAT, SOURCE, open_stream, part=part, parts=2)) for part in range(2)]
    assert _multiset(parts[0] + parts[1]) == _multiset(parse_annotation_file(coco.FORMAT, SOURCE, data))
    assert len(opened) >= 2


def test_a_part_that_fails_midway_yields_only_its_rejection_naming_the_part():
    def broken_in_part_1(source, open_stream, context, part, parts):
        yield ImageRecord(key=f"{part}.jpg", source=source)
        if part == 1:
            raise OSError("connection reset")

    fmt = AnnotationFormat("broken", "", "", ("*",), coco.parse, sniff=lambda path, head: False,
                           parse_part=broken_in_part_1)
    assert list(parse_annotation_part(fmt, "f.json", lambda: io.BytesIO(b""), part=0, parts=2)) == [
        ImageRecord(key="0.jpg", source="f.json", source_id="0.jpg")  # `checked` fills in the id
    ]
    # Part 0 went fine: the images of part 1 are not lost without a word.
    assert list(parse_annotation_part(fmt, "f.json", lambda: io.BytesIO(b""), part=1, parts=2)) == [
        Rejection("f.json", "annotation_unreadable", "part 2 of 2: OSError: connection reset", ITEM_ANNOTATION)
    ]


def test_a_format_without_parse_part_is_parsed_whole_by_part_0():
    from transforms.formats import voc

    assert voc.FORMAT.parse_part is None
    data = b"<annotation><filename>a.jpg</filename></annotation>"
    whole = list(parse_annotation_file(voc.FORMAT, "a.xml", data))
    assert list(parse_annotation_part(voc.FORMAT, "a.xml", lambda: io.BytesIO(data), part=0, parts=2)) == whole
    assert list(parse_annotation_part(voc.FORMAT, "a.xml", lambda: io.BytesIO(data), part=1, parts=2)) == []
