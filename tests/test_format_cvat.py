"""transforms/formats/cvat.py and _xml.py: CVAT for images 1.1 XML (docs/design.md sections 4 and 5)."""
import math
import xml.etree.ElementTree as ElementTree
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.formats import AnnotationFormat, flattened, parse_annotation_file
from transforms.formats import cvat, voc
from transforms.formats._xml import parse_xml
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, Box, ImageRecord, Rejection

SOURCE = "export/annotations.xml"

# What CVAT writes for "Export task dataset" > "CVAT for images 1.1" (annotations.xml in the zip).
TASK_EXPORT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>42</id>
      <name>raccoons batch 1</name>
      <size>5</size>
      <mode>annotation</mode>
      <overlap>0</overlap>
      <bugtracker></bugtracker>
      <created>2024-03-05 10:12:45.123456+00:00</created>
      <updated>2024-03-06 08:01:02.654321+00:00</updated>
      <subset>default</subset>
      <start_frame>0</start_frame>
      <stop_frame>4</stop_frame>
      <frame_filter></frame_filter>
      <segments>
        <segment>
          <id>57</id>
          <start>0</start>
          <stop>4</stop>
          <url>https://app.cvat.ai/api/jobs/57</url>
        </segment>
      </segments>
      <owner>
        <username>annotator</username>
        <email>annotator@example.com</email>
      </owner>
      <assignee></assignee>
      <labels>
        <label>
          <name>raccoon</name>
          <color>#fa3253</color>
          <type>any</type>
          <attributes>
            <attribute>
              <name>pose</name>
              <mutable>False</mutable>
              <input_type>select</input_type>
              <default_value>standing</default_value>
              <values>standing
sitting</values>
            </attribute>
          </attributes>
        </label>
        <label>
          <name>tail</name>
          <color>#33ddff</color>
          <type>any</type>
          <attributes>
          </attributes>
        </label>
        <label>
          <name>night</name>
          <color>#aaaaaa</color>
          <type>tag</type>
          <attributes>
          </attributes>
        </label>
      </labels>
    </task>
    <dumped>2024-03-06 08:05:11.000000+00:00</dumped>
  </meta>
  <image id="0" name="raccoon-1.jpg" width="650" height="417">
    <box label="raccoon" source="manual" occluded="0" xtl="81.00" ytl="88.00" xbr="522.00" ybr="408.00" z_order="0">
      <attribute name="pose">standing</attribute>
    </box>
  </image>
  <image id="1" name="night/raccoon-2.jpg" width="800" height="573">
    <box label="raccoon" source="manual" occluded="1" xtl="60.00" ytl="51.00" xbr="462.00" ybr="499.00" z_order="1">
      <attribute name="pose">sitting</attribute>
    </box>
    <polygon label="tail" source="manual" occluded="0" points="410.50,300.00;460.00,285.25;470.00,390.00;405.00,350.75" z_order="0">
    </polygon>
    <ellipse label="raccoon" source="manual" occluded="0" cx="600.00" cy="200.00" rx="40.00" ry="20.00" z_order="0">
      <attribute name="pose">standing</attribute>
    </ellipse>
    <box label="raccoon" source="manual" occluded="0" xtl="100.00" ytl="100.00" xbr="200.00" ybr="150.00" rotation="90.00" z_order="0">
      <attribute name="pose">standing</attribute>
    </box>
    <tag label="night" source="manual">
    </tag>
  </image>
  <image id="2" name="raccoon-3.jpg" width="720" height="480">
    <polyline label="tail" source="manual" occluded="0" points="10.00,20.00;30.00,40.00" z_order="0">
    </polyline>
    <points label="tail" source="manual" occluded="0" points="15.00,25.00" z_order="0">
    </points>
    <mask label="raccoon" source="semi-auto" occluded="0" rle="3, 5, 2, 6" left="100" top="120" width="4" height="4" z_order="0">
    </mask>
    <skeleton label="raccoon" source="manual" z_order="0">
      <points label="nose" source="manual" outside="0" occluded="0" points="20.00,30.00">
      </points>
    </skeleton>
    <cuboid label="raccoon" source="manual" occluded="0" xtl1="1.00" ytl1="2.00" xbl1="1.00" ybl1="9.00" xtr1="8.00" ytr1="2.00" xbr1="8.00" ybr1="9.00" xtl2="3.00" ytl2="1.00" xbl2="3.00" ybl2="8.00" xtr2="10.00" ytr2="1.00" xbr2="10.00" ybr2="8.00" z_order="0">
    </cuboid>
    <box label="raccoon" source="manual" occluded="0" xtl="5.00" ytl="6.00" xbr="7.00" ybr="8.00" z_order="0">
    </box>
  </image>
  <image id="3" name="raccoon-4.jpg" width="640" height="480">
  </image>
  <image id="4" name="raccoon-5.jpg" width="640" height="480">
    <tag label="night" source="manual">
    </tag>
  </image>
