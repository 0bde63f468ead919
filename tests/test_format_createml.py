"""transforms/formats/createml.py: Apple CreateML JSON (center x/y boxes); and the three JSON sniffers."""
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import voc_boxes
from transforms.formats import SNIFF_BYTES, flattened, parse_annotation_file
from transforms.formats import coco, createml, labelme, voc
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, PIXELS, Box, ImageRecord, Rejection

SOURCE = "train/_annotations.createml.json"


def _roboflow(items) -> bytes:
    """A Roboflow CreateML export: one minified list per split folder, `_annotations.createml.json`."""
    return json.dumps(items, separators=(",", ":")).encode("utf-8")


def _annotation(label, x, y, width, height):
    return {"label": label, "coordinates": {"x": x, "y": y, "width": width, "height": height}}


ROBOFLOW_ITEMS = [
    {
        "image": "raccoon-1_jpg.rf.8a6e2c3b1f0d4e5a9b7c6d5e4f3a2b1c.jpg",
        "annotations": [_annotation("raccoon", 301.5, 248, 441, 320)],  # VOC raccoon-1: 81 88 522 408
    },
    {
        "image": "pets_jpg.rf.0f1e2d3c4b5a69788796a5b4c3d2e1f0.jpg",
        "annotations": [_annotation("dog", 100, 50.5, 40, 21), _annotation("cat", 10.25, 20.75, 0.5, 1.5)],
    },
    {"image": "empty-kitchen_jpg.rf.1234567890abcdef1234567890abcdef.jpg", "annotations": []},
]
ROBOFLOW = _roboflow(ROBOFLOW_ITEMS)

# Create ML and labelImg write pretty JSON, keys in any order, with their own extra keys.
APPLE = json.dumps(
    [
        {
            "annotations": [
                {
                    "coordinates": {"height": 9, "width": 38, "x": 89, "y": 263.5},
                    "label": "Bar",
                    "uniqueIdentifier": "4E6FA307-C3E8-4C1B-B248-B5633396E954",
                }
            ],
            "image": "scans/02c6780b_scaled.jpg",
            "verified": False,
        }
    ],
    indent=2,
).encode()


def _records(items):
    return [item for item in items if isinstance(item, ImageRecord)]


# --- what the tools export ---------------------------------------------------------------------------


def test_roboflow_export_centers_become_corners():
    assert list(createml.parse(SOURCE, ROBOFLOW)) == [
        ImageRecord(
            key="raccoon-1_jpg.rf.8a6e2c3b1f0d4e5a9b7c6d5e4f3a2b1c.jpg",
            source=SOURCE,
            boxes=(Box("raccoon", 81.0, 88.0, 522.0, 408.0),),
            units=PIXELS,
        ),
        ImageRecord(
            key="pets_jpg.rf.0f1e2d3c4b5a69788796a5b4c3d2e1f0.jpg",
            source=SOURCE,
            boxes=(Box("dog", 80.0, 40.0, 120.0, 61.0), Box("cat", 10.0, 20.0, 10.5, 21.5)),
        ),
        ImageRecord(key="empty-kitchen_jpg.rf.1234567890abcdef1234567890abcdef.jpg", source=SOURCE, boxes=()),
    ]


def test_create_ml_export_with_extra_keys_in_any_order():
    assert list(createml.parse(SOURCE, APPLE)) == [
        ImageRecord(key="scans/02c6780b_scaled.jpg", source=SOURCE, boxes=(Box("Bar", 70.0, 259.0, 108.0, 268.0),))
    ]


def test_a_file_states_no_image_size():
    assert all(record.annotated_size is None for record in createml.parse(SOURCE, ROBOFLOW))


