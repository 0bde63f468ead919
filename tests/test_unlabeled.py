"""An image that had boxes and lost every one to a box rejection is rejected as a whole
(`image_boxes_all_rejected`, its boxes counted with it), unless --keep_unlabeled writes it as a negative.
An image whose annotation has no box, or whose boxes --class_map dropped, stays a negative."""
from __future__ import annotations

import json
import shutil

import pytest

from tests import image_factory as make
from tests.conftest import read_examples, run_cli, shard_files
from transforms.boxes import normalize_boxes
from transforms.class_map import apply_class_map
from transforms.encode import BOXES_ALL_REJECTED, ImagePolicy, unlabeled_rejection
from transforms.model import ITEM_IMAGE, PIXELS, Box, ImageRecord, Rejection

IMAGE = "/data/images/a.jpg"
GOOD, INVERTED, NAN, OUTSIDE = Box("cat", 1, 1, 5, 5), Box("cat", 5, 1, 1, 5), Box("cat", 1, float("nan"), 5, 5), Box("cat", 20, 1, 30, 5)


def _decide(boxes, policy=ImagePolicy(), class_map=None):
    record, _ = apply_class_map(ImageRecord("a.jpg", "ann/a.xml", boxes=tuple(boxes)), class_map or {})
    return unlabeled_rejection(record, normalize_boxes(record.boxes, PIXELS, 10, 10, record.source), policy, IMAGE)


def test_an_image_whose_every_box_was_rejected_is_rejected_with_its_boxes_and_their_reasons():
    rejection = _decide([INVERTED, NAN, OUTSIDE, INVERTED])
    assert rejection == Rejection(
        IMAGE, BOXES_ALL_REJECTED,
        "all 4 boxes rejected: box_inverted 2, box_empty 1, box_not_finite 1 (first: box 0 (cat): min > max in "
        "(5, 1, 1, 5)); annotation ann/a.xml",
        ITEM_IMAGE, boxes=4,
    )


def test_one_good_box_keeps_the_image_and_no_box_at_all_is_a_negative():
    assert _decide([INVERTED, GOOD]) is None
    assert _decide([]) is None


def test_keep_unlabeled_keeps_it():
    assert _decide([INVERTED], ImagePolicy(keep_unlabeled=True)) is None


def test_boxes_the_class_map_dropped_are_no_rejections():
    assert _decide([Box("dog", 1, 1, 5, 5)], class_map={"dog": None}) is None  # the user asked: a negative
    # one dropped on purpose, the other rejected: the rejection carries only the box it lost
    rejection = _decide([Box("dog", 1, 1, 5, 5), INVERTED], class_map={"dog": None})
    assert (rejection.reason, rejection.boxes) == (BOXES_ALL_REJECTED, 1)
    assert rejection.detail.startswith("its only box rejected: box_inverted (box 0 (cat): min > max")


def test_an_embedded_image_is_not_named_twice():
    record = ImageRecord("a.jpg", IMAGE, boxes=(INVERTED,))
    rejection = unlabeled_rejection(record, normalize_boxes(record.boxes, PIXELS, 10, 10, IMAGE), ImagePolicy(), IMAGE)
    assert "annotation" not in rejection.detail


# --- end to end ------------------------------------------------------------------------------------

OBJECT = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"


def _voc(name, *boxes):
    objects = "".join(OBJECT.format(*box) for box in boxes)
    return f"<annotation><filename>{name}</filename><size><width>64</width><height>48</height></size>{objects}</annotation>"