</annotations>
"""

# "Export project dataset" > "CVAT for images 1.1": every image names its task's subset.
PROJECT_EXPORT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <project>
      <id>3</id>
      <name>raccoons</name>
      <created>2024-03-01 09:00:00.000000+00:00</created>
      <updated>2024-03-06 08:00:00.000000+00:00</updated>
      <labels>
        <label>
          <name>raccoon</name>
          <color>#fa3253</color>
          <type>rectangle</type>
          <attributes>
          </attributes>
        </label>
      </labels>
      <tasks>
        <task>
          <id>7</id>
          <name>train part</name>
          <size>1</size>
          <mode>annotation</mode>
          <overlap>0</overlap>
          <bugtracker></bugtracker>
          <created>2024-03-01 09:10:00.000000+00:00</created>
          <updated>2024-03-06 08:00:00.000000+00:00</updated>
          <subset>Train</subset>
          <start_frame>0</start_frame>
          <stop_frame>0</stop_frame>
          <frame_filter></frame_filter>
          <segments>
            <segment>
              <id>11</id>
              <start>0</start>
              <stop>0</stop>
              <url>https://app.cvat.ai/api/jobs/11</url>
            </segment>
          </segments>
          <owner>
            <username>annotator</username>
            <email>annotator@example.com</email>
          </owner>
          <assignee></assignee>
        </task>
      </tasks>
    </project>
    <dumped>2024-03-06 08:05:11.000000+00:00</dumped>
  </meta>
{images}
</annotations>
"""


def _project(*subsets: str) -> bytes:
    images = "\n".join(
        f'  <image id="{index}" name="img-{index}.jpg" subset={quoteattr(subset)} task_id="7" width="64" height="48">\n'
        f'    <box label="raccoon" source="manual" occluded="0" xtl="1.00" ytl="2.00" xbr="3.00" ybr="4.00" z_order="0">\n'
        f"    </box>\n  </image>"
        for index, subset in enumerate(subsets)
    )
    return PROJECT_EXPORT.format(images=images).encode()


def _annotations(images: str) -> bytes:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta></meta>{images}</annotations>'.encode()


def _image(shapes: str, name: str = "a.jpg", size: str = 'width="640" height="480"') -> str:
    return f'<image id="0" name="{name}" {size}>{shapes}</image>'


def _box(xtl="10", ytl="20", xbr="110", ybr="220", label="dog", extra='occluded="0"') -> str:
    return f'<box label="{label}" source="manual" {extra} xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" ybr="{ybr}" z_order="0"></box>'


def _one(shapes: str, **image):
    """The parse of one image, its rejected shapes (which travel with its record) beside the record."""
    return list(flattened(cvat.parse(SOURCE, _annotations(_image(shapes, **image)))))


# --- a real-looking task export -------------------------------------------------------------------


