"""transforms/formats/labelme.py: LabelMe JSON, one file per image, shapes to boxes."""
import base64
import copy
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import image_factory as make
from transforms.formats import SNIFF_BYTES, flattened, parse_annotation_file
from transforms.formats import coco, createml, labelme
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, PIXELS, Box, ImageRecord, Rejection

SOURCE = "labelme/dog.json"


def _shape(label, points, shape_type, **extra):
    """A shape as LabelMe 5.x saves it (key order included)."""
    shape = {"label": label, "points": points, "group_id": None, "description": "", "shape_type": shape_type, "flags": {}}
    shape["mask"] = extra.pop("mask", None)
    shape.update(extra)
    return shape


_MASK_PNG = base64.b64encode(make.encode(make.gradient(4, 3, "L").point(lambda v: 255 * (v > 100)).convert("1"), "PNG")).decode()

SHAPES = [
    # A rectangle dragged from its bottom-right corner: LabelMe keeps the two clicks in that order.
    _shape("dog", [[220.5, 310.0], [12.0, 40.25]], "rectangle"),
    _shape("cat", [[50.0, 60.0], [90.0, 55.0], [120.0, 100.0], [70.0, 130.5]], "polygon"),
    _shape("ball", [[100.0, 100.0], [103.0, 104.0]], "circle"),  # radius 5
    _shape("leash", [[0.0, 0.0], [10.0, 10.0]], "line"),
    _shape("nose", [[30.0, 30.0]], "point"),
    _shape("path", [[0.0, 0.0], [5.0, 5.0], [9.0, 1.0]], "linestrip"),
    _shape("shadow", [[4.0, 5.0], [7.0, 7.0]], "mask", mask=_MASK_PNG),
    _shape("kite", [[10.0, 0.0], [20.0, 10.0], [10.0, 20.0], [0.0, 10.0]], "oriented_rectangle"),
]


def labelme_file(shapes=SHAPES, image_path="dog.jpg", image_data=None, width=640, height=480, **overrides) -> bytes:
    """The bytes LabelMe 5.x writes: `json.dump(data, f, ensure_ascii=False, indent=2)`."""
    document = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": image_data,
        "imageHeight": height,
        "imageWidth": width,
    }
    document.update(overrides)
    try:
        return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: written as the JSON escape `\udc80`, as tools do
        return json.dumps(document, indent=2).encode("ascii")


def _reasons(items):
    return [(item.reason, item.item) for item in items if isinstance(item, Rejection)]


def _records(items):
    return [item for item in items if isinstance(item, ImageRecord)]


# --- the file LabelMe writes -----------------------------------------------------------------------


