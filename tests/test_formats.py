"""transforms/formats: Pascal VOC and COCO parsers and the shared path checks (docs/design.md section 5)."""
import json
from xml.sax.saxutils import escape as xml_escape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.formats import FORMATS, AnnotationFormat, flattened, parse_annotation_file
from transforms.formats import coco, voc
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, Box, Ignored, ImageRecord, Rejection

SOURCE = "annotations/a.xml"


def _voc(objects: str = "", filename: str = "a.jpg", size: str = "<width>640</width><height>480</height>") -> bytes:
    return f"""<annotation>
    <folder>images</folder>
    <filename>{filename}</filename>
    <path>/home/someone/images/{filename}</path>
    <size>{size}<depth>3</depth></size>
    <segmented>0</segmented>
    {objects}
</annotation>""".encode()


def _object(name="dog", xmin="10", ymin="20", xmax="110", ymax="220", extra="") -> str:
    return f"""<object><name>{name}</name><pose>Unspecified</pose>{extra}
        <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>
    </object>"""


# --- Pascal VOC ------------------------------------------------------------------------------------


def test_raccoon_voc_file(raccoon):
    data = (raccoon / "annotations/raccoon-1.xml").read_bytes()
    assert list(voc.parse("raccoon-1.xml", data)) == [
        ImageRecord(
            key="raccoon-1.jpg",
            source="raccoon-1.xml",
            boxes=(Box("raccoon", 81.0, 88.0, 522.0, 408.0, difficult=False, truncated=False, view="Unspecified"),),
            annotated_size=(650, 417),
        )
    ]


def test_every_raccoon_annotation_names_an_existing_image(raccoon):
    files = sorted((raccoon / "annotations").glob("*.xml"))
    assert len(files) == 200
    boxes = 0
    for path in files:
        (record,) = list(voc.parse(path.name, path.read_bytes()))
        assert isinstance(record, ImageRecord)
        assert (raccoon / "images" / record.key).is_file()
        assert record.annotated_size is not None
        assert all(box.label == "raccoon" for box in record.boxes)
        boxes += len(record.boxes)
    assert boxes == 217


def VOC_BOX(label):
    """The box `_object` writes, as VOC's parser reads it: every object has difficult, truncated and a view."""
    return Box(label, 10.0, 20.0, 110.0, 220.0, difficult=False, truncated=False, view="Unspecified")


def test_voc_flags_float_coordinates_and_several_objects():
    objects = (
        _object("dog", "10.5", "20.25", "110.75", "220", "<difficult>1</difficult><truncated>0</truncated>")
        + _object("cat", "1", "2", "3", "4", "<difficult>0</difficult><truncated>1</truncated>")
        + _object("bird", "5", "6", "7", "8")  # no flags at all: 0 for this object, as create_pascal_tf_record
        + _object("fish", " 9 ", "10", "11", "12", "<difficult>true</difficult><truncated></truncated>")
    )
    (record,) = list(voc.parse(SOURCE, _voc(objects)))
    assert record.boxes == (
        Box("dog", 10.5, 20.25, 110.75, 220.0, difficult=True, truncated=False, view="Unspecified"),
        Box("cat", 1.0, 2.0, 3.0, 4.0, difficult=False, truncated=True, view="Unspecified"),
        Box("bird", 5.0, 6.0, 7.0, 8.0, difficult=False, truncated=False, view="Unspecified"),
        Box("fish", 9.0, 10.0, 11.0, 12.0, difficult=True, truncated=False, view="Unspecified"),
    )
    assert record.annotated_size == (640, 480)
    assert record.source == SOURCE
    assert record.source_id == ""  # parse_annotation_file defaults it to the key


def test_voc_without_objects_is_a_negative_example():
    assert list(voc.parse(SOURCE, _voc())) == [
        ImageRecord(key="a.jpg", source=SOURCE, boxes=(), annotated_size=(640, 480))
    ]


@pytest.mark.parametrize(
    "size",
    ["", "<width>0</width><height>480</height>", "<width>abc</width><height>480</height>", "<width>640</width>"],
)
def test_voc_unusable_size_is_none(size):
    (record,) = list(voc.parse(SOURCE, _voc(size=size)))
    assert record.annotated_size is None


def test_voc_missing_bndbox_or_coordinate_rejects_only_that_box():
    objects = (
        "<object><name>ghost</name><difficult>0</difficult></object>"
        + _object("dog")
        + _object("cat", ymax="")
        + _object("cow", xmin="ten")
    )
    (record,) = voc.parse(SOURCE, _voc(objects))  # the rejected boxes travel with the image's record
    assert [reason for reason, _ in record.rejected_boxes] == ["box_malformed"] * 3
    items = list(flattened([record]))
    rejections = [item for item in items if isinstance(item, Rejection)]
    records = [item for item in items if isinstance(item, ImageRecord)]
    assert [(r.source, r.reason, r.item) for r in rejections] == [(SOURCE, "box_malformed", ITEM_BOX)] * 3
    assert rejections[0].detail == "object 0 (ghost): <bndbox/xmin> is missing"
    assert rejections[1].detail.startswith("object 2 (cat)")
    assert rejections[2].detail.startswith("object 3 (cow)")
    assert [box.label for record in records for box in record.boxes] == ["dog"]