def test_task_export_every_image_every_shape():
    items = list(flattened(cvat.parse(SOURCE, TASK_EXPORT.encode())))
    where = "image 'raccoon-3.jpg'"
    only = "is not supported; only box, polygon and ellipse become boxes"
    assert items == [
        ImageRecord(
            "raccoon-1.jpg",
            SOURCE,
            boxes=(Box("raccoon", 81.0, 88.0, 522.0, 408.0, truncated=False),),
            annotated_size=(650, 417),
        ),
        ImageRecord(
            "night/raccoon-2.jpg",
            SOURCE,
            boxes=(
                Box("raccoon", 60.0, 51.0, 462.0, 499.0, truncated=True),
                Box("tail", 405.0, 285.25, 470.0, 390.0, truncated=False),  # the polygon's bounding box
                Box("raccoon", 560.0, 180.0, 640.0, 220.0, truncated=False),  # the ellipse's
                Box("raccoon", 125.0, 75.0, 175.0, 175.0, truncated=False),  # the box turned a quarter
            ),
            annotated_size=(800, 573),
        ),
        Rejection(SOURCE, "shape_unsupported", f"{where}, polyline 0 (tail): <polyline> {only}", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", f"{where}, points 1 (tail): <points> {only}", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", f"{where}, mask 2 (raccoon): <mask> {only}", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", f"{where}, skeleton 3 (raccoon): <skeleton> {only}", ITEM_BOX),
        Rejection(SOURCE, "shape_unsupported", f"{where}, cuboid 4 (raccoon): <cuboid> {only}", ITEM_BOX),
        ImageRecord(
            "raccoon-3.jpg", SOURCE, boxes=(Box("raccoon", 5.0, 6.0, 7.0, 8.0, truncated=False),), annotated_size=(720, 480)
        ),
        ImageRecord("raccoon-4.jpg", SOURCE, boxes=(), annotated_size=(640, 480)),  # a negative example
        ImageRecord("raccoon-5.jpg", SOURCE, boxes=(), annotated_size=(640, 480)),  # a tag is not an object
    ]


def test_task_export_through_parse_annotation_file():
    items = list(parse_annotation_file(cvat.FORMAT, SOURCE, TASK_EXPORT.encode()))
    records = [item for item in items if isinstance(item, ImageRecord)]
    assert [(record.key, record.source_id, record.source_split) for record in records] == [
        ("raccoon-1.jpg", "raccoon-1.jpg", None),
        ("night/raccoon-2.jpg", "night/raccoon-2.jpg", None),
        ("raccoon-3.jpg", "raccoon-3.jpg", None),
        ("raccoon-4.jpg", "raccoon-4.jpg", None),
        ("raccoon-5.jpg", "raccoon-5.jpg", None),
    ]
    assert not any(isinstance(item, Rejection) for item in items)  # the unsupported shapes travel with their image
    assert [[reason for reason, _ in record.rejected_boxes] for record in records] == [
        [], [], ["shape_unsupported"] * 5, [], []]


# --- a project export: subsets become splits ------------------------------------------------------


def test_project_export_subsets_become_lower_case_splits():
    items = list(cvat.parse(SOURCE, _project("Train", "Validation", "Test", "valid", "default")))
    assert items == [
        ImageRecord(f"img-{index}.jpg", SOURCE, boxes=(Box("raccoon", 1.0, 2.0, 3.0, 4.0, truncated=False),),
                    annotated_size=(64, 48), source_split=split)
        for index, split in enumerate(["train", "val", "test", "val", None])
    ]


@pytest.mark.parametrize(
    "subset, split",
    [
        ("Train", "train"),
        ("train", "train"),
        ("TEST", "test"),
        ("Validation", "val"),
        ("validation", "val"),
        ("Valid", "val"),
        ("val", "val"),
        (" Train ", "train"),
        ("Training", "train"),
        ("Testing", "test"),
        ("Hold Out", "hold_out"),  # a split name is lower-case letters, digits and _ (file names use it)
        ("train-2024", "train_2024"),
        ("default", None),  # CVAT's name for "this task has no subset": --splits decides
        ("default_1", None),
        ("", None),
        ("---", None),
    ],
)
def test_subset_names_as_split_names(subset, split):
    ((record,),) = [list(cvat.parse(SOURCE, _project(subset)))]
    assert record.source_split == split


def test_image_without_subset_has_no_split():
    (record,) = _one(_box())
    assert record.source_split is None


# --- geometry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation, corners",
    [
        ("0.00", (100.0, 100.0, 200.0, 150.0)),
        ("180.00", (100.0, 100.0, 200.0, 150.0)),
        ("360", (100.0, 100.0, 200.0, 150.0)),
        ("90.00", (125.0, 75.0, 175.0, 175.0)),
        ("270.00", (125.0, 75.0, 175.0, 175.0)),
        ("-90", (125.0, 75.0, 175.0, 175.0)),
        # 45 degrees: each half-extent becomes (50 + 25) * cos 45 about the centre (150, 125).
        ("45.00", (150 - 75 / math.sqrt(2), 125 - 75 / math.sqrt(2), 150 + 75 / math.sqrt(2), 125 + 75 / math.sqrt(2))),
        ("315.00", (150 - 75 / math.sqrt(2), 125 - 75 / math.sqrt(2), 150 + 75 / math.sqrt(2), 125 + 75 / math.sqrt(2))),
        # 30 degrees: half-width 50 cos 30 + 25 sin 30, half-height 50 sin 30 + 25 cos 30.
        ("30", (150 - 25 * math.sqrt(3) - 12.5, 125 - 25 - 12.5 * math.sqrt(3), 150 + 25 * math.sqrt(3) + 12.5, 125 + 25 + 12.5 * math.sqrt(3))),
    ],
)
def test_rotated_box_becomes_its_axis_aligned_bounding_box(rotation, corners):
    (record,) = _one(_box("100.00", "100.00", "200.00", "150.00", extra=f'occluded="0" rotation="{rotation}"'))
    (box,) = record.boxes
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == pytest.approx(corners, abs=1e-9)


