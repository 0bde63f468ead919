"""transforms/formats/csv_format.py: the TensorFlow Object Detection CSV (docs/design.md sections 4 and 5)."""
import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import voc_boxes
from transforms.formats import AnnotationFormat, flattened, parse_annotation_file
from transforms.formats import csv_format, voc
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, Box, ImageRecord, Rejection

SOURCE = "data/train_labels.csv"
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax"


def _parse(text: str, source: str = SOURCE):
    return list(csv_format.parse(source, text.encode("utf-8")))


def _split(items):
    return (
        [item for item in items if isinstance(item, ImageRecord)],
        [item for item in items if isinstance(item, Rejection)],
    )


# --- the raccoon CSVs, checked box by box against the VOC files they were made from ----------------


def test_raccoon_csvs_match_the_voc_annotations_box_for_box(raccoon):
    seen = {}
    for name, images, boxes in (("train_labels.csv", 160, 173), ("test_labels.csv", 40, 44)):
        path = raccoon / "csv" / name
        items = list(csv_format.parse(str(path), path.read_bytes()))
        assert all(isinstance(item, ImageRecord) for item in items)
        assert (len(items), sum(len(item.boxes) for item in items)) == (images, boxes)
        for record in items:
            assert record.key not in seen, f"{record.key} is in {seen.get(record.key)} and {name}"
            seen[record.key] = name
            filename, size, expected = voc_boxes(raccoon / "annotations" / record.key.replace(".jpg", ".xml"))
            assert record.key == filename
            assert record.annotated_size == size
            assert record.source == str(path)
            assert [(box.label, box.xmin, box.ymin, box.xmax, box.ymax) for box in record.boxes] == expected
            assert all((box.difficult, box.truncated, box.is_crowd, box.area) == (None,) * 4 for box in record.boxes)
            assert (record.source_split, record.source_id) == (None, "")
    assert len(seen) == 200  # every image of the dataset, each in exactly one of the two files


def test_raccoon_train_csv_groups_rows_in_first_appearance_order(raccoon):
    data = (raccoon / "csv" / "train_labels.csv").read_bytes()
    records = list(csv_format.parse("train_labels.csv", data))
    # The first rows: raccoon-17 (1 box), raccoon-11 (1 box), raccoon-63 (2 consecutive rows).
    assert records[:3] == [
        ImageRecord("raccoon-17.jpg", "train_labels.csv", boxes=(Box("raccoon", 95.0, 60.0, 167.0, 118.0),), annotated_size=(259, 194)),
        ImageRecord("raccoon-11.jpg", "train_labels.csv", boxes=(Box("raccoon", 3.0, 1.0, 461.0, 431.0),), annotated_size=(660, 432)),
        ImageRecord(
            "raccoon-63.jpg",
            "train_labels.csv",
            boxes=(Box("raccoon", 74.0, 107.0, 280.0, 290.0), Box("raccoon", 227.0, 93.0, 403.0, 298.0)),
            annotated_size=(600, 400),
        ),
    ]
    order = list(dict.fromkeys(row["filename"] for row in csv.DictReader(io.StringIO(data.decode()))))
    assert [record.key for record in records] == order


def test_raccoon_csv_through_parse_annotation_file(raccoon):
    data = (raccoon / "csv" / "test_labels.csv").read_bytes()
    items = list(parse_annotation_file(csv_format.FORMAT, "test_labels.csv", data))
    assert len(items) == 40
    assert all(isinstance(item, ImageRecord) and item.source_id == item.key for item in items)


# --- layout: columns, grouping, encodings ---------------------------------------------------------


def test_rows_group_by_filename_in_first_appearance_order():
    text = f"""{HEADER}
b.jpg,640,480,dog,1,2,3,4
a.jpg,100,50,cat,5.5,6.25,7,8
b.jpg,640,480,cat,10,20,30,40
sub/c.png,32,32,dog,0,0,32,32
a.jpg,100,50,dog,9,10,11,12
"""
    assert _parse(text) == [
        ImageRecord("b.jpg", SOURCE, boxes=(Box("dog", 1.0, 2.0, 3.0, 4.0), Box("cat", 10.0, 20.0, 30.0, 40.0)), annotated_size=(640, 480)),
        ImageRecord("a.jpg", SOURCE, boxes=(Box("cat", 5.5, 6.25, 7.0, 8.0), Box("dog", 9.0, 10.0, 11.0, 12.0)), annotated_size=(100, 50)),
        ImageRecord("sub/c.png", SOURCE, boxes=(Box("dog", 0.0, 0.0, 32.0, 32.0),), annotated_size=(32, 32)),
    ]