def test_voc_object_without_name_keeps_an_empty_label_for_the_writer_to_reject():
    (record,) = list(voc.parse(SOURCE, _voc("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>")))
    assert record.boxes == (Box("", 1.0, 1.0, 2.0, 2.0, difficult=False, truncated=False, view="Unspecified"),)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<annotation><filename>a.jpg</filename>",
        b"<annotation><filename>a.jpg</annotation>",
        b"not xml at all",
        b"<annotation>&undefined;</annotation>",
        _voc() + b"<annotation/>",
    ],
)
def test_malformed_xml_is_rejected_as_xml_malformed(data):
    (item,) = list(voc.parse(SOURCE, data))
    assert (item.source, item.reason, item.item) == (SOURCE, "xml_malformed", ITEM_ANNOTATION)
    assert item.detail and "\n" not in item.detail


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename><object><name>&lol9;</name></object></annotation>"""


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        b"""<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>""",
        b"""<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<annotation><filename>a.jpg</filename></annotation>""",
        b"""<?xml version="1.0"?><!DOCTYPE annotation SYSTEM "http://127.0.0.1:9/voc.dtd">
<annotation><filename>a.jpg</filename></annotation>""",
        b"""<!DOCTYPE annotation [<!ENTITY name "dog">]><annotation><filename>a.jpg</filename>
