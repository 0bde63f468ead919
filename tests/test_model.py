"""transforms/model.py: what an image record carries, and the fingerprint incremental runs compare."""
from __future__ import annotations

import dataclasses

from transforms.incremental.manifest import fingerprint
from transforms.model import (
    ITEM_BOX, RELATIVE, Box, ImageRecord, Rejection, box_rejections, boxes_given, carried, pack_records, unpack_records,
)

UNKNOWN = Rejection("labels/a.txt", "box_unknown_class", "line 1: class index 5 is not in the 1 --classes", ITEM_BOX)
RECORD = ImageRecord(
    "images/a.jpg", "labels/a.txt", source_id="7", units=RELATIVE, annotated_size=(64, 48), source_split="train",
    boxes=(Box("cat", 0.25, 0.25, 0.75, 0.5), Box("dog", 1, 2, 3, 4, difficult=True, area=2.0)),
)


def test_a_records_box_rejections_travel_as_reason_and_detail_and_come_back_whole():
    record = dataclasses.replace(RECORD, rejected_boxes=carried([UNKNOWN, UNKNOWN]))
    assert record.rejected_boxes == ((UNKNOWN.reason, UNKNOWN.detail),) * 2
    assert list(box_rejections(record)) == [UNKNOWN, UNKNOWN]
    assert boxes_given(record) == 4
    (unpacked,) = unpack_records(pack_records([record]))
    assert unpacked == record and list(box_rejections(unpacked)) == [UNKNOWN, UNKNOWN]


def test_the_fingerprint_is_what_it_was_and_ignores_the_boxes_a_parser_rejected():
    """Published indexes hold these values: a record's fingerprint must not move when the code learns to carry
    more, or every image of a published dataset would look changed. Boxes a parser rejected are not written,
    so they do not enter it: an incremental run sees the image as changed when what would be written changes."""
    assert fingerprint(RECORD) == "b49c787c438ea5a9ac372a44630abc86"
    assert fingerprint(ImageRecord("a.jpg", "a.xml")) == "91278414d2da33a30ceb2fc32ed71007"
    assert fingerprint(dataclasses.replace(RECORD, rejected_boxes=carried([UNKNOWN]))) == fingerprint(RECORD)