def test_columns_are_found_by_name_in_any_order_and_extra_columns_are_ignored():
    text = """xmax,Class,YMIN,note,filename,ymax,xmin,id
30,dog,20,"a, quoted note",a.jpg,40,10,7
"""
    assert _parse(text) == [ImageRecord("a.jpg", SOURCE, boxes=(Box("dog", 10.0, 20.0, 30.0, 40.0),))]


def test_width_and_height_are_optional_columns():
    assert _parse("filename,class,xmin,ymin,xmax,ymax\na.jpg,dog,1,2,3,4\n") == [
        ImageRecord("a.jpg", SOURCE, boxes=(Box("dog", 1.0, 2.0, 3.0, 4.0),), annotated_size=None)
    ]


def test_bom_crlf_and_quoted_fields():
    text = (
        '\ufeff"filename","width","height","class","xmin","ymin","xmax","ymax"\r\n'
        '"photos/a, b.jpg",640,480,"red ""fox""",1,2,3,4\r\n'
        '"line\r\nbreak.jpg",10,10,dog,1,1,2,2\r\n'
        "  c.jpg  ,10,10, dog ,1,1,2,2\r\n"
    )
    assert _parse(text) == [
        ImageRecord("photos/a, b.jpg", SOURCE, boxes=(Box('red "fox"', 1.0, 2.0, 3.0, 4.0),), annotated_size=(640, 480)),
        ImageRecord("line\r\nbreak.jpg", SOURCE, boxes=(Box("dog", 1.0, 1.0, 2.0, 2.0),), annotated_size=(10, 10)),
        ImageRecord("c.jpg", SOURCE, boxes=(Box("dog", 1.0, 1.0, 2.0, 2.0),), annotated_size=(10, 10)),
    ]


def test_old_mac_line_endings_and_no_final_newline():
    text = f"{HEADER}\ra.jpg,4,4,dog,0,0,1,1\ra.jpg,4,4,cat,1,1,2,2"
    (record,) = _parse(text)
    assert [box.label for box in record.boxes] == ["dog", "cat"]


def test_blank_lines_and_a_spreadsheets_empty_rows_are_skipped():
    text = f"\n{HEADER}\n\na.jpg,4,4,dog,0,0,1,1\n,,,,,,,\n , , ,,,,,\n"
    assert _parse(text) == [ImageRecord("a.jpg", SOURCE, boxes=(Box("dog", 0.0, 0.0, 1.0, 1.0),), annotated_size=(4, 4))]


def test_utf8_file_names_and_labels():
    (record,) = _parse(f"{HEADER}\nforêt/écureuil 1.jpg,4,4,écureuil,0,0,1,1\n")
    assert (record.key, record.boxes[0].label) == ("forêt/écureuil 1.jpg", "écureuil")


def test_header_only_is_no_images():
    assert _parse(HEADER + "\n") == []


def test_the_same_image_spelled_two_ways_is_one_record():
    items = _parse(f"{HEADER}\n./a.jpg,4,4,dog,0,0,1,1\na.jpg,4,4,cat,1,1,2,2\n")
    assert items == [
        ImageRecord("./a.jpg", SOURCE, boxes=(Box("dog", 0.0, 0.0, 1.0, 1.0), Box("cat", 1.0, 1.0, 2.0, 2.0)), annotated_size=(4, 4))
    ]
    (checked,) = list(parse_annotation_file(csv_format.FORMAT, SOURCE, f"{HEADER}\n./a.jpg,4,4,dog,0,0,1,1\n".encode()))
    assert (checked.key, checked.source_id) == ("a.jpg", "a.jpg")


