"""Annotation files that would take memory proportional to themselves, or more: size limits on files and lines.

A file over --max_annotation_bytes is rejected before it is read; a line of a line-based format (YOLO,
CSV) over 1 MiB is rejected and the next line parsed, so memory is bounded by the largest single item.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO
from transforms.beam import read
from transforms.beam.runtime import REMOTE
from transforms.formats import FORMATS, ParseContext, _text, csv_format, parse_annotation_file, yolo
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, ImageRecord, Rejection

LIMIT = _text.MAX_LINE_BYTES
CLASSES = ParseContext(classes=("cat", "dog"))
HEADER = b"filename,width,height,class,xmin,ymin,xmax,ymax\n"


# --- whole files over --max_annotation_bytes -----------------------------------------------------------


def test_a_file_over_the_limit_is_rejected_naming_its_size_the_limit_and_the_flag():
    data = b"0 0.5 0.5 0.2 0.2\n" * 10  # 180 bytes
    small = ParseContext(classes=("cat",), max_annotation_bytes=179)
    assert list(parse_annotation_file(yolo.FORMAT, "labels/a.txt", data, small)) == [
        Rejection("labels/a.txt", "annotation_too_large", "180 bytes, more than --max_annotation_bytes 179", ITEM_ANNOTATION)
    ]
    exactly = ParseContext(classes=("cat",), max_annotation_bytes=180)
    (record,) = parse_annotation_file(yolo.FORMAT, "labels/a.txt", data, exactly)
    assert len(record.boxes) == 10


VOC = "<annotation><filename>a.jpg</filename></annotation>"  # 51 bytes


def _plan(fmt, path):
    return list(read._PlanParsing(fmt, 0, REMOTE.exchange).process([str(path)]))


def _parse_step(fmt, context, tasks):
    """The parse step's outputs for planned tasks, as a local run makes them (one process, no spill folder)."""
    parse = read.ParseAnnotationFiles(fmt, context, {}, 0, 0, REMOTE)
    parse.setup()
    parse.start_bundle()
    return [output for task in tasks for output in parse.handle(task, 1)]


def _rejected(outputs):
    return [output.value for output in outputs if getattr(output, "tag", None) == read.REJECTED]


@pytest.fixture
def opened(monkeypatch):
    """The paths the parse step reads."""
    paths = []
    real_read_file = read.read_file
    monkeypatch.setattr(read, "read_file", lambda path, *args: paths.append(path) or real_read_file(path, *args))
    return paths


def test_the_parse_step_rejects_a_file_over_the_limit_without_reading_it(tmp_path, opened):
    path = tmp_path / "a.xml"
    path.write_text(VOC)
    outputs = _parse_step(FORMATS["voc"], ParseContext(max_annotation_bytes=50), _plan(FORMATS["voc"], path))
    assert _rejected(outputs) == [
        Rejection(str(path), "annotation_too_large", "51 bytes, more than --max_annotation_bytes 50", ITEM_ANNOTATION)
    ]
    assert opened == []
    outputs = _parse_step(FORMATS["voc"], ParseContext(max_annotation_bytes=51), _plan(FORMATS["voc"], path))
    assert (_rejected(outputs), opened) == ([], [str(path)])