def test_labelme_5_file_with_image_data_null():
    (record,) = labelme.parse(SOURCE, labelme_file())  # the unsupported shapes travel with the image's record
    assert [reason for reason, _ in record.rejected_boxes] == ["shape_unsupported"] * 4
    items = list(flattened([record]))
    assert items == [
        Rejection(SOURCE, "shape_unsupported", "shape 3 (leash): a 'line' shape outlines no box", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", "shape 4 (nose): a 'point' shape outlines no box", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", "shape 5 (path): a 'linestrip' shape outlines no box", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", "shape 6 (shadow): a 'mask' shape outlines no box", ITEM_BOX),
        ImageRecord(
            key="dog.jpg",
            source=SOURCE,
            boxes=(
                Box("dog", 12.0, 40.25, 220.5, 310.0),
                Box("cat", 50.0, 55.0, 120.0, 130.5),
                Box("ball", 95.0, 95.0, 105.0, 105.0),
                Box("kite", 0.0, 0.0, 20.0, 20.0),
            ),
            units=PIXELS,
            annotated_size=(640, 480),
        ),
    ]


def test_embedded_image_data_does_not_travel_in_the_record():
    """parse ignores imageData: the bytes stay in the JSON file (records cross the shuffle; images must not)."""
    photo = make.encode(make.gradient(64, 48), "JPEG", quality=90)
    with_data = labelme_file(image_data=base64.b64encode(photo).decode(), width=64, height=48)
    without = labelme_file(width=64, height=48)
    assert b"/9j/" in with_data  # the JPEG really is in the file
    assert list(labelme.parse(SOURCE, with_data)) == list(labelme.parse(SOURCE, without))
    (record,) = _records(labelme.parse(SOURCE, with_data))
    assert record.key == "dog.jpg" and record.image_bytes == 0 and record.annotated_size == (64, 48)


def test_rectangle_corners_in_any_order():
    orders = [[[1, 2], [30, 40]], [[30, 40], [1, 2]], [[1, 40], [30, 2]], [[30, 2], [1, 40]]]
    for points in orders:
        (record,) = labelme.parse(SOURCE, labelme_file([_shape("a", points, "rectangle")]))
        assert record.boxes == (Box("a", 1.0, 2.0, 30.0, 40.0),)


def test_four_point_rectangle_from_other_tools_is_its_bounding_box():
    (record,) = labelme.parse(SOURCE, labelme_file([_shape("a", [[1, 2], [30, 2], [30, 40], [1, 40]], "rectangle")]))
    assert record.boxes == (Box("a", 1.0, 2.0, 30.0, 40.0),)


def test_circle_is_the_bounding_box_of_the_circle():
    shapes = [
        _shape("c", [[50, 50], [50, 60]], "circle"),  # point straight below: r = 10
        _shape("c", [[0.5, 0.5], [3.5, -3.5]], "circle"),  # r = 5, box reaches past the image: the writer clips
    ]
    (record,) = labelme.parse(SOURCE, labelme_file(shapes))
    assert record.boxes == (Box("c", 40.0, 40.0, 60.0, 60.0), Box("c", -4.5, -4.5, 5.5, 5.5))


def test_labelme_3_file_without_shape_type_is_a_polygon():
    """LabelMe 3.x wrote no shape_type (and colours); LabelMe itself reads such shapes as polygons."""
    data = json.dumps(
        {
            "flags": {},
            "shapes": [{"label": "car", "line_color": None, "fill_color": None, "points": [[5, 6], [50, 7], [20, 60]]}],
            "lineColor": [0, 255, 0, 128],
            "fillColor": [255, 0, 0, 128],
            "imagePath": "car.jpg",
            "imageData": None,
        },
        indent=2,
    ).encode()
    assert list(labelme.parse(SOURCE, data)) == [
        ImageRecord(key="car.jpg", source=SOURCE, boxes=(Box("car", 5.0, 6.0, 50.0, 60.0),))
    ]


def test_no_shapes_is_a_negative_example():
    expected = [ImageRecord(key="dog.jpg", source=SOURCE, annotated_size=(640, 480))]
    assert list(labelme.parse(SOURCE, labelme_file([]))) == expected
    assert list(labelme.parse(SOURCE, labelme_file(None))) == expected


def test_non_ascii_labels_and_names_and_a_byte_order_mark():
    data = b"\xef\xbb\xbf" + labelme_file([_shape("écureuil", [[1, 2], [3, 4]], "rectangle")], image_path="forêt/1.jpg")
    (record,) = labelme.parse(SOURCE, data)
    assert record.key == "forêt/1.jpg"
    assert record.boxes == (Box("écureuil", 1.0, 2.0, 3.0, 4.0),)


def test_label_missing_or_null_is_empty_for_the_writer_to_reject():
    shapes = [{"points": [[1, 1], [2, 2]], "shape_type": "rectangle"}, _shape(None, [[1, 1], [2, 2]], "rectangle")]
    (record,) = labelme.parse(SOURCE, labelme_file(shapes))
    assert record.boxes == (Box("", 1.0, 1.0, 2.0, 2.0),) * 2


@pytest.mark.parametrize(
    "width, height",
    [(None, None), (0, 480), (640, -1), ("640", 480), (640.0, 480), (True, 480), (640, None)],
)
def test_unusable_image_size_is_none(width, height):
    (record,) = labelme.parse(SOURCE, labelme_file([], width=width, height=height))
    assert record.annotated_size is None


def test_non_finite_points_reach_the_writer_as_non_finite_boxes():
    """NaN anywhere in a polygon makes the box NaN (min/max alone would skip it depending on its position)."""
    data = (
        b'{"shapes": ['
        b'{"label": "a", "points": [[NaN, 1], [2, 3], [4, 5]], "shape_type": "polygon"},'
        b'{"label": "b", "points": [[2, 3], [4, 5], [NaN, 1]], "shape_type": "polygon"},'
        b'{"label": "c", "points": [[0, 0], [Infinity, 1]], "shape_type": "rectangle"},'
        b'{"label": "d", "points": [[0, 0], [1, NaN]], "shape_type": "circle"}'
        b'], "imagePath": "a.jpg"}'
    )
    (record,) = labelme.parse(SOURCE, data)
    assert [box.label for box in record.boxes] == ["a", "b", "c", "d"]
    for box in record.boxes:
        assert not all(math.isfinite(value) for value in (box.xmin, box.ymin, box.xmax, box.ymax))
    assert math.isnan(record.boxes[0].xmin) and math.isnan(record.boxes[1].xmax)
    assert record.boxes[0].ymin == record.boxes[1].ymin == 1.0


# --- imagePath -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_path, key",
    [
        ("dog.jpg", "dog.jpg"),
        ("./dog.jpg", "dog.jpg"),
        ("sub/dog.jpg", "sub/dog.jpg"),
        ("sub\\dog.jpg", "sub/dog.jpg"),
        ("../images/dog.jpg", "dog.jpg"),  # LabelMe's path from annotations/ to a sibling images/ folder
        ("..\\images\\dog.jpg", "dog.jpg"),  # the same, saved on Windows
        ("../../data/images/train/dog.jpg", "dog.jpg"),
        ("sub/../../dog.jpg", "dog.jpg"),
        ("../dog.jpg", "dog.jpg"),
    ],
)
def test_image_path_relative_to_the_json_file(image_path, key):
    (record,) = parse_annotation_file(labelme.FORMAT, SOURCE, labelme_file([], image_path=image_path))
    assert isinstance(record, ImageRecord)
    assert (record.key, record.source_id) == (key, key)


