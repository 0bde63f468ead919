"""TensorFlow Object Detection CSV: `filename,width,height,class,xmin,ymin,xmax,ymax`, one row per box.

The layout of the TF OD API tutorials' `xml_to_csv.py` and of Roboflow's "Tensorflow Object Detection
CSV" export. Columns are found by header name (any order, any case; extra columns are ignored), rows
are grouped by file name into one record per image, in the order the images first appear. Files are
UTF-8 (Excel's byte order mark allowed); a line longer than 1 MiB is rejected unread
(`annotation_line_too_long`) and the rows after it are read. A row rejected for its numbers travels
with its image's record (`ImageRecord.rejected_boxes`); one without a file name, or a line too long to
read, belongs to no image and is rejected on its own.
"""
from __future__ import annotations

import csv
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from transforms import paths
from transforms.formats import NO_CONTEXT, AnnotationFormat, ParseContext, Parsed, _text
from transforms.model import ITEM_ANNOTATION, ITEM_BOX, Box, ImageRecord, Rejection, carried

REQUIRED = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _columns(header: Sequence[str]) -> Dict[str, int]:
    """Column index by lower-cased name; the first of two same-named columns wins."""
    columns: Dict[str, int] = {}
    for index, name in enumerate(header):
        columns.setdefault(name.strip().lower(), index)
    return columns


def _cell(row: Sequence[str], columns: Dict[str, int], name: str) -> Optional[str]:
    index = columns.get(name)
    return row[index].strip() if index is not None and index < len(row) else None


def _number(row: Sequence[str], columns: Dict[str, int], name: str) -> float:
    return _text.number(_cell(row, columns, name), name)



def _blank(row: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in row)  # [] or a spreadsheet's trailing ",,,,,,,"


class _Image:
    def __init__(self, filename: str):
        self.filename = filename
        self.boxes: List[Box] = []
        self.rejected: List[Rejection] = []  # its rows that were rejected: they travel with its record
        self.size: Optional[Tuple[int, int]] = None


def sniff(path: str, head: bytes) -> bool:
    """A .csv file whose header line names filename, class, xmin, ymin, xmax and ymax columns."""
    if not path.lower().endswith(".csv"):
        return False
    lines = head.decode("utf-8-sig", errors="replace").splitlines()
    header = next(csv.reader(lines[:1]), []) if lines else []
    return set(REQUIRED) <= set(_columns(header))


def parse(source: str, data: bytes, context: ParseContext = NO_CONTEXT) -> Iterator[Parsed]:
    images: Dict[str, _Image] = {}  # by normalized path; dicts keep first-appearance order
    rejections: List[Rejection] = []
    columns: Optional[Dict[str, int]] = None
    missing: Tuple[str, ...] = ()
    header: List[str] = []
    rows_without_columns = 0
    try:
        for number, row in enumerate(csv.reader(_decoded_lines(source, data, rejections)), start=1):
            if _blank(row):
                continue
            if columns is None:
                header, columns = row, _columns(row)
                missing = tuple(name for name in REQUIRED if name not in columns)
                continue
            if missing:
                rows_without_columns += 1
                continue
            _read_row(source, number, row, columns, images, rejections)
    except UnicodeDecodeError as error:
        yield Rejection(source, "csv_malformed", f"not UTF-8 text: {error.reason} at byte {error.start}", ITEM_ANNOTATION)
        return
    except csv.Error as error:  # e.g. a field beyond the csv module's size limit
        yield Rejection(source, "csv_malformed", str(error).splitlines()[0][:200], ITEM_ANNOTATION)
        return
    if columns is None:
        yield Rejection(source, "csv_invalid", "no header row", ITEM_ANNOTATION)
        return
    if missing:
        shown = ",".join(header)[:200]
        yield Rejection(
            source,
            "csv_invalid",
            f"no {', '.join(missing)} column(s) in the header {shown!r}",
            ITEM_ANNOTATION,
            rows_without_columns,
        )
        return
    yield from rejections
    for image in images.values():
        yield ImageRecord(key=image.filename, source=source, boxes=tuple(image.boxes), annotated_size=image.size,
                          rejected_boxes=carried(image.rejected))


def _decoded_lines(source: str, data: bytes, rejections: List[Rejection]) -> Iterator[str]:
    """The lines of `data` as text, endings kept (the csv module itself handles CRLF, CR and line breaks
    inside quoted fields); a line too long to read is rejected and stands as a blank line, so the rows
    after it keep their numbers. UnicodeDecodeError (its `start` a byte of the file) for bytes that are
    not UTF-8."""
    for number, offset, line in _text.lines(data):
        if line is None:
            rejections.append(_text.line_too_long(source, number))
            yield "\n"
            continue
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UnicodeDecodeError("utf-8", data, offset + error.start, offset + error.end, error.reason) from None


def _read_row(
    source: str,
    number: int,
    row: Sequence[str],
    columns: Dict[str, int],
    images: Dict[str, _Image],
    rejections: List[Rejection],
) -> None:
    filename = _cell(row, columns, "filename") or ""
    label = _cell(row, columns, "class") or ""
    if not filename:
        rejections.append(Rejection(source, "box_malformed", f"row {number} ({label}): filename is missing", ITEM_BOX))
        return
    # "a.jpg" and "./a.jpg" are one image; the path check itself happens in parse_annotation_file.
    image = images.setdefault(paths.image_key(filename) or filename, _Image(filename))
    if image.size is None:
        width, height = _text.positive_int(_cell(row, columns, "width")), _text.positive_int(_cell(row, columns, "height"))
        image.size = (width, height) if width and height else None
    try:
        corners = [_number(row, columns, corner) for corner in CORNERS]
    except ValueError as error:
        # The image keeps its record: a rejected box must not turn the image into an orphan.
        image.rejected.append(Rejection(source, "box_malformed", f"row {number} ({label}): {error}", ITEM_BOX))
        return
    image.boxes.append(Box(label, *corners))


FORMAT = AnnotationFormat(
    name="csv",
    summary="TensorFlow Object Detection CSV (filename,width,height,class,xmin,ymin,xmax,ymax), one row per box",
    example="--format csv --annotations data/train_labels.csv --images data/images",
    folder_patterns=("*.csv",),
    parse=parse,
    sniff=sniff,
)