@pytest.mark.parametrize(
    "width, height, size",
    [
        ("640", "480", (640, 480)),
        ("640.0", " 480 ", (640, 480)),
        ("0", "480", None),
        ("-640", "480", None),
        ("640.5", "480", None),
        ("abc", "480", None),
        ("", "480", None),
        ("inf", "480", None),
        ("nan", "480", None),
        ("1e999", "480", None),
    ],
)
def test_annotated_size_only_from_positive_integers(width, height, size):
    (record,) = _parse(f'{HEADER}\na.jpg,"{width}","{height}",dog,1,2,3,4\n')
    assert record.annotated_size == size
    assert record.boxes == (Box("dog", 1.0, 2.0, 3.0, 4.0),)


def test_the_first_usable_size_of_an_image_wins():
    (record,) = _parse(f"{HEADER}\na.jpg,0,0,dog,1,2,3,4\na.jpg,64,48,dog,1,2,3,4\na.jpg,32,32,dog,1,2,3,4\n")
    assert record.annotated_size == (64, 48)


def test_odd_but_parseable_numbers_go_to_the_writer_which_judges_them():
    (record,) = _parse(f"{HEADER}\na.jpg,4,4,dog,nan,-5,1e999,1.5e1\na.jpg,4,4,,1,1,2,2\n")
    assert record.boxes[0].ymin == -5.0 and record.boxes[0].xmax == float("inf") and record.boxes[0].ymax == 15.0
    assert record.boxes[0].xmin != record.boxes[0].xmin  # NaN: the writer rejects it as box_not_finite
    assert record.boxes[1] == Box("", 1.0, 1.0, 2.0, 2.0)  # no class: the writer rejects it as box_no_label


# --- rejections ---------------------------------------------------------------------------------


def test_bad_numbers_reject_the_row_naming_its_number_and_keep_the_image():
    text = f"""{HEADER}
a.jpg,640,480,dog,ten,2,3,4
a.jpg,640,480,cat,1,2,3,4
b.jpg,640,480,dog,1,2,,4
c.jpg,640,480,dog,1,2,3
"""
    # a rejected row travels with its image's record
    assert [(r.key, r.rejected_boxes) for r in _parse(text)] == [
        ("a.jpg", (("box_malformed", "row 2 (dog): xmin 'ten' is not a number"),)),
        ("b.jpg", (("box_malformed", "row 4 (dog): xmax is missing"),)),
        ("c.jpg", (("box_malformed", "row 5 (dog): ymax is missing"),)),
    ]
    records, rejections = _split(list(flattened(_parse(text))))
    assert rejections == [
        Rejection(SOURCE, "box_malformed", "row 2 (dog): xmin 'ten' is not a number", ITEM_BOX),
        Rejection(SOURCE, "box_malformed", "row 4 (dog): xmax is missing", ITEM_BOX),
        Rejection(SOURCE, "box_malformed", "row 5 (dog): ymax is missing", ITEM_BOX),
    ]
    # Every image keeps its record, so a rejected box never makes its image an orphan.
    assert records == [
        ImageRecord("a.jpg", SOURCE, boxes=(Box("cat", 1.0, 2.0, 3.0, 4.0),), annotated_size=(640, 480)),
        ImageRecord("b.jpg", SOURCE, boxes=(), annotated_size=(640, 480)),
        ImageRecord("c.jpg", SOURCE, boxes=(), annotated_size=(640, 480)),
    ]


def test_row_numbers_count_the_header_and_blank_lines_like_a_spreadsheet():
    (rejection, _) = flattened(_parse(f"{HEADER}\n\na.jpg,4,4,dog,1,2,3,4\na.jpg,4,4,dog,1,x,3,4\n"))
    assert rejection.detail == "row 4 (dog): ymin 'x' is not a number"


def test_a_row_without_a_filename_is_box_malformed():
    items = _parse(f"{HEADER}\n,640,480,dog,1,2,3,4\n  ,640,480,cat,1,2,3,4\n")
    assert items == [
        Rejection(SOURCE, "box_malformed", "row 2 (dog): filename is missing", ITEM_BOX),
        Rejection(SOURCE, "box_malformed", "row 3 (cat): filename is missing", ITEM_BOX),
    ]