@pytest.mark.parametrize(
    "attributes, corners",
    [
        ('cx="300" cy="200" rx="40" ry="20"', (260.0, 180.0, 340.0, 220.0)),
        ('cx="300" cy="200" rx="40" ry="20" rotation="90.00"', (280.0, 160.0, 320.0, 240.0)),
        ('cx="300" cy="200" rx="40" ry="20" rotation="180"', (260.0, 180.0, 340.0, 220.0)),
        ('cx="300" cy="200" rx="-40" ry="20"', (260.0, 180.0, 340.0, 220.0)),  # a radius has no sign
        # 30 degrees: half-extents sqrt((rx cos)^2 + (ry sin)^2) and sqrt((rx sin)^2 + (ry cos)^2).
        ('cx="300" cy="200" rx="40" ry="20" rotation="30"', (300 - math.sqrt(1300), 200 - math.sqrt(700), 300 + math.sqrt(1300), 200 + math.sqrt(700))),
        ('cx="0" cy="0" rx="10" ry="10" rotation="17"', (-10.0, -10.0, 10.0, 10.0)),  # a circle turns into itself
    ],
)
def test_ellipse_becomes_its_bounding_box(attributes, corners):
    (record,) = _one(f'<ellipse label="eye" source="manual" occluded="1" {attributes} z_order="0"></ellipse>')
    (box,) = record.boxes
    assert (box.label, box.truncated) == ("eye", True)
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == pytest.approx(corners, abs=1e-9)


@pytest.mark.parametrize(
    "points, corners",
    [
        ("10.50,20.00;60.00,5.25;35.00,80.00", (10.5, 5.25, 60.0, 80.0)),
        ("1,2", (1.0, 2.0, 1.0, 2.0)),  # no area: the writer rejects it as box_empty
        (" 1 , 2 ; 3 , 4 ;", (1.0, 2.0, 3.0, 4.0)),
        ("-5,-6;700,800", (-5.0, -6.0, 700.0, 800.0)),  # outside the image: the writer clips it
    ],
)
def test_polygon_becomes_its_bounding_box(points, corners):
    (record,) = _one(f'<polygon label="dog" source="manual" points="{points}" z_order="0"></polygon>')
    assert record.boxes == (Box("dog", *corners),)


def test_nan_in_a_polygon_keeps_a_nan_box_for_the_writer_whatever_the_point_order():
    for points in ("nan,1;2,3;4,5", "2,3;nan,1;4,5", "2,3;4,5;nan,1"):
        (record,) = _one(f'<polygon label="dog" points="{points}"></polygon>')
        (box,) = record.boxes
        assert math.isnan(box.xmin) and math.isnan(box.xmax) and (box.ymin, box.ymax) == (1.0, 5.0)


@pytest.mark.parametrize(
    "occluded, truncated", [('occluded="0"', False), ('occluded="1"', True), ('occluded="true"', True), ("", None), ('occluded=""', None)]
)
def test_occluded_is_kept_as_truncated(occluded, truncated):
    (record,) = _one(_box(extra=occluded))
    assert record.boxes == (Box("dog", 10.0, 20.0, 110.0, 220.0, truncated=truncated),)