def test_a_file_that_grew_since_the_listing_is_read_only_to_one_byte_past_the_limit(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(VOC)
    tasks = _plan(FORMATS["voc"], path)
    path.write_text(VOC + " " * 10_000)
    (rejected,) = _rejected(_parse_step(FORMATS["voc"], ParseContext(max_annotation_bytes=60), tasks))
    assert (rejected.reason, rejected.detail) == ("annotation_too_large", "61 bytes, more than --max_annotation_bytes 60")


def test_a_streamed_part_is_exempt_from_the_whole_file_limit(tmp_path, monkeypatch):
    path = tmp_path / "instances.json"
    path.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": []}')
    monkeypatch.setattr(read, "PART_BYTES", 40)  # parts, each streaming the whole file
    tasks = _plan(FORMATS["coco"], path)
    outputs = _parse_step(FORMATS["coco"], ParseContext(max_annotation_bytes=50), tasks)
    assert len(tasks) > 1 and _rejected(outputs) == []
    assert len([output for output in outputs if getattr(output, "tag", None) is None]) == 1  # a.jpg's record batch


# --- lines over 1 MiB --------------------------------------------------------------------------------------


def test_lines_are_split_as_bytes_splitlines_splits_them_and_nothing_is_lost():
    data = b"\xef\xbb\xbfa\r\nb\rc\n\nd"
    assert list(_text.lines(data)) == [(1, 3, b"a\r\n"), (2, 6, b"b\r"), (3, 8, b"c\n"), (4, 10, b"\n"), (5, 11, b"d")]


@given(st.lists(st.sampled_from([b"a", b"\xff", b" ", b"\r", b"\n", b"\r\n", b"1 0.5"]), max_size=30).map(b"".join))
def test_lines_join_back_into_the_file(data):
    found = list(_text.lines(data))
    assert b"".join(line for _, _, line in found) == data
    assert [line for _, _, line in found] == data.splitlines(keepends=True)
    assert [number for number, _, _ in found] == list(range(1, len(found) + 1))
    assert all(data[offset:offset + len(line)] == line for _, offset, line in found)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_a_line_up_to_the_limit_is_read_and_a_longer_one_is_not(ending):
    box = b"0 0.5 0.5 0.2 0.2"
    at_limit = box + b" " * (LIMIT - len(box))
    ((_, _, line),) = _text.lines(at_limit + ending)
    assert line == at_limit + ending
    ((number, _, line),) = _text.lines(at_limit + b" " + ending)
    assert (number, line) == (1, None)


def test_yolo_rejects_a_line_over_1_mib_naming_it_and_reads_the_lines_after_it():
    long_line = b"0 " + b"0.5 " * (LIMIT // 4)
    data = b"0 0.5 0.5 0.2 0.2\n" + long_line + b"\n1 0.5 0.5 0.2 0.2\n" + long_line  # the last without a line end
    (record,) = yolo.parse("labels/a.txt", data, CLASSES)  # the rejected lines travel with the image's record
    assert record.rejected_boxes == tuple(
        ("annotation_line_too_long", f"line {n} is longer than {LIMIT:,} bytes") for n in (2, 4)
    )
    assert [box.label for box in record.boxes] == ["cat", "dog"]


def test_yolo_bytes_that_are_not_utf8_still_reject_the_file_once():
    data = b"0 0.5 0.5 0.2 0.2\nx y z\n\xff 0.5 0.5 0.2 0.2\n"
    assert list(yolo.parse("labels/a.txt", data, CLASSES)) == [
        Rejection("labels/a.txt", "txt_malformed", "not UTF-8 text", ITEM_ANNOTATION)
    ]


def test_csv_rejects_a_line_over_1_mib_and_the_rows_after_it_keep_their_numbers():
    long_row = b"a.jpg,4,4,cat," + b"1" * LIMIT + b",2,3,4\r\n"
    data = HEADER + b"a.jpg,4,4,cat,1,2,3,4\n" + long_row + b"b.jpg,4,4,dog,1,2,3,4\nb.jpg,4,4,dog,x,2,3,4\n"
    items = list(csv_format.parse("a.csv", data))
    assert [item for item in items if isinstance(item, Rejection)] == [  # a line not read belongs to no image
        Rejection("a.csv", "annotation_line_too_long", f"line 3 is longer than {LIMIT:,} bytes", ITEM_BOX),
    ]
    assert [(r.key, len(r.boxes), r.rejected_boxes) for r in items if isinstance(r, ImageRecord)] == [
        ("a.jpg", 1, ()), ("b.jpg", 1, (("box_malformed", "row 5 (dog): xmin 'x' is not a number"),))]


def test_csv_not_utf8_names_the_byte_of_the_file():
    data = HEADER + b"a.jpg,4,4,cat,1,2,3,4\nb.jpg,4,4,ch\xe8vre,1,2,3,4\n"
    (item,) = csv_format.parse("a.csv", b"\xef\xbb\xbf" + data)
    offset = 3 + data.index(b"\xe8")  # the byte order mark counts
    assert item.detail == f"not UTF-8 text: invalid continuation byte at byte {offset}"


# --- memory ----------------------------------------------------------------------------------------------

_PEAK = textwrap.dedent("""
    import resource, sys
    from transforms.formats import FORMATS, ParseContext, parse_annotation_file
    from transforms.beam.read import read_file
    fmt, path = FORMATS[sys.argv[1]], sys.argv[2]
    data = read_file(path)  # as the parse step reads it: the file's bytes, once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    items = list(parse_annotation_file(fmt, path, data, ParseContext(classes=("cat",))))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reasons = {getattr(item, "reason", "record") for item in items}
    reasons.update(reason for item in items for reason, _ in getattr(item, "rejected_boxes", ()))
    print(before, after, len(data), sorted(reasons))
""")


@pytest.mark.slow  # measures a process's peak memory on a 50 MB file
@pytest.mark.parametrize("fmt, header, line", [("yolo", b"", b"0 0.5 0.5 0.2 0.2 "), ("csv", HEADER, b"a.jpg,")])
def test_a_50_mb_single_line_file_costs_its_bytes_not_a_multiple_of_them(tmp_path, fmt, header, line):
    """Peak RSS of a child that holds the file's 50 MB and parses it: at most 64 MB above what it had then.

    64 MB is what one line could cost at most (a 1 MiB line split into ~0.5 M tokens, ~40 MB of objects)
    and some slack; the whole line split into tokens took 1.4 GB (YOLO) and 0.75 GB (CSV) more.
    """
    path = tmp_path / ("labels/a.txt" if fmt == "yolo" else "a.csv")
    path.parent.mkdir(exist_ok=True)
    with path.open("wb") as handle:
        handle.write(header)
        for _ in range(50):
            handle.write(line * ((1 << 20) // len(line)))
    result = subprocess.run([sys.executable, "-c", _PEAK, fmt, str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=True)
    before, after, size, reasons = result.stdout.split(" ", 3)
    assert int(size) > 50_000_000
    assert int(after) - int(before) < 64 * 1024 * 1024, f"{(int(after) - int(before)) / 2**20:.0f} MiB"
    assert "annotation_line_too_long" in reasons


@pytest.mark.slow  # measures a process's peak memory on a million bad lines
def test_a_file_of_bad_lines_holds_little_more_than_its_rejections():
    """2 MB of `x y z` lines: one rejection per line, and the parser's peak beyond those rejections (and the
    file's bytes) is a few pointers per rejection: no decoded copy of the text, no list of its lines."""
    data = b"x y z\n" * ((2 << 20) // 6)
    tracemalloc.start()
    try:
        items = list(parse_annotation_file(yolo.FORMAT, "/d/labels/a.txt", data, CLASSES))
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (record,) = items  # every rejected line travels with the file's one record
    rejections = len(record.rejected_boxes)
    assert rejections == data.count(b"\n")
    assert (peak - held) / rejections < 24, (peak - held) / rejections