def test_raccoon_round_trip_matches_the_voc_boxes(raccoon):
    """Every raccoon VOC file written as Roboflow would (centers), read back: the same corners."""
    expected, items = {}, []
    for path in sorted((raccoon / "annotations").glob("*.xml")):
        filename, _, boxes = voc_boxes(path)
        expected[filename] = [Box(label, *corners) for label, *corners in boxes]
        items.append(
            {
                "image": filename,
                "annotations": [
                    _annotation(label, (xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin)
                    for label, xmin, ymin, xmax, ymax in boxes
                ],
            }
        )
    records = list(createml.parse(SOURCE, _roboflow(items)))
    assert len(records) == 200
    assert {record.key: list(record.boxes) for record in records} == expected


@pytest.mark.parametrize(
    "item",
    [
        {"image": "a.jpg", "annotations": []},
        {"image": "a.jpg"},
        {"image": "a.jpg", "annotations": None},
    ],
)
def test_an_image_without_annotations_is_a_negative_example(item):
    assert list(createml.parse(SOURCE, _roboflow([item]))) == [ImageRecord(key="a.jpg", source=SOURCE)]


def test_empty_list_is_no_images():
    assert list(createml.parse(SOURCE, b"[]")) == []


def test_byte_order_mark_and_non_ascii_names():
    data = b"\xef\xbb\xbf" + json.dumps([{"image": "forêt/écureuil 1.jpg", "annotations": [_annotation("écureuil", 5, 5, 2, 2)]}], ensure_ascii=False, indent=1).encode()
    assert list(createml.parse(SOURCE, data)) == [
        ImageRecord(key="forêt/écureuil 1.jpg", source=SOURCE, boxes=(Box("écureuil", 4.0, 4.0, 6.0, 6.0),))
    ]


def test_label_missing_or_null_is_empty_for_the_writer_to_reject():
    annotations = [{"coordinates": {"x": 2, "y": 2, "width": 2, "height": 2}}, _annotation(None, 2, 2, 2, 2)]
    (record,) = createml.parse(SOURCE, _roboflow([{"image": "a.jpg", "annotations": annotations}]))
    assert record.boxes == (Box("", 1.0, 1.0, 3.0, 3.0),) * 2


def test_negative_size_and_non_finite_numbers_reach_the_writer():
    """The writer rejects inverted (`box_inverted`) and non-finite (`box_not_finite`) boxes, counted as such."""
    data = (
        b'[{"image": "a.jpg", "annotations": ['
        b'{"label": "inv", "coordinates": {"x": 10, "y": 10, "width": -4, "height": 2}},'
        b'{"label": "nan", "coordinates": {"x": NaN, "y": 10, "width": 4, "height": 2}},'
        b'{"label": "inf", "coordinates": {"x": 10, "y": 10, "width": Infinity, "height": 2}},'
        b'{"label": "big", "coordinates": {"x": 1.5e308, "y": 10, "width": 1.5e308, "height": 2}}'
        b"]}]"
    )
    (record,) = createml.parse(SOURCE, data)
    inverted, *non_finite = record.boxes
    assert inverted == Box("inv", 12.0, 9.0, 8.0, 11.0)
    for box in non_finite:
        assert not all(math.isfinite(value) for value in (box.xmin, box.ymin, box.xmax, box.ymax))


def test_paths_are_checked_and_normalized_by_parse_annotation_file():
    items = [
        {"image": "./train/a.jpg", "annotations": [_annotation("a", 5, 5, 2, 2)]},
        {"image": "../secret.jpg", "annotations": [_annotation("a", 5, 5, 2, 2), _annotation("b", 5, 5, 2, 2)]},
        {"image": "/etc/passwd", "annotations": []},
    ]
    record, *rejections = parse_annotation_file(createml.FORMAT, SOURCE, _roboflow(items))
    assert (record.key, record.source_id, record.boxes) == ("train/a.jpg", "train/a.jpg", (Box("a", 4.0, 4.0, 6.0, 6.0),))
    assert rejections == [
        Rejection(SOURCE, "path_outside_images", "image path '../secret.jpg' is not inside --images", ITEM_IMAGE, 2),
        Rejection(SOURCE, "path_outside_images", "image path '/etc/passwd' is not inside --images", ITEM_IMAGE, 0),
    ]


# --- rejections ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"[", b"[{'image': 'a.jpg'}]", b"\xff\xfe\x00garbage", b'[{"image": "a.jpg",}]', b"[] []",
     b'[{"image": "\xe9t\xe9.jpg"}]', b'[{"image": "\xed\xa0\x80.jpg"}]'],
)
def test_malformed_json_is_json_malformed(data):
    (item,) = createml.parse(SOURCE, data)
    assert (item.source, item.reason, item.item) == (SOURCE, "json_malformed", ITEM_ANNOTATION)
    assert item.detail and "\n" not in item.detail