def test_labels_are_stripped_and_a_missing_label_is_left_for_the_writer():
    (record,) = _one(_box(label=" dog ") + '<box xtl="1" ytl="1" xbr="2" ybr="2"></box>')
    assert [box.label for box in record.boxes] == ["dog", ""]


@pytest.mark.parametrize(
    "size, expected",
    [
        ('width="640" height="480"', (640, 480)),
        ('width="640.0" height="480"', (640, 480)),
        ('width="0" height="480"', None),
        ('width="-1" height="480"', None),
        ('width="abc" height="480"', None),
        ('width="640.5" height="480"', None),
        ('width="inf" height="480"', None),
        ('height="480"', None),
        ("", None),
    ],
)
def test_annotated_size(size, expected):
    (record,) = _one(_box(), size=size)
    assert record.annotated_size == expected


def test_utf8_names_and_labels():
    (record,) = _one(_box(label="écureuil"), name="forêt/écureuil 1.jpg")
    assert (record.key, record.boxes[0].label) == ("forêt/écureuil 1.jpg", "écureuil")


# --- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, detail",
    [
        ('<box label="dog" ytl="1" xbr="2" ybr="2"></box>', "box 1 (dog): xtl is missing"),
        ('<box label="dog" xtl="1" ytl="one" xbr="2" ybr="2"></box>', "box 1 (dog): ytl 'one' is not a number"),
        ('<box label="dog" xtl="1" ytl="1" xbr="2" ybr="2" rotation="abc"></box>', "box 1 (dog): rotation 'abc' is not a number"),
        ('<box label="dog" xtl="1" ytl="1" xbr="2" ybr="2" rotation="inf"></box>', "box 1 (dog): rotation inf is not finite"),
        ('<box label="dog" xtl="1" ytl="1" xbr="2" ybr="2" rotation="nan"></box>', "box 1 (dog): rotation nan is not finite"),
        ('<polygon label="dog"></polygon>', "polygon 1 (dog): points is missing"),
        ('<polygon label="dog" points=""></polygon>', "polygon 1 (dog): points '' is not x1,y1;x2,y2;..."),
        ('<polygon label="dog" points="1,2,3;4,5"></polygon>', "polygon 1 (dog): points '1,2,3;4,5' is not x1,y1;x2,y2;..."),
        ('<polygon label="dog" points="1 2;3 4"></polygon>', "polygon 1 (dog): points '1 2;3 4' is not x1,y1;x2,y2;..."),
        ('<polygon label="dog" points="1,2;x,4"></polygon>', "polygon 1 (dog): x 'x' is not a number"),
        ('<ellipse label="dog" cx="1" cy="1" rx="2"></ellipse>', "ellipse 1 (dog): ry is missing"),
        ('<ellipse label="dog" cx="1" cy="1" rx="2" ry="1,5"></ellipse>', "ellipse 1 (dog): ry '1,5' is not a number"),
    ],
)
def test_bad_numbers_are_box_malformed_and_the_image_is_kept(shape, detail):
    items = _one(_box("0", "0", "5", "5", label="cat") + shape)
    assert items == [
        Rejection(SOURCE, "box_malformed", f"image 'a.jpg', {detail}", ITEM_BOX),
        ImageRecord("a.jpg", SOURCE, boxes=(Box("cat", 0.0, 0.0, 5.0, 5.0, truncated=False),), annotated_size=(640, 480)),
    ]


def test_a_long_bad_point_list_is_cut_in_the_detail():
    points = ";".join(["1,2"] * 100) + ";oops"
    (rejection, _) = _one(f'<polygon label="dog" points="{points}"></polygon>')
    assert rejection.detail == f"image 'a.jpg', polygon 0 (dog): points {points[:50]!r} is not x1,y1;x2,y2;..."


def test_an_unknown_element_in_an_image_is_shape_unsupported_not_dropped():
    (rejection, record) = _one('<rotated_thing label="dog" x="1"/>' + _box())
    assert rejection == Rejection(
        SOURCE,
        "shape_unsupported",
        "image 'a.jpg', rotated_thing 0 (dog): <rotated_thing> is not supported; only box, polygon and ellipse become boxes",
        ITEM_BOX,
    )
    assert len(record.boxes) == 1