@pytest.mark.parametrize("image_path", ["/home/me/dog.jpg", "C:\\Users\\me\\dog.jpg", "c:/dog.jpg", "http://x/dog.jpg"])
def test_absolute_image_path_is_outside_images(image_path):
    items = list(parse_annotation_file(labelme.FORMAT, SOURCE, labelme_file(SHAPES[:2], image_path=image_path)))
    assert items == [
        Rejection(SOURCE, "path_outside_images", f"image path {image_path!r} is not inside --images", ITEM_IMAGE, 2)
    ]


@pytest.mark.parametrize("image_path", [None, "", "..", "../..", "..\\..", 5, ["dog.jpg"], "\ud800.jpg"])
def test_unusable_image_path_is_labelme_invalid_carrying_its_shapes(image_path):
    (item,) = labelme.parse(SOURCE, labelme_file(SHAPES, image_path=image_path))
    assert (item.source, item.reason, item.item, item.boxes) == (SOURCE, "labelme_invalid", ITEM_ANNOTATION, len(SHAPES))
    assert item.detail.startswith("no usable imagePath")
    item.to_json().encode("utf-8")  # a lone surrogate must not reach rejected.jsonl


def test_missing_image_path_is_labelme_invalid():
    data = json.dumps({"shapes": [], "imageHeight": 4, "imageWidth": 4}).encode()
    assert list(labelme.parse(SOURCE, data)) == [
        Rejection(SOURCE, "labelme_invalid", "no usable imagePath (None)", ITEM_ANNOTATION)
    ]


# --- rejections ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"{'shapes': []}", b"\xff\xfe\x00garbage", b'{"imagePath": "a.jpg",}', b"{} {}",
     b'{"imagePath": "\xe9t\xe9.jpg"}',  # Latin-1, not UTF-8
     b'{"imagePath": "\xed\xa0\x80.jpg"}'],  # an encoded surrogate: not valid UTF-8
)
def test_malformed_json_is_json_malformed(data):
    (item,) = labelme.parse(SOURCE, data)
    assert (item.source, item.reason, item.item) == (SOURCE, "json_malformed", ITEM_ANNOTATION)
    assert item.detail and "\n" not in item.detail