def test_deeply_nested_json_is_json_malformed():
    (item,) = createml.parse(SOURCE, b"[" * 100000 + b"]" * 100000)
    assert item.reason == "json_malformed"


@pytest.mark.parametrize("data", [b"{}", b'{"images": []}', b"null", b'"a.jpg"', b"3"])
def test_not_a_list_is_createml_invalid(data):
    assert list(createml.parse(SOURCE, data)) == [
        Rejection(SOURCE, "createml_invalid", "not a JSON list of images", ITEM_ANNOTATION)
    ]


@pytest.mark.parametrize(
    "item, detail, boxes",
    [
        ({"annotations": [_annotation("a", 5, 5, 2, 2)]}, "item 0 has no image name (None)", 1),
        ({"image": "", "annotations": []}, "item 0 has no image name ('')", 0),
        ({"image": None, "annotations": [_annotation("a", 5, 5, 2, 2)] * 3}, "item 0 has no image name (None)", 3),
        ({"image": ["a.jpg"]}, "item 0 has no image name (['a.jpg'])", 0),
        ({"image": 7}, "item 0 has no image name (7)", 0),
        ({"image": "\ud800.jpg"}, "item 0 has no image name ('\\ud800.jpg')", 0),
        ({"imagefilename": "a.jpg", "annotations": []}, "item 0 has no image name (None)", 0),
        ({"image": "a.jpg", "annotations": _annotation("a", 5, 5, 2, 2)}, "item 0 (a.jpg): `annotations` is not a list", 0),
        ({"image": "a.jpg", "annotations": "none"}, "item 0 (a.jpg): `annotations` is not a list", 0),
        ("a.jpg", "item 0 is not an object", 0),
        ([], "item 0 is not an object", 0),
        (None, "item 0 is not an object", 0),
    ],
)
def test_unusable_items_are_createml_invalid_and_the_others_kept(item, detail, boxes):
    data = json.dumps([item, ROBOFLOW_ITEMS[2]]).encode()  # ascii escapes: a lone surrogate stays a `\ud800` escape
    rejection, record = createml.parse(SOURCE, data)
    assert rejection == Rejection(SOURCE, "createml_invalid", detail, ITEM_ANNOTATION, boxes)
    rejection.to_json().encode("utf-8")
    assert record.key == ROBOFLOW_ITEMS[2]["image"]