@pytest.mark.parametrize("name", ['name=""', 'name="   "', ""])
def test_an_image_without_a_name_is_cvat_invalid_with_its_boxes(name):
    image = f'<image id="5" {name} width="4" height="4">{_box()}<polygon label="x" points="1,2"/><polyline label="y" points="1,2"/><tag label="z"/></image>'
    items = list(cvat.parse(SOURCE, _annotations(image + _image(_box(), name="b.jpg"))))
    assert items[0] == Rejection(SOURCE, "cvat_invalid", "image 0 (id '5') has no name", ITEM_ANNOTATION, 2)
    assert [item.key for item in items[1:]] == ["b.jpg"]


@pytest.mark.parametrize(
    "data, detail",
    [
        (b"<annotation><filename>a.jpg</filename></annotation>", "root element is <annotation>, not <annotations> (Pascal VOC? use --format voc)"),
        (b"<Annotations/>", "root element is <Annotations>, not <annotations>"),
        (b"<html><body>oops</body></html>", "root element is <html>, not <annotations>"),
        (b'<annotations xmlns="http://example.com/cvat"/>', "root element is <{http://example.com/cvat}annotations>, not <annotations>"),
    ],
)
def test_another_root_is_cvat_invalid(data, detail):
    assert list(cvat.parse(SOURCE, data)) == [Rejection(SOURCE, "cvat_invalid", detail, ITEM_ANNOTATION)]


def test_raccoon_voc_file_is_cvat_invalid_and_a_cvat_export_is_voc_invalid(raccoon):
    data = (raccoon / "annotations" / "raccoon-1.xml").read_bytes()
    ((item,),) = [list(cvat.parse("raccoon-1.xml", data))]
    assert (item.reason, item.item) == ("cvat_invalid", ITEM_ANNOTATION)
    assert list(voc.parse(SOURCE, TASK_EXPORT.encode())) == [
        Rejection(SOURCE, "voc_invalid", "root element is <annotations>, not <annotation>", ITEM_ANNOTATION)
    ]


def test_a_cvat_for_video_export_is_rejected_with_its_shapes():
    video = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>9</id><name>clip</name><size>10</size><mode>interpolation</mode></task></meta>
  <track id="0" label="raccoon" source="manual">
    <box frame="0" keyframe="1" outside="0" occluded="0" xtl="1.00" ytl="2.00" xbr="30.00" ybr="40.00" z_order="0"></box>
    <box frame="5" keyframe="1" outside="0" occluded="0" xtl="5.00" ytl="2.00" xbr="34.00" ybr="40.00" z_order="0"></box>
    <box frame="6" keyframe="1" outside="1" occluded="0" xtl="5.00" ytl="2.00" xbr="34.00" ybr="40.00" z_order="0"></box>
  </track>
  <track id="1" label="raccoon" source="manual">
    <polygon frame="2" keyframe="1" outside="0" occluded="0" points="1.00,2.00;3.00,4.00;5.00,1.00" z_order="0"></polygon>
  </track>