ANNOTATIONS = {
    "inverted": [("cat", 40, 5, 10, 30)],  # its only box is inverted: the image is rejected
    "mixed": [("cat", 2, 3, 30, 40), ("cat", 10, 10, 10, 10)],  # one good, one with no area: written with one box
    "empty": [],  # no object at all: a negative
    "dropped": [("dog", 2, 3, 30, 40)],  # --class_map drops its only box: a negative, as the user asked
    "dropped_bad": [("dog", 2, 3, 30, 40), ("cat", 30, 3, 2, 40)],  # one dropped, the other inverted: rejected
    "good": [("cat", 1, 1, 63, 47)],
    "good2": [("dog", 1, 1, 20, 20), ("cat", 5, 5, 25, 25)],
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlabeled")
    (root / "ann").mkdir()
    (root / "img").mkdir()
    for number, (stem, boxes) in enumerate(sorted(ANNOTATIONS.items())):
        (root / "ann" / f"{stem}.xml").write_text(_voc(f"{stem}.jpg", *boxes))
        # a distinct gradient per image: no two share bytes
        (root / "img" / f"{stem}.jpg").write_bytes(make.encode(make.gradient(64, 48), "JPEG", quality=60 + number))
    (root / "class_map.yaml").write_text("dog: null\n")
    return root


def _convert(root, output, *flags):
    run_cli("convert", "--format", "voc", "--annotations", root / "ann", "--images", root / "img",
            "--output", output, "--splits", "train=1.0", "--class_map", root / "class_map.yaml", *flags, check_exit=0)
    rejected = [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]
    summary = json.loads((output / "summary.json").read_text())
    examples = {e["image/filename"][0].decode(): e for e in read_examples(shard_files(output))}
    verified = run_cli("verify", output, "--json", check_exit=0)
    return rejected, summary, examples, json.loads(verified.stdout)


def _check_counts(summary, rejected, verified):
    """summary.json adds up, and agrees with rejected.jsonl and with what verify reads back."""
    assert summary["images_read"] == summary["images_written"] + summary["images_rejected"] == len(ANNOTATIONS)
    boxes = summary["boxes"]
    assert boxes["read"] == sum(len(b) for b in ANNOTATIONS.values())
    assert boxes["read"] == boxes["written"] + boxes["rejected"] + boxes["on_rejected_items"] + boxes["dropped_by_class_map"]
    assert summary["images_rejected"] == sum(r["item"] == "image" for r in rejected)
    assert boxes["rejected"] == sum(r["item"] == "box" for r in rejected)
    assert boxes["on_rejected_items"] == sum(r["boxes"] for r in rejected)
    reasons = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    assert summary["rejections"] == reasons
    assert verified["clean"] and verified["records"] == summary["images_written"]
    assert verified["splits"]["train"] == {"records": summary["splits"]["train"]["images"], "boxes": boxes["written"]}
    assert summary["splits"]["train"]["boxes"] == boxes["written"]


def _boxes(example):
    return len(example["image/object/bbox/xmin"])


@pytest.mark.slow
def test_an_image_that_lost_every_box_is_rejected_and_the_counts_add_up(dataset, tmp_path):
    rejected, summary, examples, verified = _convert(dataset, tmp_path / "out")
    assert sorted((r["source"].rsplit("/", 1)[-1], r["reason"], r["item"], r["boxes"]) for r in rejected) == [
        ("dropped_bad.jpg", "image_boxes_all_rejected", "image", 1),  # the dropped dog is not its to carry
        ("inverted.jpg", "image_boxes_all_rejected", "image", 1),
        ("mixed.xml", "box_empty", "box", 0),
    ]
    inverted = next(r for r in rejected if r["source"].endswith("inverted.jpg"))
    assert inverted["detail"].startswith("its only box rejected: box_inverted (box 0 (cat): min > max")
    assert inverted["detail"].endswith("inverted.xml")
    assert sorted(examples) == ["dropped.jpg", "empty.jpg", "good.jpg", "good2.jpg", "mixed.jpg"]
    assert {name: _boxes(example) for name, example in examples.items()} == {
        "dropped.jpg": 0, "empty.jpg": 0, "good.jpg": 1, "good2.jpg": 1, "mixed.jpg": 1}
    assert (summary["images_written"], summary["images_rejected"]) == (5, 2)
    assert summary["boxes"] == {"read": 9, "written": 3, "clipped": 0, "rejected": 1, "on_rejected_items": 2,
                                "dropped_by_class_map": 3}
    assert summary["duplicates"]["groups"] == 0
    _check_counts(summary, rejected, verified)


@pytest.mark.slow
def test_keep_unlabeled_writes_it_as_a_negative_and_reports_its_boxes(dataset, tmp_path):
    rejected, summary, examples, verified = _convert(dataset, tmp_path / "out", "--keep_unlabeled")
    assert sorted((r["source"].rsplit("/", 1)[-1], r["reason"], r["item"]) for r in rejected) == [
        ("dropped_bad.xml", "box_inverted", "box"),
        ("inverted.xml", "box_inverted", "box"),
        ("mixed.xml", "box_empty", "box"),
    ]
    assert _boxes(examples["inverted.jpg"]) == 0 and _boxes(examples["dropped_bad.jpg"]) == 0
    assert len(examples) == len(ANNOTATIONS)
    assert summary["boxes"] == {"read": 9, "written": 3, "clipped": 0, "rejected": 3, "on_rejected_items": 0,
                                "dropped_by_class_map": 3}
    _check_counts(summary, rejected, verified)


@pytest.mark.slow
def test_an_incremental_run_ingests_it_once_its_annotation_is_fixed(dataset, tmp_path):
    """Like any rejected image, it is not in the index: the next run reads it as new, not as changed."""
    source, output = tmp_path / "src", tmp_path / "out"
    shutil.copytree(dataset, source)
    rejected, summary, examples, _ = _convert(source, output, "--incremental", "--name", "nightly")
    assert "inverted.jpg" not in examples and summary["rejections"]["image_boxes_all_rejected"] == 2
    (source / "ann" / "inverted.xml").write_text(_voc("inverted.jpg", ("cat", 10, 5, 40, 30)))
    rejected, summary, examples, _ = _convert(source, output, "--incremental", "--name", "nightly")
    assert [(r["source"].rsplit("/", 1)[-1], r["reason"]) for r in rejected] == [
        ("dropped_bad.jpg", "image_boxes_all_rejected")]  # read again, as rejected images are; mixed.jpg is not
    assert _boxes(examples["inverted.jpg"]) == 1
    assert sorted(examples) == ["dropped.jpg", "empty.jpg", "good.jpg", "good2.jpg", "inverted.jpg", "mixed.jpg"]