@pytest.mark.parametrize(
    "annotation, detail",
    [
        ({"label": "a"}, "a.jpg: annotation 0 (a): coordinates None are not {x, y, width, height} numbers"),
        ({"label": "a", "coordinates": [5, 5, 2, 2]},
         "a.jpg: annotation 0 (a): coordinates [5, 5, 2, 2] are not {x, y, width, height} numbers"),
        ({"label": "a", "coordinates": {"x": 5, "y": 5, "width": 2}},
         "a.jpg: annotation 0 (a): coordinates {'x': 5, 'y': 5, 'width': 2} are not {x, y, width, height} numbers"),
        (_annotation("a", "5", 5, 2, 2), None),
        (_annotation("a", 5, None, 2, 2), None),
        (_annotation("a", 5, 5, True, 2), None),
        (_annotation("a", 5, 5, 2, 10**400), None),
        ({"label": "a", "coordinates": {"xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2}}, None),
        (_annotation(3, 5, 5, 2, 2), "a.jpg: annotation 0: label 3 is not text"),
        (_annotation("\udc80", 5, 5, 2, 2), "a.jpg: annotation 0: label '\\udc80' is not text"),
        ([5, 5, 2, 2], "a.jpg: annotation 0 is not an object"),
        ("cat", "a.jpg: annotation 0 is not an object"),
    ],
)
def test_bad_coordinates_are_box_malformed_and_the_image_kept(annotation, detail):
    data = json.dumps([{"image": "a.jpg", "annotations": [annotation, _annotation("b", 5, 5, 2, 2)]}]).encode()
    (carrier,) = createml.parse(SOURCE, data)  # the rejected annotation travels with its image's record
    assert [reason for reason, _ in carrier.rejected_boxes] == ["box_malformed"]
    rejection, record = flattened([carrier])
    assert (rejection.source, rejection.reason, rejection.item) == (SOURCE, "box_malformed", ITEM_BOX)
    if detail is not None:
        assert rejection.detail == detail
    rejection.to_json().encode("utf-8")
    assert record == ImageRecord(key="a.jpg", source=SOURCE, boxes=(Box("b", 4.0, 4.0, 6.0, 6.0),))


# --- the three JSON sniffers never claim each other's files -------------------------------------------

LABELME = json.dumps(
    {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {"label": "dog", "points": [[12.0, 40.0], [220.0, 310.0]], "group_id": None, "description": "",
             "shape_type": "rectangle", "flags": {}, "mask": None}
        ],
        "imagePath": "../images/dog.jpg",
        "imageData": None,
        "imageHeight": 480,
        "imageWidth": 640,
    },
    ensure_ascii=False,
    indent=2,
).encode()
# Many shapes: `imagePath` lies beyond the sniffed head.
LABELME_LONG = json.dumps(
    {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {"label": "images", "points": [[i, i], [i + 10, i + 10]], "group_id": None, "description": "",
             "shape_type": "rectangle", "flags": {}, "mask": None}
            for i in range(100)
        ],
        "imagePath": "dog.jpg",
        "imageData": None,
        "imageHeight": 480,
        "imageWidth": 640,
    },
    indent=2,
).encode()
COCO = json.dumps(
    {
        "info": {"description": "exported", "version": "1.0", "year": 2024},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}],
        "images": [{"id": 1, "file_name": "dog.jpg", "width": 640, "height": 480}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [12, 40, 208, 270], "area": 56160, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "dog", "supercategory": "animal"}],
    }
).encode()
# A COCO file whose `shapes`-like words and `imagePath` strings would fool a word match.
COCO_TRICKY = json.dumps(
    {
        "info": {"description": 'has "shapes" and "imagePath" and "coordinates" in it'},
        "images": [{"id": 1, "file_name": "shapes.jpg"}],
        "annotations": [],
        "categories": [{"id": 1, "name": "imagePath"}],
    }
).encode()
CREATEML_APPLE_MANY = json.dumps(
    [{"annotations": [_annotation("x", i, i, 2, 2) for i in range(300)], "image": "a.jpg"}], indent=2, sort_keys=True
).encode()
SAMPLES = {
    "labelme": [LABELME, LABELME_LONG, b"\xef\xbb\xbf" + LABELME],
    "coco": [COCO, COCO_TRICKY, b"\xef\xbb\xbf" + COCO],
    "createml": [ROBOFLOW, APPLE, CREATEML_APPLE_MANY, b"\xef\xbb\xbf " + APPLE, _roboflow([ROBOFLOW_ITEMS[2]])],
}
JSON_SNIFFERS = {"labelme": labelme.sniff, "coco": coco.sniff, "createml": createml.sniff}


@pytest.mark.parametrize("kind, index", [(kind, index) for kind, files in SAMPLES.items() for index in range(len(files))])
def test_each_json_sample_is_claimed_by_its_own_sniffer_only(kind, index):
    head = SAMPLES[kind][index][:SNIFF_BYTES]
    claimed = {name for name, sniff in JSON_SNIFFERS.items() if sniff("data/annotations.json", head)}
    assert claimed == {kind}
    assert not voc.sniff("data/annotations.json", head)
    assert not any(sniff("data/annotations.txt", head) for sniff in JSON_SNIFFERS.values())


