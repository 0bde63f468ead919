"""transforms/boxes.py: validating, clipping and normalizing boxes (docs/design.md sections 3 and 5)."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.boxes import NormalizedBox, describe_rejected, normalize_boxes
from transforms.model import ITEM_BOX, PIXELS, RELATIVE, Box, Rejection

SOURCE = "ann/img.xml"


def _corners(normalized):
    return (normalized.xmin, normalized.ymin, normalized.xmax, normalized.ymax)


def test_box_inside_image_is_divided_by_size_without_vocs_one_pixel_shift():
    box = Box("raccoon", 81, 88, 522, 408)
    outcome = normalize_boxes([box], PIXELS, 650, 417, SOURCE)
    assert outcome.rejected == []
    assert outcome.clipped == 0
    assert outcome.kept == [NormalizedBox(box, 81 / 650, 88 / 417, 522 / 650, 408 / 417)]


def test_box_touching_every_edge_is_not_counted_as_clipped():
    outcome = normalize_boxes([Box("a", 0, 0, 100, 50)], PIXELS, 100, 50, SOURCE)
    assert [_corners(b) for b in outcome.kept] == [(0.0, 0.0, 1.0, 1.0)]
    assert outcome.clipped == 0


def test_partly_outside_box_is_clipped_and_counted_once_per_box():
    boxes = [
        Box("left", -10, 5, 20, 15),  # x clipped
        Box("both", -5, -5, 150, 80),  # x and y clipped: still one clipped box
        Box("inside", 10, 10, 20, 20),
    ]
    outcome = normalize_boxes(boxes, PIXELS, 100, 50, SOURCE)
    assert outcome.rejected == []
    assert outcome.clipped == 2
    assert [_corners(b) for b in outcome.kept] == [
        (0.0, 0.1, 0.2, 0.3),
        (0.0, 0.0, 1.0, 1.0),
        (0.1, 0.2, 0.2, 0.4),
    ]
    assert [b.box for b in outcome.kept] == boxes


@pytest.mark.parametrize(
    "corners",
    [
        (float("nan"), 0, 10, 10),
        (0, float("nan"), 10, 10),
        (0, 0, float("inf"), 10),
        (0, 0, 10, float("-inf")),
        (float("-inf"), 0, 10, 10),
    ],
)
def test_non_finite_box_is_rejected_as_box_not_finite(corners):
    outcome = normalize_boxes([Box("cat", *corners)], PIXELS, 100, 100, SOURCE)
    assert outcome.kept == []
    assert outcome.clipped == 0
    assert [(r.source, r.reason, r.item) for r in outcome.rejected] == [(SOURCE, "box_not_finite", ITEM_BOX)]
    assert "box 0 (cat)" in outcome.rejected[0].detail


@pytest.mark.parametrize("corners", [(50, 0, 10, 10), (0, 50, 10, 10), (50, 50, 10, 10)])
def test_min_greater_than_max_is_rejected_as_box_inverted(corners):
    outcome = normalize_boxes([Box("cat", *corners)], PIXELS, 100, 100, SOURCE)
    assert outcome.kept == []
    assert [r.reason for r in outcome.rejected] == ["box_inverted"]
    assert outcome.rejected[0].item == ITEM_BOX


def test_inverted_box_outside_the_image_is_inverted_not_empty():
    # Validation comes before clipping: clipping would otherwise hide the inversion.
    outcome = normalize_boxes([Box("cat", 300, 0, 200, 10)], PIXELS, 100, 100, SOURCE)
    assert [r.reason for r in outcome.rejected] == ["box_inverted"]


@pytest.mark.parametrize(
    "corners",
    [
        (10, 10, 10, 20),  # zero width
        (10, 10, 20, 10),  # zero height
        (150, 10, 200, 20),  # wholly right of the image
        (-50, 10, -1, 20),  # wholly left
        (10, 60, 20, 90),  # wholly below a 50-pixel-high image
        (100, 10, 120, 20),  # starts on the right edge: nothing left after clipping
    ],
)
def test_box_with_no_area_after_clipping_is_rejected_as_box_empty(corners):
    outcome = normalize_boxes([Box("cat", *corners)], PIXELS, 100, 50, SOURCE)
    assert outcome.kept == []
    assert outcome.clipped == 0  # a rejected box is not also counted as clipped
    assert [r.reason for r in outcome.rejected] == ["box_empty"]
    assert "100x50" in outcome.rejected[0].detail


@pytest.mark.parametrize("corners", [(1, 1, 5, 5), (float("nan"), 0, 1, 1)])
def test_empty_label_is_rejected_as_box_no_label(corners):
    outcome = normalize_boxes([Box("", *corners)], PIXELS, 10, 10, SOURCE)
    assert outcome.kept == []
    assert [(r.reason, r.item) for r in outcome.rejected] == [("box_no_label", ITEM_BOX)]
    assert "no label" in outcome.rejected[0].detail


def test_rejections_name_the_box_index_and_keep_the_other_boxes():
    boxes = [
        Box("good", 0, 0, 5, 5),
        Box("nan", float("nan"), 0, 5, 5),
        Box("good2", 5, 5, 10, 10),
        Box("flat", 1, 1, 1, 5),
    ]
    outcome = normalize_boxes(boxes, PIXELS, 10, 10, SOURCE)
    assert [b.box.label for b in outcome.kept] == ["good", "good2"]
    assert [(r.reason, r.detail.split(":")[0]) for r in outcome.rejected] == [
        ("box_not_finite", "box 1 (nan)"),
        ("box_empty", "box 3 (flat)"),
    ]
    assert all(isinstance(r, Rejection) and r.source == SOURCE for r in outcome.rejected)


def test_relative_units_are_not_divided_again_but_are_clipped_to_unit_square():
    boxes = [Box("a", 0.1, 0.2, 0.5, 0.75), Box("b", -0.25, 0.5, 1.5, 1.0)]
    outcome = normalize_boxes(boxes, RELATIVE, 640, 480, SOURCE)
    assert [_corners(b) for b in outcome.kept] == [(0.1, 0.2, 0.5, 0.75), (0.0, 0.5, 1.0, 1.0)]
    assert outcome.clipped == 1
    assert outcome.rejected == []


def test_relative_box_outside_unit_square_is_empty():
    outcome = normalize_boxes([Box("a", 1.0, 0.1, 1.2, 0.2)], RELATIVE, 640, 480, SOURCE)
    assert [r.reason for r in outcome.rejected] == ["box_empty"]
    assert "640x480" in outcome.rejected[0].detail


def test_no_boxes_is_a_negative_example():
    outcome = normalize_boxes([], PIXELS, 10, 10, SOURCE)
    assert (outcome.kept, outcome.rejected, outcome.clipped) == ([], [], 0)


def test_rejected_boxes_are_described_by_reason_most_frequent_first_then_the_first_box():
    boxes = [Box("a", 5, 1, 1, 4), Box("", 1, 1, 4, 4), Box("b", 20, 1, 30, 4), Box("c", 6, 1, 2, 4)]
    outcome = normalize_boxes(boxes, PIXELS, 10, 10, SOURCE)
    assert describe_rejected((rejection.reason, rejection.detail) for rejection in outcome.rejected) == (
        "all 4 boxes rejected: box_inverted 2, box_empty 1, box_no_label 1 (first: box 0 (a): min > max in (5, 1, 1, 4))"
    )
    (only,) = normalize_boxes([Box("a", 1, float("nan"), 2, 2)], PIXELS, 10, 10, SOURCE).rejected
    assert describe_rejected([(only.reason, only.detail)]) == "its only box rejected: box_not_finite (box 0 (a): coordinates (1, nan, 2, 2))"


def test_flags_of_the_source_box_are_kept():
    box = Box("a", 1, 1, 4, 4, difficult=True, truncated=False, is_crowd=True, area=9.0)
    (kept,) = normalize_boxes([box], PIXELS, 10, 10, SOURCE).kept
    assert kept.box is box


@pytest.mark.parametrize(
    "xmin, xmax, width",
    [(255.61581172674693, math.nextafter(255.61581172674693, 650.0), 650), (0.0, 5e-324, 650)],
)
def test_kept_box_never_has_zero_normalized_width(xmin, xmax, width):
    outcome = normalize_boxes([Box("a", xmin, 0, xmax, 1)], PIXELS, width, 1, SOURCE)
    assert all(b.xmin < b.xmax for b in outcome.kept)


# --- properties -------------------------------------------------------------------------------
# Coordinates are quarter pixels (or 1/1024ths for relative boxes) plus the non-finite values:
# sub-ulp boxes have their own test above.

_SPECIAL = st.sampled_from([float("nan"), float("inf"), float("-inf")])
_LABEL = st.sampled_from(["", "cat", "dog"])


@st.composite
def _image_and_boxes(draw):
    units = draw(st.sampled_from([PIXELS, RELATIVE]))
    width = draw(st.integers(1, 5000))
    height = draw(st.integers(1, 5000))
    if units == PIXELS:
        coordinate = st.integers(-2 * 4 * 5000, 2 * 4 * 5000).map(lambda q: q / 4)
    else:
        coordinate = st.integers(-1024, 2 * 1024).map(lambda q: q / 1024)
    coordinate = st.one_of(coordinate, coordinate, coordinate, _SPECIAL)
    box = st.builds(Box, _LABEL, coordinate, coordinate, coordinate, coordinate)
    boxes = draw(st.lists(box, max_size=12))
    return units, width, height, boxes


@given(_image_and_boxes())
def test_every_kept_box_is_a_proper_box_inside_the_unit_square(case):
    units, width, height, boxes = case
    outcome = normalize_boxes(boxes, units, width, height, SOURCE)
    for kept in outcome.kept:
        assert 0.0 <= kept.xmin < kept.xmax <= 1.0
        assert 0.0 <= kept.ymin < kept.ymax <= 1.0
        assert kept.box.label


@given(_image_and_boxes())
def test_every_box_is_either_kept_or_rejected(case):
    units, width, height, boxes = case
    outcome = normalize_boxes(boxes, units, width, height, SOURCE)
    assert len(outcome.kept) + len(outcome.rejected) == len(boxes)
    assert 0 <= outcome.clipped <= len(outcome.kept)
    identities = [id(b) for b in boxes]
    positions = [identities.index(id(k.box)) for k in outcome.kept]
    assert positions == sorted(set(positions))  # kept in input order, each source box once
    assert {r.reason for r in outcome.rejected} <= {"box_no_label", "box_not_finite", "box_inverted", "box_empty"}
    assert all(r.item == ITEM_BOX and r.source == SOURCE for r in outcome.rejected)