<object><name>&name;</name></object></annotation>""",
    ],
    ids=["billion_laughs", "external_entity", "parameter_entity", "external_dtd", "internal_entity"],
)
def test_entity_tricks_are_rejected_as_xml_unsafe_and_nothing_is_expanded(data):
    items = list(voc.parse(SOURCE, data))
    assert len(items) == 1
    (item,) = items
    assert isinstance(item, Rejection)
    assert (item.source, item.reason, item.item) == (SOURCE, "xml_unsafe", ITEM_ANNOTATION)
    assert "lol" not in item.detail and "root:" not in item.detail
    assert len(item.detail) < 200


@pytest.mark.parametrize(
    "data, root",
    [
        (b"<html><body>oops</body></html>", "html"),
        (b"<Annotation><filename>a.jpg</filename></Annotation>", "Annotation"),
        (b'<a xmlns="http://example.com/voc"><filename>a.jpg</filename></a>', "{http://example.com/voc}a"),
    ],
)
def test_non_annotation_root_is_voc_invalid(data, root):
    (item,) = list(voc.parse(SOURCE, data))
    assert (item.reason, item.item) == ("voc_invalid", ITEM_ANNOTATION)
    assert item.detail == f"root element is <{root}>, not <annotation>"


@pytest.mark.parametrize("filename_xml", ["", "<filename></filename>", "<filename>   </filename>"])
def test_voc_without_filename_is_voc_invalid(filename_xml):
    data = f"<annotation>{filename_xml}{_object()}</annotation>".encode()
    assert list(voc.parse(SOURCE, data)) == [Rejection(SOURCE, "voc_invalid", "no <filename>", ITEM_ANNOTATION)]


def test_voc_in_utf16_with_non_ascii_names():
    text = '<?xml version="1.0" encoding="utf-16"?>' + _voc(_object("écureuil"), filename="forêt/1.jpg").decode()
    (record,) = list(voc.parse(SOURCE, text.encode("utf-16")))
    assert record.key == "forêt/1.jpg"
    assert record.boxes[0].label == "écureuil"


@pytest.mark.parametrize("width", ["inf", "1e999", "-Infinity"])
def test_voc_infinite_size_is_ignored(width):
    data = _voc(_object(), size=f"<width>{width}</width><height>480</height>")
    (record,) = list(voc.parse(SOURCE, data))
    assert record.annotated_size is None


def test_voc_unknown_encoding_is_xml_malformed():
    data = b'<?xml version="1.0" encoding="x-no-such-codec"?>' + _voc()
    (item,) = list(voc.parse(SOURCE, data))
    assert item.reason == "xml_malformed"


# --- COCO --------------------------------------------------------------------------------------------

COCO_SOURCE = "annotations/instances_val.json"


def _coco_document(**overrides):
    document = {
        "info": {"description": "test"},
        "images": [
            {"id": 1, "file_name": "000001.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "sub/000002.jpg", "width": 100, "height": 50},
            {"id": 3, "file_name": "000003.jpg"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 18, "bbox": [10, 20, 30.5, 40], "area": 1220.0, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0.5, 1.5, 2, 3], "area": 6, "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]},
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 18, "name": "dog", "supercategory": "animal"},
        ],
    }
    document.update(overrides)
    return json.dumps(document).encode()


def test_coco_boxes_are_x_y_w_h_with_area_and_iscrowd():
    items = list(coco.parse(COCO_SOURCE, _coco_document()))
    assert items == [
        ImageRecord(
            key="000001.jpg",
            source=COCO_SOURCE,
            source_id="1",
            boxes=(
                Box("dog", 10.0, 20.0, 40.5, 60.0, is_crowd=False, area=1220.0),
                Box("person", 0.5, 1.5, 2.5, 4.5, is_crowd=True, area=6.0),
            ),
            annotated_size=(640, 480),
        ),
        ImageRecord(
            key="sub/000002.jpg",
            source=COCO_SOURCE,
            source_id="2",
            boxes=(Box("person", 1.0, 2.0, 4.0, 6.0),),
            annotated_size=(100, 50),
        ),
        ImageRecord(key="000003.jpg", source=COCO_SOURCE, source_id="3", boxes=(), annotated_size=None),
    ]


def test_coco_unknown_category_is_rejected_naming_the_id():
    document = _coco_document(
        annotations=[
            {"id": 7, "image_id": 1, "category_id": 99, "bbox": [1, 1, 1, 1]},
            {"id": 8, "image_id": 1, "category_id": 1, "bbox": [1, 1, 1, 1]},
        ]
    )
    items = list(coco.parse(COCO_SOURCE, document))
    assert all(isinstance(item, ImageRecord) for item in items)  # the rejection travels with image 1's record
    assert items[0].rejected_boxes == (("box_unknown_class", "annotation 7: category_id 99 is not in `categories`"),)
    assert list(flattened(items))[0] == Rejection(
        COCO_SOURCE, "box_unknown_class", "annotation 7: category_id 99 is not in `categories`", ITEM_BOX
    )
    assert [(len(item.boxes), len(item.rejected_boxes)) for item in items] == [(1, 1), (0, 0), (0, 0)]


def test_coco_an_image_whose_only_annotation_names_an_unknown_category_carries_it():
    document = _coco_document(annotations=[{"id": 7, "image_id": 2, "category_id": 99, "bbox": [1, 1, 1, 1]}])
    assert [(item.key, item.boxes, item.rejected_boxes) for item in coco.parse(COCO_SOURCE, document)] == [
        ("000001.jpg", (), ()),
        ("sub/000002.jpg", (), (("box_unknown_class", "annotation 7: category_id 99 is not in `categories`"),)),
        ("000003.jpg", (), ()),
    ]


def test_coco_unknown_image_is_rejected():
    document = _coco_document(
        annotations=[
            {"id": 7, "image_id": 404, "category_id": 1, "bbox": [1, 1, 1, 1]},
            {"id": 8, "image_id": "1", "category_id": 1, "bbox": [1, 1, 1, 1]},  # "1" is not 1
            {"id": 9, "category_id": 1, "bbox": [1, 1, 1, 1]},
        ]
    )
    rejections = [item for item in coco.parse(COCO_SOURCE, document) if isinstance(item, Rejection)]
    assert [(r.reason, r.item) for r in rejections] == [("box_unknown_image", ITEM_BOX)] * 3
    assert "image_id 404" in rejections[0].detail
    assert "image_id '1'" in rejections[1].detail
    assert "image_id None" in rejections[2].detail


def test_coco_string_ids_match_each_other():
    document = json.dumps(
        {
            "images": [{"id": "img-a", "file_name": "a.jpg", "width": 4, "height": 4}],
            "annotations": [{"image_id": "img-a", "category_id": "c1", "bbox": [0, 0, 2, 2]}],
            "categories": [{"id": "c1", "name": "cat"}],
        }
    ).encode()
    assert list(coco.parse(COCO_SOURCE, document)) == [
        ImageRecord("a.jpg", COCO_SOURCE, "img-a", (Box("cat", 0.0, 0.0, 2.0, 2.0),), annotated_size=(4, 4))
    ]


def test_coco_images_sharing_an_id_are_all_rejected_with_their_boxes_counted_once():
    document = _coco_document(
        images=[
            {"id": 1, "file_name": "a.jpg"},
            {"id": 2, "file_name": "b.jpg"},
            {"id": 1, "file_name": "c.jpg"},  # id 1 again: a's boxes would land on c
            {"id": "1", "file_name": "d.jpg"},  # "1" is not 1
        ],
        annotations=[
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 1, 1]},
            {"id": 11, "image_id": 1, "category_id": 18, "bbox": [1, 1, 1, 1]},
            {"id": 12, "image_id": 1, "category_id": 99, "bbox": [1, 1, 1, 1]},  # rejected on its own, once
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [1, 1, 1, 1]},
            {"id": 14, "image_id": 2, "category_id": 99, "bbox": [1, 1, 1, 1]},  # travels with b.jpg
        ],
    )
    items = list(coco.parse(COCO_SOURCE, document))
    assert [item.reason for item in items if isinstance(item, Rejection)] == [
        "coco_duplicate_id", "box_unknown_class", "coco_duplicate_id"
    ]
    assert [r.rejected_boxes for r in items if isinstance(r, ImageRecord)] == [
        (("box_unknown_class", "annotation 14: category_id 99 is not in `categories`"),), ()]
    first, second = [item for item in items if isinstance(item, Rejection) and item.reason == "coco_duplicate_id"]
    assert (first.item, first.boxes, second.item, second.boxes) == (ITEM_ANNOTATION, 2, ITEM_ANNOTATION, 0)
    assert first.detail == ("image 0: id 1 is the id of 2 images (0, 2), whose boxes cannot be told apart "
                            "(counted on image 0); file_name 'a.jpg'")
    assert second.detail.startswith("image 2: id 1 is the id of 2 images (0, 2)") and "'c.jpg'" in second.detail
    assert [(r.key, len(r.boxes)) for r in items if isinstance(r, ImageRecord)] == [("b.jpg", 1), ("d.jpg", 0)]


def test_coco_a_category_id_with_two_names_rejects_its_boxes_and_one_name_twice_is_harmless():
    document = _coco_document(
        categories=[
            {"id": 1, "name": "person"},
            {"id": 18, "name": "dog"},
            {"id": 1, "name": "rider"},  # boxes of 1 would all become riders
            {"id": 18, "name": "dog"},  # the same category, listed twice
        ],
    )
    items = list(flattened(coco.parse(COCO_SOURCE, document)))
    rejections = [item for item in items if isinstance(item, Rejection)]
    assert rejections == [
        Rejection(COCO_SOURCE, "coco_duplicate_id",
                  f"annotation {n}: category_id 1 is declared with 2 names ('person', 'rider')", ITEM_BOX)
        for n in (11, 12)
    ]
    assert [[box.label for box in r.boxes] for r in items if isinstance(r, ImageRecord)] == [["dog"], [], []]


@st.composite
def _coco_with_repeated_ids(draw):
    """Well-formed COCO whose image and category ids repeat often."""
    images = [{"id": draw(st.integers(1, 4)), "file_name": f"img/{index}.jpg"} for index in range(draw(st.integers(1, 6)))]
    categories = [{"id": draw(st.integers(1, 3)), "name": draw(st.sampled_from(["dog", "cat"]))}
                  for _ in range(draw(st.integers(1, 4)))]
    annotations = [
        {"id": index, "image_id": draw(st.integers(1, 4)), "category_id": draw(st.integers(1, 3)), "bbox": [1, 2, 3, 4]}
        for index in range(draw(st.integers(0, 8)))
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


@given(_coco_with_repeated_ids())
def test_coco_ids_given_twice_never_mislabel_and_every_box_is_counted_once(document):
    items = list(flattened(coco.parse(COCO_SOURCE, json.dumps(document).encode())))
    image_ids = [image["id"] for image in document["images"]]
    names = {}
    for category in document["categories"]:
        names.setdefault(category["id"], set()).add(category["name"])
    records = {item.key: item for item in items if isinstance(item, ImageRecord)}
    refused = {item.detail.split(":")[0] for item in items if isinstance(item, Rejection) and item.item == ITEM_ANNOTATION}
    for index, image in enumerate(document["images"]):
        shared = image_ids.count(image["id"]) > 1
        assert (image["file_name"] not in records) == shared
        assert (f"image {index}" in refused) == shared
        if not shared:  # exactly its own boxes, each with the one name of its category
            expected = sorted(next(iter(names[a["category_id"]])) for a in document["annotations"]
                              if a["image_id"] == image["id"] and len(names.get(a["category_id"], ())) == 1)
            assert sorted(box.label for box in records[image["file_name"]].boxes) == expected
    box_rejections = [item for item in items if isinstance(item, Rejection) and item.item == ITEM_BOX]
    assert all(r.reason == "coco_duplicate_id" for r in box_rejections if "is declared with" in r.detail)
    counted = sum(len(r.boxes) for r in records.values()) + len(box_rejections) + sum(
        item.boxes for item in items if isinstance(item, Rejection) and item.item == ITEM_ANNOTATION)
    assert counted == len(document["annotations"])


@pytest.mark.parametrize(
    "bbox", [[1, 2, 3], [1, 2, 3, 4, 5], "1,2,3,4", [1, "2", 3, 4], [1, 2, None, 4], [True, 2, 3, 4], None]
)
def test_coco_bad_bbox_is_box_malformed(bbox):
    document = _coco_document(annotations=[{"id": 5, "image_id": 1, "category_id": 1, "bbox": bbox}])
    items = list(flattened(coco.parse(COCO_SOURCE, document)))
    assert (items[0].reason, items[0].item) == ("box_malformed", ITEM_BOX)
    assert items[0].detail.startswith("annotation 5: bbox ")
    assert all(isinstance(item, ImageRecord) and item.boxes == () for item in items[1:])


def test_coco_annotation_that_is_not_an_object_is_box_malformed():
    items = list(coco.parse(COCO_SOURCE, _coco_document(annotations=[[1, 2, 3, 4]])))
    assert items[0] == Rejection(COCO_SOURCE, "box_malformed", "annotation 0 is not an object", ITEM_BOX)


@pytest.mark.parametrize("data", [b"", b"{", b"{'images': []}", b"\xff\xfe\x00garbage", b"[1, 2,]", b"{} {}"])
def test_malformed_json_is_json_malformed(data):
    (item,) = list(coco.parse(COCO_SOURCE, data))
    assert (item.source, item.reason, item.item) == (COCO_SOURCE, "json_malformed", ITEM_ANNOTATION)


def test_deeply_nested_json_is_json_malformed():
    (item,) = list(coco.parse(COCO_SOURCE, b"[" * 200000 + b"]" * 200000))
    assert item.reason == "json_malformed"


@pytest.mark.parametrize(
    "data",
    [b"{}", b"[]", b"null", b'{"annotations": [], "categories": []}', b'{"images": {}}', b'{"images": null}', b'"images"'],
)
def test_json_without_an_images_list_is_coco_invalid(data):
    (item,) = list(coco.parse(COCO_SOURCE, data))
    assert (item.reason, item.item) == ("coco_invalid", ITEM_ANNOTATION)


def test_coco_image_without_file_name_is_rejected_and_the_others_kept():
    document = _coco_document(images=[{"id": 1, "width": 5, "height": 5}, {"id": 2, "file_name": "b.jpg"}, "junk"])
    items = list(coco.parse(COCO_SOURCE, document))
    assert items == [
        Rejection(COCO_SOURCE, "coco_invalid", "image 0 has no file_name", ITEM_ANNOTATION, boxes=2),
        ImageRecord("b.jpg", COCO_SOURCE, "2", (Box("person", 1.0, 2.0, 4.0, 6.0),)),
        Rejection(COCO_SOURCE, "coco_invalid", "image 2 has no file_name", ITEM_ANNOTATION),
    ]


def test_coco_rejected_image_carries_its_boxes():
    document = _coco_document(images=[{"id": 1, "width": 640, "height": 480}])
    items = list(coco.parse(COCO_SOURCE, document))
    rejected_image = next(item for item in items if item.reason == "coco_invalid")
    assert rejected_image.boxes == 2  # annotations 10 and 11 name image 1


@pytest.mark.parametrize("field, value", [("categories", 5), ("annotations", 1), ("annotations", True)])
def test_coco_non_list_sections_do_not_raise(field, value):
    items = list(coco.parse(COCO_SOURCE, _coco_document(**{field: value})))
    assert all(isinstance(item, (ImageRecord, Rejection, Ignored)) for item in items)


@pytest.mark.parametrize("field", ["bbox", "area"])
def test_coco_huge_integer_does_not_raise(field):
    huge = 10**400
    annotation = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [huge, 0, 1, 1] if field == "bbox" else [0, 0, 1, 1]}
    if field == "area":
        annotation["area"] = huge
    items = list(coco.parse(COCO_SOURCE, _coco_document(annotations=[annotation])))
    assert all(isinstance(item, (ImageRecord, Rejection, Ignored)) for item in items)


# --- YOLO: a label file is one image's, its rejected lines travel with it --------------------------------


def test_yolo_lines_it_rejects_travel_with_the_images_record():
    from transforms.formats import ParseContext, _text, yolo

    long_line = b"0 " + b"0.5 " * (_text.MAX_LINE_BYTES // 4)
    data = b"0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\nx 1 2 3 4\n0 0.5 0.5\n" + long_line + b"\n"
    items = list(parse_annotation_file(yolo.FORMAT, "labels/a.txt", data, ParseContext(classes=("cat",))))
    (record,) = items  # nothing is rejected apart: every line belongs to the one image
    assert (record.key, [box.label for box in record.boxes]) == ("a", ["cat"])
    assert record.rejected_boxes == (
        ("box_unknown_class", "line 2: class index 7 is not in the 1 --classes"),
        ("box_malformed", "line 3: class 'x' is not an index"),
        ("box_malformed", "line 4: expected `class cx cy w h` or a polygon"),
        ("annotation_line_too_long", f"line 5 is longer than {_text.MAX_LINE_BYTES:,} bytes"),
    )


def test_yolo_read_with_the_wrong_classes_gives_records_with_no_box_and_every_box_rejected():
    from transforms.formats import ParseContext, yolo

    (record,) = yolo.parse("labels/a.txt", b"3 0.5 0.5 0.2 0.2\n", ParseContext(classes=("cat", "dog")))
    assert (record.boxes, record.rejected_boxes) == ((), (("box_unknown_class", "line 1: class index 3 is not in the 2 --classes"),))
    assert list(yolo.parse("labels/a.txt", b"3 0.5 0.5 0.2 0.2\n\xff\n", ParseContext(classes=("cat",)))) == [
        Rejection("labels/a.txt", "txt_malformed", "not UTF-8 text", ITEM_ANNOTATION)]  # still one rejection, no record


# --- parse_annotation_file ----------------------------------------------------------------------------


def test_registry_has_voc_and_coco():
    assert FORMATS["voc"] is voc.FORMAT
    assert FORMATS["coco"] is coco.FORMAT
    assert all(isinstance(fmt, AnnotationFormat) and fmt.name == name for name, fmt in FORMATS.items())


@pytest.mark.parametrize(
    "filename",
    ["../x.jpg", "/etc/passwd", "C:\\x.jpg", "c:/x.jpg", "a/../../x.jpg", "..\\..\\x.jpg", "http://evil/x.jpg", "..", "."],
)
def test_paths_outside_images_are_rejected(filename):
    items = list(parse_annotation_file(voc.FORMAT, SOURCE, _voc(_object(), filename=filename)))
    # The rejection carries the image's boxes, which will not be written.
    assert items == [
        Rejection(SOURCE, "path_outside_images", f"image path {filename!r} is not inside --images", ITEM_IMAGE, 1)
    ]


def test_path_rejection_counts_every_box_of_the_image():
    data = _voc(_object("a") + _object("b") + _object("c"), filename="../x.jpg")
    (item,) = list(parse_annotation_file(voc.FORMAT, SOURCE, data))
    assert (item.reason, item.boxes) == ("path_outside_images", 3)


def test_a_path_rejection_carries_the_boxes_the_record_carries_and_reports_the_rejected_ones_apart():
    data = _voc(_object("a") + _object("b", xmin="ten"), filename="../x.jpg")
    assert list(parse_annotation_file(voc.FORMAT, SOURCE, data)) == [
        Rejection(SOURCE, "path_outside_images", "image path '../x.jpg' is not inside --images", ITEM_IMAGE, 1),
        Rejection(SOURCE, "box_malformed", "object 1 (b): <bndbox/xmin> 'ten' is not a number", ITEM_BOX),
    ]


def test_flattened_puts_each_records_box_rejections_before_it():
    data = _voc(_object("a", xmin="x") + _object("b"))
    (record,) = parse_annotation_file(voc.FORMAT, SOURCE, data)
    assert record.rejected_boxes == (("box_malformed", "object 0 (a): <bndbox/xmin> 'x' is not a number"),)
    assert list(flattened([record])) == [
        Rejection(SOURCE, "box_malformed", "object 0 (a): <bndbox/xmin> 'x' is not a number", ITEM_BOX),
        ImageRecord("a.jpg", SOURCE, "a.jpg", (VOC_BOX("b"),), annotated_size=(640, 480)),
    ]


@pytest.mark.parametrize(
    "filename, key",
    [
        ("./a/b.jpg", "a/b.jpg"),
        ("a//b.jpg", "a/b.jpg"),
        ("a\\b.jpg", "a/b.jpg"),
        ("a/x/../b.jpg", "a/b.jpg"),
        ("raccoon-1.jpg", "raccoon-1.jpg"),
    ],
)
def test_safe_paths_are_normalized_and_the_key_is_the_source_id(filename, key):
    (record,) = list(parse_annotation_file(voc.FORMAT, SOURCE, _voc(_object(), filename=filename)))
    assert record.key == key
    assert record.source_id == key
    assert record.boxes == (VOC_BOX("dog"),)


def test_coco_ids_are_kept_as_source_ids_and_paths_checked():
    document = _coco_document(
        images=[
            {"id": 7, "file_name": "./x/a.jpg"},
            {"file_name": "b.jpg"},
            {"id": 9, "file_name": "../c.jpg"},
        ],
        annotations=[],
    )
    items = list(parse_annotation_file(coco.FORMAT, COCO_SOURCE, document))
    assert [(item.key, item.source_id) for item in items[:2]] == [("x/a.jpg", "7"), ("b.jpg", "b.jpg")]
    assert items[2] == Rejection(
        COCO_SOURCE, "path_outside_images", "image path '../c.jpg' is not inside --images", ITEM_IMAGE, 0
    )


def test_rejections_from_the_parser_pass_through():
    items = list(parse_annotation_file(voc.FORMAT, SOURCE, b"<annotation>"))
    assert [(item.reason, item.item) for item in items] == [("xml_malformed", ITEM_ANNOTATION)]


def test_a_parser_that_raises_costs_one_file():
    def broken(source, data, context):
        yield ImageRecord(key="a.jpg", source=source)
        raise RuntimeError("parser bug")

    fmt = AnnotationFormat("broken", "", "", ("*",), broken, sniff=lambda path, head: False)
    assert list(parse_annotation_file(fmt, "f.txt", b"")) == [
        Rejection("f.txt", "annotation_unreadable", "RuntimeError: parser bug", ITEM_ANNOTATION)
    ]


# --- properties: parsers yield records and rejections, never an exception -----------------------


def _check(items):
    assert all(isinstance(item, (ImageRecord, Rejection, Ignored)) for item in items)
    for item in items:
        if isinstance(item, Rejection):
            assert item.reason and item.item in (ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    _check(list(voc.parse(SOURCE, data)))
    _check(list(coco.parse(COCO_SOURCE, data)))
    _check(list(parse_annotation_file(voc.FORMAT, SOURCE, data)))


_VOC_TAGS = ["annotation", "filename", "size", "width", "height", "object", "name", "bndbox",
             "xmin", "ymin", "xmax", "ymax", "difficult", "truncated", "path", "folder"]
# No "e", "i", "E", "I": text such as "inf" or "1e999" has its own test above.
_XML_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="eEiI"), max_size=8),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_infinity=False, allow_nan=True).map(lambda f: f"{f:f}"),
    st.sampled_from(["", " ", "nan", "0", "1", "../a.jpg", "/etc/passwd", "&amp;", "&lt;x&gt;"]),
)


def _element(children):
    return st.builds(
        lambda tag, text, kids: f"<{tag}>{text}{''.join(kids)}</{tag}>",
        st.sampled_from(_VOC_TAGS),
        _XML_TEXT,
        st.lists(children, max_size=4),
    )


_XML = st.recursive(
    st.builds(lambda tag, text: f"<{tag}>{text}</{tag}>", st.sampled_from(_VOC_TAGS), _XML_TEXT),
    _element,
    max_leaves=20,
)


_NUMBER_TEXT = st.one_of(
    st.integers(-100, 5000).map(str),
    st.floats(-100, 5000).map(repr),
    st.sampled_from(["nan", "-0", " 12 ", "1,5", "", "x"]),
)
_LEAF = st.one_of(_NUMBER_TEXT, _XML_TEXT.map(xml_escape))


def _optional(tag, text):
    return st.one_of(st.just(""), text.map(lambda value: f"<{tag}>{value}</{tag}>"))


def _concat(*parts):
    return st.tuples(*parts).map("".join)


_VOC_OBJECT = _concat(
    st.just("<object>"),
    _optional("name", st.one_of(st.sampled_from(["dog", "cat", ""]), _LEAF)),
    _optional("difficult", st.one_of(st.sampled_from(["0", "1", "true", "no"]), _LEAF)),
    _optional("truncated", st.one_of(st.sampled_from(["0", "1"]), _LEAF)),
    _optional("bndbox", _concat(*(_optional(corner, _NUMBER_TEXT) for corner in ("xmin", "ymin", "xmax", "ymax")))),
    st.just("</object>"),
)
_VOC_DOCUMENT = _concat(
    st.just("<annotation>"),
    _optional("filename", st.one_of(st.sampled_from(["a.jpg", "../a.jpg", "./b/c.png", "/abs.jpg"]), _LEAF)),
    _optional("size", _concat(_optional("width", _NUMBER_TEXT), _optional("height", _NUMBER_TEXT))),
    st.lists(_VOC_OBJECT, max_size=4).map("".join),
    st.just("</annotation>"),
)


@given(_VOC_DOCUMENT)
def test_random_voc_documents_never_raise(document):
    items = list(voc.parse(SOURCE, document.encode("utf-8")))
    _check(items)
    assert sum(isinstance(item, ImageRecord) for item in items) <= 1
    checked = list(parse_annotation_file(voc.FORMAT, SOURCE, document.encode("utf-8")))
    _check(checked)
    assert not any(getattr(item, "reason", None) == "annotation_unreadable" for item in checked)


@given(_XML, st.booleans())
def test_random_xml_never_raises(xml, annotation_root):
    text = f"<annotation>{xml}</annotation>" if annotation_root else xml
    _check(list(voc.parse(SOURCE, text.encode("utf-8"))))
    _check(list(parse_annotation_file(voc.FORMAT, SOURCE, text.encode("utf-8"))))


@given(st.text(max_size=200))
def test_random_text_as_xml_never_raises(text):
    _check(list(voc.parse(SOURCE, text.encode("utf-8", "surrogatepass"))))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Lists, objects, strings or null: a number or bool in these sections has its own test above.
_ITERABLE_JSON = st.lists(_JSON, max_size=4) | st.dictionaries(st.text(max_size=5), _JSON, max_size=3) | st.text(max_size=4) | st.none()
# Mostly 1..3, so images, categories and annotations meet; sometimes an id no COCO tool writes.
_ID = st.sampled_from([1, 2, 1, 2, 3, 1, 2, 3, 1, 0, -1, "1", "a", None, True, 1.0, [1], {}])
_NUMBER = st.one_of(st.integers(-10, 1000), st.floats(), st.floats(-10, 1000))
_FILE_NAME = st.one_of(
    st.sampled_from(["a.jpg", "b/c.jpg", "./d.png"]),
    st.sampled_from(["a.jpg", "", "../b.jpg", "/abs.jpg", "C:\\e.jpg"]),
    _JSON,
)
_COCO_IMAGE = st.fixed_dictionaries(
    {"id": _ID, "file_name": _FILE_NAME},
    optional={
        "width": st.one_of(_NUMBER, _JSON),
        "height": st.one_of(_NUMBER, _JSON),
    },
)
_COCO_ANNOTATION = st.fixed_dictionaries(
    {
        "image_id": _ID,
        "category_id": _ID,
        "bbox": st.one_of(
            st.lists(_NUMBER, min_size=4, max_size=4),
            st.lists(_NUMBER, min_size=4, max_size=4),
            st.lists(st.one_of(_NUMBER, _JSON), max_size=5),
            _JSON,
        ),
    },
    optional={
        "id": _JSON,
        "area": st.one_of(_NUMBER, _JSON),
        "iscrowd": st.one_of(st.sampled_from([0, 1, True]), _JSON),
    },
)
_COCO_CATEGORY = st.fixed_dictionaries(
    {"id": _ID, "name": st.one_of(st.sampled_from(["dog", "cat", ""]), st.text(max_size=5), _JSON)}
)
_COCO = st.one_of(
    # mostly well-formed sections whose entries have random fields, so ids match and boxes get through
    st.fixed_dictionaries(
        {
            "images": st.lists(_COCO_IMAGE, min_size=1, max_size=4),
            "annotations": st.lists(_COCO_ANNOTATION | _JSON, min_size=1, max_size=6),
            "categories": st.lists(_COCO_CATEGORY | _JSON, min_size=1, max_size=4),
        }
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "images": st.one_of(st.lists(st.one_of(_COCO_IMAGE, _COCO_IMAGE, _JSON), max_size=4), _JSON),
            "annotations": st.one_of(st.lists(st.one_of(_COCO_ANNOTATION, _JSON), max_size=6), _ITERABLE_JSON),
            "categories": st.one_of(st.lists(st.one_of(_COCO_CATEGORY, _JSON), max_size=4), _ITERABLE_JSON),
        },
    ),
)


@given(_COCO)
def test_random_coco_documents_never_raise(document):
    data = json.dumps(document).encode()
    items = list(coco.parse(COCO_SOURCE, data))
    _check(items)
    _check(list(parse_annotation_file(coco.FORMAT, COCO_SOURCE, data)))
    assert not any(isinstance(item, Rejection) and item.reason == "annotation_unreadable"
                   for item in parse_annotation_file(coco.FORMAT, COCO_SOURCE, data))


@st.composite
def _valid_coco(draw):
    """Well-formed COCO with random numbers: every annotation ends as a box or a box rejection."""
    images = [
        {"id": index, "file_name": f"img/{index}.jpg", "width": draw(st.integers(0, 4000)), "height": 480}
        for index in range(1, draw(st.integers(1, 4)) + 1)
    ]
    annotations = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.integers(1, 10**6),
                    "image_id": st.integers(0, len(images) + 1),
                    "category_id": st.sampled_from([1, 2, 3]),
                    "bbox": st.lists(st.one_of(st.integers(-10, 5000), st.floats(-1e6, 1e6)), min_size=4, max_size=4),
                },
                optional={"area": _NUMBER, "iscrowd": st.sampled_from([0, 1])},
            ),
            max_size=8,
        )
    )
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]}


@given(_valid_coco())
def test_every_coco_annotation_becomes_a_box_or_a_box_rejection(document):
    items = list(coco.parse(COCO_SOURCE, json.dumps(document).encode()))
    records = [item for item in items if isinstance(item, ImageRecord)]
    rejections = [item for item in items if isinstance(item, Rejection)]
    assert [record.key for record in records] == [image["file_name"] for image in document["images"]]
    assert all(rejection.item == ITEM_BOX for rejection in rejections)
    # an annotation of a known image is a box or a rejection its record carries; the others name no image
    assert {rejection.reason for rejection in rejections} <= {"box_unknown_image"}
    carried = sum(len(record.rejected_boxes) for record in records)
    assert sum(len(record.boxes) for record in records) + carried + len(rejections) == len(document["annotations"])
    assert carried == sum(1 <= a["image_id"] <= len(document["images"]) and a["category_id"] == 3
                          for a in document["annotations"])
    expected = {}
    for annotation in document["annotations"]:
        if 1 <= annotation["image_id"] <= len(document["images"]) and annotation["category_id"] in (1, 2):
            x, y, width, height = (float(value) for value in annotation["bbox"])
            expected.setdefault(f"img/{annotation['image_id']}.jpg", []).append(
                (["dog", "cat"][annotation["category_id"] - 1], x, y, x + width, y + height)
            )
    for record in records:
        got = [(box.label, box.xmin, box.ymin, box.xmax, box.ymax) for box in record.boxes]
        assert got == expected.get(record.key, [])


@given(_JSON)
def test_random_json_values_never_raise(value):
    _check(list(coco.parse(COCO_SOURCE, json.dumps(value).encode())))


@given(st.text(max_size=200))
def test_random_text_as_json_never_raises(text):
    _check(list(coco.parse(COCO_SOURCE, text.encode("utf-8", "surrogatepass"))))