def test_deeply_nested_json_is_json_malformed():
    (item,) = labelme.parse(SOURCE, b'{"shapes": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    assert item.reason == "json_malformed"


@pytest.mark.parametrize(
    "data, detail",
    [
        (b"[]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'"dog.jpg"', "not a JSON object"),
        (b'{"shapes": {}, "imagePath": "a.jpg"}', "`shapes` is not a list"),
        (b'{"shapes": "rectangle", "imagePath": "a.jpg"}', "`shapes` is not a list"),
    ],
)
def test_not_a_labelme_document_is_labelme_invalid(data, detail):
    assert list(labelme.parse(SOURCE, data)) == [Rejection(SOURCE, "labelme_invalid", detail, ITEM_ANNOTATION)]


@pytest.mark.parametrize(
    "shape_type, shown",
    [("line", "'line'"), ("point", "'point'"), ("linestrip", "'linestrip'"), ("mask", "'mask'"), ("points", "'points'"),
     ("Rectangle", "'Rectangle'"), (None, "None"), (7, "7"), (["polygon"], "['polygon']")],
)
def test_shapes_that_outline_no_box_are_shape_unsupported_naming_the_type(shape_type, shown):
    items = list(flattened(labelme.parse(SOURCE, labelme_file([_shape("x", [[1, 1], [5, 5]], shape_type), SHAPES[0]]))))
    assert items[0] == Rejection(SOURCE, "shape_unsupported", f"shape 0 (x): a {shown} shape outlines no box", ITEM_BOX)
    assert items[1].boxes == (Box("dog", 12.0, 40.25, 220.5, 310.0),)


@pytest.mark.parametrize(
    "shape, detail",
    [
        ({"label": "a", "shape_type": "rectangle"}, "shape 0 (a): points None are not [[x, y], ...]"),
        (_shape("a", None, "polygon"), "shape 0 (a): points None are not [[x, y], ...]"),
        (_shape("a", "1,2,3,4", "rectangle"), "shape 0 (a): points '1,2,3,4' are not [[x, y], ...]"),
        (_shape("a", [[1, 2], [3, "4"]], "rectangle"), "shape 0 (a): points [[1, 2], [3, '4']] are not [[x, y], ...]"),
        (_shape("a", [[1, 2], [3, None]], "rectangle"), "shape 0 (a): points [[1, 2], [3, None]] are not [[x, y], ...]"),
        (_shape("a", [[1, 2], [True, 4]], "rectangle"), "shape 0 (a): points [[1, 2], [True, 4]] are not [[x, y], ...]"),
        (_shape("a", [[1, 2, 3], [4, 5, 6]], "rectangle"), "shape 0 (a): points [[1, 2, 3], [4, 5, 6]] are not [[x, y], ...]"),
        (_shape("a", [1, 2, 3, 4], "rectangle"), "shape 0 (a): points [1, 2, 3, 4] are not [[x, y], ...]"),
        (_shape("a", [{"x": 1, "y": 2}, {"x": 3, "y": 4}], "rectangle"),
         "shape 0 (a): points [{'x': 1, 'y': 2}, {'x': 3, 'y': 4}] are not [[x, y], ...]"),
        (_shape("a", [[10**400, 2], [3, 4]], "rectangle"), None),  # beyond float range
        (_shape("a", [[1, 2]], "rectangle"), "shape 0 (a): a rectangle with 1 point(s)"),
        (_shape("a", [], "rectangle"), "shape 0 (a): a rectangle with 0 point(s)"),
        (_shape("a", [[1, 2], [3, 4]], "polygon"), "shape 0 (a): a polygon with 2 point(s)"),
        (_shape("a", [[1, 2], [3, 4], [5, 6]], "oriented_rectangle"), "shape 0 (a): a oriented_rectangle with 3 point(s)"),
        (_shape("a", [[1, 2]], "circle"), "shape 0 (a): a circle with 1 point(s)"),
        (_shape("a", [[1, 2], [3, 4], [5, 6]], "circle"), "shape 0 (a): a circle with 3 point(s)"),
        (_shape(5, [[1, 2], [3, 4]], "rectangle"), "shape 0: label 5 is not text"),
        (_shape("\udc80", [[1, 2], [3, 4]], "rectangle"), "shape 0: label '\\udc80' is not text"),
        ([[1, 2], [3, 4]], "shape 0 is not an object"),
        ("rectangle", "shape 0 is not an object"),
    ],
)
def test_bad_shapes_are_box_malformed_and_the_rest_is_kept(shape, detail):
    items = list(flattened(labelme.parse(SOURCE, labelme_file([shape, SHAPES[2]]))))
    assert len(items) == 2
    rejection, record = items
    assert (rejection.source, rejection.reason, rejection.item) == (SOURCE, "box_malformed", ITEM_BOX)
    if detail is not None:
        assert rejection.detail == detail
    rejection.to_json().encode("utf-8")
    assert record.boxes == (Box("ball", 95.0, 95.0, 105.0, 105.0),)


def test_every_shape_is_a_box_or_a_rejection_and_nothing_else():
    shapes = copy.deepcopy(SHAPES) + [_shape("a", [[1, 2]], "polygon"), "junk"]
    items = list(flattened(labelme.parse(SOURCE, labelme_file(shapes))))
    (record,) = _records(items)
    assert len(record.boxes) + len(_reasons(items)) == len(shapes)
    assert {reason for reason, _ in _reasons(items)} == {"shape_unsupported", "box_malformed"}


# --- sniff -----------------------------------------------------------------------------------------


def _head(data: bytes) -> bytes:
    return data[:SNIFF_BYTES]


def test_sniff_claims_labelme_files():
    photo = base64.b64encode(make.encode(make.gradient(64, 48), "JPEG")).decode()
    many_shapes = [_shape(f"obj{i}", [[i, i], [i + 10.123456, i + 20.654321]], "rectangle") for i in range(200)]
    claimed = [
        labelme_file(),
        labelme_file(image_data=photo),
        labelme_file(many_shapes),  # imagePath is far beyond the head; a shape's keys are not
        labelme_file([]),
        b"\xef\xbb\xbf" + labelme_file(),
        json.dumps(json.loads(labelme_file()), separators=(",", ":")).encode(),  # minified by another tool
    ]
    assert len(labelme_file(many_shapes).split(b'"imagePath"')[0]) > SNIFF_BYTES
    for data in claimed:
        assert labelme.sniff("ann/dog.json", _head(data))
        assert labelme.sniff("ann/DOG.JSON", _head(data))
    assert not labelme.sniff("ann/dog.txt", _head(labelme_file()))
    assert not labelme.sniff("ann/dog.json", b'{"version": "5.4.1", "flags": {}}')
    assert not labelme.sniff("ann/dog.json", b'[{"shapes": [], "imagePath": "a.jpg"}]')


def test_a_labelme_shape_labelled_images_is_not_coco():
    data = labelme_file([_shape("images", [[1, 2], [3, 4]], "rectangle")])
    assert labelme.sniff("a.json", _head(data))
    assert not coco.sniff("a.json", _head(data))
    assert not createml.sniff("a.json", _head(data))


# --- properties: nothing raises ----------------------------------------------------------------------


def _check(items):
    assert all(isinstance(item, (ImageRecord, Rejection)) for item in items)
    for item in items:
        if isinstance(item, Rejection):
            assert item.reason and item.item in (ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE)
            item.to_json().encode("utf-8")
        else:
            assert isinstance(item.key, str) and all(isinstance(box.label, str) for box in item.boxes)
    assert sum(isinstance(item, ImageRecord) for item in items) <= 1


def _checked_both_ways(data: bytes):
    """The parse's items, the box rejections its record carries beside it (none is loose: a file is one image)."""
    items = list(labelme.parse(SOURCE, data))
    _check(items)
    assert not any(isinstance(item, Rejection) and item.item == ITEM_BOX for item in items)
    checked = list(parse_annotation_file(labelme.FORMAT, SOURCE, data))
    _check(checked)
    assert not any(isinstance(item, Rejection) and item.reason == "annotation_unreadable" for item in checked)
    return list(flattened(items))


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    _checked_both_ways(data)
    labelme.sniff("a.json", data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(_JSON)
def test_random_json_values_never_raise(value):
    _checked_both_ways(json.dumps(value).encode())


_NUMBER = st.one_of(st.integers(-10, 1000), st.floats(), st.floats(-10, 1000), st.just(10**400))
_POINT = st.one_of(st.lists(_NUMBER, min_size=2, max_size=2), st.lists(_NUMBER, min_size=2, max_size=2), _JSON)
_SHAPE = st.fixed_dictionaries(
    {},
    optional={
        "label": st.one_of(st.sampled_from(["dog", "cat", "", "\ud800"]), _JSON),
        "points": st.one_of(st.lists(_POINT, max_size=5), _JSON),
        "shape_type": st.one_of(
            st.sampled_from(["rectangle", "polygon", "circle", "oriented_rectangle", "line", "point", "mask"]), _JSON
        ),
        "group_id": _JSON,
        "flags": _JSON,
    },
)
_DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "version": st.just("5.4.1"),
        "shapes": st.one_of(st.lists(st.one_of(_SHAPE, _SHAPE, _JSON), max_size=5), _JSON),
        "imagePath": st.one_of(
            st.sampled_from(["a.jpg", "../images/a.jpg", "..", "/abs.jpg", "C:\\a.jpg", "", "\udc80.jpg", "..\\a.jpg"]),
            _JSON,
        ),
        "imageData": st.one_of(st.none(), st.text(max_size=8)),
        "imageHeight": st.one_of(_NUMBER, _JSON),
        "imageWidth": st.one_of(_NUMBER, _JSON),
    },
)


@given(_DOCUMENT)
def test_random_labelme_documents_never_raise(document):
    data = json.dumps(document).encode()
    items = _checked_both_ways(data)
    records = _records(items)
    shapes = document.get("shapes")
    if records and isinstance(shapes, list):
        # every shape is a box or a box rejection
        assert len(records[0].boxes) + sum(item.item == ITEM_BOX for item in items if isinstance(item, Rejection)) == len(shapes)