</annotations>"""
    assert list(cvat.parse(SOURCE, video.encode())) == [
        Rejection(
            SOURCE,
            "cvat_invalid",
            "2 <track> element(s) of CVAT for video 1.1; export as CVAT for images 1.1",
            ITEM_ANNOTATION,
            3,
        )
    ]


def test_an_export_without_images_is_empty():
    assert list(cvat.parse(SOURCE, _annotations(""))) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<annotations>",
        b"<annotations><image name='a.jpg'></annotations>",
        b"not xml at all",
        b"<annotations>&undefined;</annotations>",
        _annotations("") + b"<annotations/>",
        b'<?xml version="1.0" encoding="x-no-such-codec"?><annotations/>',
    ],
)
def test_malformed_xml_is_xml_malformed(data):
    (item,) = list(cvat.parse(SOURCE, data))
    assert (item.source, item.reason, item.item) == (SOURCE, "xml_malformed", ITEM_ANNOTATION)
    assert item.detail and "\n" not in item.detail and len(item.detail) <= 200


@pytest.mark.parametrize(
    "data",
    [
        b"""<?xml version="1.0"?><!DOCTYPE annotations [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;">]>
<annotations><image id="0" name="&lol1;"/></annotations>""",
        b"""<?xml version="1.0"?><!DOCTYPE annotations [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotations><image id="0" name="a.jpg"><box label="&xxe;" xtl="1" ytl="1" xbr="2" ybr="2"/></image></annotations>""",
        b"""<?xml version="1.0"?><!DOCTYPE annotations SYSTEM "http://127.0.0.1:9/cvat.dtd"><annotations/>""",
    ],
    ids=["entity_expansion", "external_entity", "external_dtd"],
)
def test_entity_tricks_are_xml_unsafe(data):
    assert list(cvat.parse(SOURCE, data)) == [Rejection(SOURCE, "xml_unsafe", "refused: DTDForbidden", ITEM_ANNOTATION)]


def test_shared_xml_helper_returns_the_root_or_a_rejection():
    root = parse_xml(SOURCE, TASK_EXPORT.encode())
    assert isinstance(root, ElementTree.Element) and root.tag == "annotations"
    assert root.findtext("version") == "1.1"
    assert parse_xml("x.xml", b"<a>") == Rejection("x.xml", "xml_malformed", "no element found: line 1, column 3", ITEM_ANNOTATION)
    assert parse_xml("x.xml", b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>') == Rejection(
        "x.xml", "xml_unsafe", "refused: DTDForbidden", ITEM_ANNOTATION
    )
    utf16 = '<?xml version="1.0" encoding="utf-16"?><annotations><image name="forêt.jpg"/></annotations>'.encode("utf-16")
    assert parse_xml("x.xml", utf16).find("image").get("name") == "forêt.jpg"


@pytest.mark.parametrize("name", ["../x.jpg", "/etc/passwd", "C:\\x.jpg", "http://evil/x.jpg"])
def test_image_names_outside_images_are_rejected_with_their_boxes(name):
    data = _annotations(_image(_box() + _box(), name=name) + _image(_box(), name="ok.jpg"))
    items = list(parse_annotation_file(cvat.FORMAT, SOURCE, data))
    assert items[0] == Rejection(SOURCE, "path_outside_images", f"image path {name!r} is not inside --images", ITEM_IMAGE, 2)
    assert [(item.key, len(item.boxes)) for item in items[1:]] == [("ok.jpg", 1)]


# --- the format's entry and sniffing -------------------------------------------------------------


def test_format_entry():
    fmt = cvat.FORMAT
    assert isinstance(fmt, AnnotationFormat)
    assert (fmt.name, fmt.folder_patterns) == ("cvat", ("*.xml",))
    assert fmt.parse is cvat.parse and fmt.sniff is cvat.sniff
    assert fmt.summary and "\n" not in fmt.summary and fmt.example.startswith("--format cvat ")


def test_sniff_tells_cvat_and_voc_apart(raccoon):
    for data in (TASK_EXPORT.encode(), _project("Train")):
        head = data[:4096]
        assert cvat.sniff("export/annotations.xml", head)
        assert not voc.sniff("export/annotations.xml", head)
    for path in sorted((raccoon / "annotations").glob("*.xml"))[:20]:
        head = path.read_bytes()[:4096]
        assert voc.sniff(str(path), head)
        assert not cvat.sniff(str(path), head)


@pytest.mark.parametrize(
    "path, head, expected",
    [
        ("a.xml", b"<annotations><version>1.1</version><meta>", True),
        ("A.XML", b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\r\n<annotations>\r\n  <version>1.1</version>\r\n  <meta>', True),
        ("a.xml", b"<!-- exported by CVAT -->\n<annotations ><image id='0' name='a.jpg'/>", True),
        ("a.xml", b"<annotations>", False),  # CVAT's root, but neither <meta> nor an <image>: nothing to go by
        ("a.xml", b"<annotations/>", False),
        ("a.xml", b"<annotations><version>1.1</version></annotations><meta>", False),  # after the root ended
        ("a.xml", b"<annotation><filename>a.jpg</filename></annotation>", False),
        ("a.xml", b"<root><annotations></annotations></root>", False),  # not the root
        ("a.xml", b"<annotationsx>", False),
        ("a.json", b"<annotations>", False),
        ("a.xml", b"", False),
        ("a.xml", b"\x00\xff", False),
    ],
)
def test_sniff(path, head, expected):
    assert cvat.sniff(path, head) is expected


# --- properties: parse yields records and rejections, never an exception ------------------------


def _check(items):
    assert all(isinstance(item, (ImageRecord, Rejection)) for item in items)
    for item in items:
        if isinstance(item, Rejection):
            assert item.reason and item.item in (ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    _check(list(cvat.parse(SOURCE, data)))
    _check(list(parse_annotation_file(cvat.FORMAT, SOURCE, data)))
    assert isinstance(cvat.sniff("a.xml", data), bool)


@given(st.text(max_size=200))
def test_random_text_never_raises(text):
    _check(list(cvat.parse(SOURCE, text.encode("utf-8", "surrogatepass"))))
    _check(list(cvat.parse(SOURCE, _annotations(text.replace("&", "&amp;").replace("<", "&lt;")))))


_VALUE = st.one_of(
    st.sampled_from(["0", "1", "10.50", "-3", "1e999", "-inf", "nan", "", " 7 ", "x", "1,2", "1,2;3,4", "1,2;3", ";"]),
    st.integers(-100, 5000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(exclude_categories=("Cs", "Cc", "Cn")), max_size=6),
)
_ATTRIBUTES = ["label", "xtl", "ytl", "xbr", "ybr", "points", "cx", "cy", "rx", "ry", "rotation", "occluded", "z_order"]
_SHAPE = st.builds(
    lambda tag, attributes: f"<{tag} {' '.join(f'{name}={quoteattr(value)}' for name, value in attributes.items())}/>",
    st.sampled_from(["box", "box", "polygon", "ellipse", "polyline", "points", "mask", "skeleton", "tag", "cuboid"]),
    st.dictionaries(st.sampled_from(_ATTRIBUTES), _VALUE, max_size=8),
)
_IMAGE = st.builds(
    lambda attributes, shapes: f"<image {' '.join(f'{name}={quoteattr(value)}' for name, value in attributes.items())}>{''.join(shapes)}</image>",
    st.dictionaries(
        st.sampled_from(["id", "name", "width", "height", "subset"]),
        st.one_of(_VALUE, st.sampled_from(["a.jpg", "../b.jpg", "Train", "valid", "default"])),
        max_size=5,
    ),
    st.lists(_SHAPE, max_size=5),
)


@given(st.lists(st.one_of(_IMAGE, _SHAPE.map(lambda shape: f"<track>{shape}</track>")), max_size=4))
def test_random_cvat_documents_never_raise(elements):
    data = _annotations("".join(elements))
    items = list(cvat.parse(SOURCE, data))
    _check(items)
    assert all(item.reason != "xml_malformed" for item in items if isinstance(item, Rejection))
    checked = list(parse_annotation_file(cvat.FORMAT, SOURCE, data))
    _check(checked)
    assert not any(isinstance(item, Rejection) and item.reason == "annotation_unreadable" for item in checked)
    for item in items:
        if isinstance(item, ImageRecord):
            assert item.source_split is None or item.source_split.replace("_", "").isalnum()


@given(st.lists(st.lists(_SHAPE, max_size=6), min_size=1, max_size=3))
def test_every_shape_but_a_tag_becomes_a_box_or_a_box_rejection(images):
    data = _annotations("".join(_image("".join(shapes), name=f"{index}.jpg") for index, shapes in enumerate(images)))
    assert all(isinstance(item, ImageRecord) for item in cvat.parse(SOURCE, data))  # rejections ride on records
    items = list(flattened(cvat.parse(SOURCE, data)))
    records = [item for item in items if isinstance(item, ImageRecord)]
    rejections = [item for item in items if isinstance(item, Rejection)]
    assert [record.key for record in records] == [f"{index}.jpg" for index in range(len(images))]
    assert all(rejection.item == ITEM_BOX for rejection in rejections)
    assert {rejection.reason for rejection in rejections} <= {"box_malformed", "shape_unsupported"}
    shapes = sum(1 for image in images for shape in image if not shape.startswith("<tag "))
    assert sum(len(record.boxes) for record in records) + len(rejections) == shapes