def test_a_long_bad_number_is_cut_in_the_detail():
    (rejection, _) = flattened(_parse(f"{HEADER}\na.jpg,4,4,dog,{'9' * 500}x,2,3,4\n"))
    assert rejection.detail == f"row 2 (dog): xmin {'9' * 50!r} is not a number"


@pytest.mark.parametrize(
    "header, missing",
    [
        ("filename,width,height,label,xmin,ymin,xmax,ymax", "class"),
        ("image,class,xmin,ymin,xmax,ymax", "filename"),
        ("filename;width;height;class;xmin;ymin;xmax;ymax", "filename, class, xmin, ymin, xmax, ymax"),
        ("filename,class,x,y,w,h", "xmin, ymin, xmax, ymax"),
    ],
)
def test_missing_required_columns_reject_the_file_once(header, missing):
    items = _parse(f"{header}\na.jpg,dog,1,2,3,4\nb.jpg,dog,1,2,3,4\n\n")
    assert items == [
        Rejection(SOURCE, "csv_invalid", f"no {missing} column(s) in the header {header!r}", ITEM_ANNOTATION, boxes=2)
    ]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf", b" , ,\r\n"])
def test_no_header_is_csv_invalid(data):
    assert list(csv_format.parse(SOURCE, data)) == [Rejection(SOURCE, "csv_invalid", "no header row", ITEM_ANNOTATION)]


@pytest.mark.parametrize(
    "data",
    [
        (HEADER + "\nforêt.jpg,4,4,dog,1,2,3,4\n").encode("latin-1"),
        (HEADER + "\n").encode("utf-16"),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    ],
)
def test_bytes_that_are_not_utf8_are_csv_malformed(data):
    (item,) = list(csv_format.parse(SOURCE, data))
    assert (item.source, item.reason, item.item) == (SOURCE, "csv_malformed", ITEM_ANNOTATION)
    assert item.detail.startswith("not UTF-8 text: ")


def test_a_field_beyond_the_csv_modules_limit_is_csv_malformed():
    data = f'{HEADER}\na.jpg,4,4,dog,1,2,3,4\n"{"x" * 200_000}",4,4,dog,1,2,3,4\n'.encode()
    assert list(csv_format.parse(SOURCE, data)) == [
        Rejection(SOURCE, "csv_malformed", "field larger than field limit (131072)", ITEM_ANNOTATION)
    ]


@pytest.mark.parametrize("filename", ["../x.jpg", "/etc/passwd", "C:\\x.jpg"])
def test_paths_outside_images_are_rejected_with_their_boxes(filename):
    text = f'{HEADER}\n"{filename}",4,4,dog,0,0,1,1\n"{filename}",4,4,cat,1,1,2,2\nok.jpg,4,4,dog,0,0,1,1\n'
    items = list(parse_annotation_file(csv_format.FORMAT, SOURCE, text.encode()))
    assert items[0] == Rejection(SOURCE, "path_outside_images", f"image path {filename!r} is not inside --images", ITEM_IMAGE, 2)
    assert [(item.key, len(item.boxes)) for item in items[1:]] == [("ok.jpg", 1)]


# --- the format's entry --------------------------------------------------------------------------


def test_format_entry():
    fmt = csv_format.FORMAT
    assert isinstance(fmt, AnnotationFormat)
    assert (fmt.name, fmt.folder_patterns) == ("csv", ("*.csv",))
    assert fmt.example == "--format csv --annotations data/train_labels.csv --images data/images"
    assert fmt.parse is csv_format.parse and fmt.sniff is csv_format.sniff
    assert fmt.summary and "\n" not in fmt.summary


def test_sniff_claims_the_raccoon_csvs_and_not_their_xml(raccoon):
    for path in sorted((raccoon / "csv").glob("*.csv")):
        assert csv_format.sniff(str(path), path.read_bytes()[:4096])
    xml = raccoon / "annotations" / "raccoon-1.xml"
    assert not csv_format.sniff(str(xml), xml.read_bytes())
    assert not voc.sniff(str(raccoon / "csv" / "train_labels.csv"), (raccoon / "csv" / "train_labels.csv").read_bytes()[:4096])