def test_sniffed_heads_really_are_cut_short():
    assert len(LABELME_LONG.split(b'"imagePath"')[0]) > SNIFF_BYTES
    assert len(CREATEML_APPLE_MANY.split(b'"image"')[0]) > SNIFF_BYTES


@pytest.mark.parametrize(
    "path, head",
    [
        ("a.xml", b"<annotation><filename>a.jpg</filename></annotation>"),
        ("a.txt", b"0 0.5 0.5 0.2 0.2\n"),
        ("a.json", b"[1, 2, 3]"),
        ("a.json", b'[{"file_name": "a.jpg", "bbox": [1, 2, 3, 4]}]'),
        ("a.json", b"{}"),
        ("a.json", b""),
        ("a.json", b"\xef\xbb\xbf"),
    ],
)
def test_no_json_sniffer_claims_other_files(path, head):
    assert not any(sniff(path, head) for sniff in JSON_SNIFFERS.values())


# --- properties: nothing raises ----------------------------------------------------------------------


def _check(items):
    assert all(isinstance(item, (ImageRecord, Rejection)) for item in items)
    for item in items:
        if isinstance(item, Rejection):
            assert item.reason and item.item in (ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE)
            item.to_json().encode("utf-8")
        else:
            assert isinstance(item.key, str) and all(isinstance(box.label, str) for box in item.boxes)


def _checked_both_ways(data: bytes):
    """The parse's items, each record's box rejections beside it (they all travel with a record)."""
    items = list(createml.parse(SOURCE, data))
    _check(items)
    assert not any(isinstance(item, Rejection) and item.item == ITEM_BOX for item in items)
    checked = list(parse_annotation_file(createml.FORMAT, SOURCE, data))
    _check(checked)
    assert not any(isinstance(item, Rejection) and item.reason == "annotation_unreadable" for item in checked)
    return list(flattened(items))


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    _checked_both_ways(data)
    for sniff in JSON_SNIFFERS.values():
        sniff("a.json", data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(_JSON)
def test_random_json_values_never_raise(value):
    _checked_both_ways(json.dumps(value).encode())


_NUMBER = st.one_of(st.integers(-10, 1000), st.floats(), st.floats(-10, 1000), st.just(10**400))
_COORDINATES = st.one_of(
    st.fixed_dictionaries({field: _NUMBER for field in ("x", "y", "width", "height")}),
    st.fixed_dictionaries({}, optional={field: st.one_of(_NUMBER, _JSON) for field in ("x", "y", "width", "height")}),
    _JSON,
)
_ANNOTATION = st.fixed_dictionaries(
    {},
    optional={"label": st.one_of(st.sampled_from(["dog", "", "\ud800"]), _JSON), "coordinates": _COORDINATES},
)
_ITEM = st.fixed_dictionaries(
    {},
    optional={
        "image": st.one_of(st.sampled_from(["a.jpg", "b/c.jpg", "../d.jpg", "/e.jpg", "", "\udc80.jpg"]), _JSON),
        "annotations": st.one_of(st.lists(st.one_of(_ANNOTATION, _ANNOTATION, _JSON), max_size=4), _JSON),
    },
)


@given(st.lists(st.one_of(_ITEM, _ITEM, _JSON), max_size=4))
def test_random_createml_documents_never_raise_and_lose_nothing(document):
    items = _checked_both_ways(json.dumps(document).encode())
    # Every object item is a record or a rejection; every annotation of a record is a box or a box rejection.
    assert len([i for i in items if isinstance(i, ImageRecord) or i.item == ITEM_ANNOTATION]) == len(document)
    box_rejections = sum(isinstance(item, Rejection) and item.item == ITEM_BOX for item in items)
    annotations = sum(
        len(entry["annotations"])
        for entry, item in zip(document, [i for i in items if isinstance(i, ImageRecord) or i.item == ITEM_ANNOTATION])
        if isinstance(item, ImageRecord) and isinstance(entry.get("annotations"), list)
    )
    assert sum(len(record.boxes) for record in _records(items)) + box_rejections == annotations