@pytest.mark.parametrize(
    "path, head, expected",
    [
        ("a.csv", HEADER.encode() + b"\r\na.jpg,1,1,dog,0,0,1,1", True),
        ("A.CSV", b"\xef\xbb\xbf" + HEADER.encode(), True),
        ("a.csv", b'"filename","class","xmin","ymin","xmax","ymax"', True),
        ("a.csv", b"Class, FileName ,XMIN,YMIN,XMAX,YMAX,extra", True),
        ("a.csv", HEADER.encode()[:-2], False),  # cut inside the last column name
        ("a.csv", b"filename,width,height,label,xmin,ymin,xmax,ymax", False),
        ("a.csv", b"image_id,x,y,w,h\n" + HEADER.encode(), False),  # the header is the first line only
        ("a.txt", HEADER.encode(), False),
        ("a.csv", b"", False),
        ("a.csv", b"\xff\xfe\x00", False),
    ],
)
def test_sniff(path, head, expected):
    assert csv_format.sniff(path, head) is expected


# --- properties: parse yields records and rejections, never an exception ------------------------


def _check(items):
    assert all(isinstance(item, (ImageRecord, Rejection)) for item in items)
    for item in items:
        if isinstance(item, Rejection):
            assert item.reason and item.item in (ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE)
            if item.item == ITEM_ANNOTATION:
                assert item.detail and "\n" not in item.detail


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    _check(list(csv_format.parse(SOURCE, data)))
    _check(list(parse_annotation_file(csv_format.FORMAT, SOURCE, data)))
    assert isinstance(csv_format.sniff("a.csv", data), bool)


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    data = text.encode("utf-8", "surrogatepass")
    _check(list(csv_format.parse(SOURCE, data)))
    _check(list(csv_format.parse(SOURCE, (HEADER + "\n" + text).encode("utf-8", "surrogatepass"))))


_CELL = st.one_of(
    st.sampled_from(["a.jpg", "b/c.png", "../x.jpg", "", " ", "dog", "0", "1", "640", "nan", "-1", "1e999", '"', ",", "\n"]),
    st.integers(-100, 5000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)
_COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax", "extra", "FileName", "CLASS"]


@st.composite
def _random_csv(draw):
    header = draw(st.lists(st.sampled_from(_COLUMNS), max_size=10))
    rows = draw(st.lists(st.lists(_CELL, max_size=len(header) + 2), max_size=8))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@given(_random_csv())
def test_random_csv_documents_never_raise(text):
    data = text.encode("utf-8", "surrogatepass")
    _check(list(csv_format.parse(SOURCE, data)))
    checked = list(parse_annotation_file(csv_format.FORMAT, SOURCE, data))
    _check(checked)
    assert not any(isinstance(item, Rejection) and item.reason == "annotation_unreadable" for item in checked)


_NUMBER = st.one_of(st.integers(-10, 5000).map(str), st.floats(-1e6, 1e6).map(repr), st.sampled_from(["", "x", "1,5", " 7 "]))


@given(
    st.lists(
        st.tuples(st.sampled_from(["a.jpg", "b.jpg", "c/d.jpg"]), st.sampled_from(["dog", "cat"]), st.tuples(*[_NUMBER] * 4)),
        max_size=10,
    )
)
def test_every_row_becomes_a_box_or_a_box_rejection(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["class", "xmin", "ymin", "xmax", "ymax", "filename"])
    writer.writerows([(label, *numbers, filename) for filename, label, numbers in rows])
    assert not any(isinstance(item, Rejection) for item in _parse(out.getvalue()))  # each has a file name
    records, rejections = _split(list(flattened(_parse(out.getvalue()))))
    assert [record.key for record in records] == list(dict.fromkeys(filename for filename, _, _ in rows))
    assert all(rejection.reason == "box_malformed" and rejection.item == ITEM_BOX for rejection in rejections)
    assert sum(len(record.boxes) for record in records) + len(rejections) == len(rows)
    expected = {}
    for filename, label, numbers in rows:
        try:
            expected.setdefault(filename, []).append(Box(label, *(float(number) for number in numbers)))
        except ValueError:
            pass
    for record in records:
        assert list(record.boxes) == expected.get(record.key, [])
