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
from transforms.records.encode import BOXES_ALL_REJECTED, ImagePolicy, unlabeled_rejection
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
                                "dropped_by_class_map": 3, "dropped_difficult": 0}
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
                                "dropped_by_class_map": 3, "dropped_difficult": 0}
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


# --- boxes rejected while the annotation is parsed count as the image's own ------------------------------
# One run over four sources: a VOC box that is not numbers, a YOLO class index --classes does not declare,
# a COCO category the file does not declare, a CVAT shape that outlines no box. Each (source, reason, item,
# boxes) below is a line of rejected.jsonl.

def _image_bytes(number):
    return make.encode(make.gradient(64, 48), "JPEG", quality=40 + number)


MIXED_VOC = {  # stem: boxes, whether its image file exists
    "v_good": ([("cat", 1, 1, 30, 30)], True),
    "v_mixed": ([("cat", "ten", 1, 30, 30), ("cat", 2, 2, 20, 20)], True),  # written with one box
    "v_allbad": ([("cat", "ten", 1, 30, 30)], True),  # its only box is not numbers
    "v_both": ([("cat", "ten", 1, 30, 30), ("cat", 40, 5, 10, 30)], True),  # one not numbers, one inverted
    "v_missing": ([("cat", "ten", 1, 30, 30), ("cat", 2, 2, 20, 20)], False),  # no image file
    "v_empty": ([], True),  # a negative
    "v_outside": ([("cat", "ten", 1, 30, 30), ("cat", 2, 2, 20, 20)], False),  # names ../v_outside.jpg
    "v_zdup": ([("cat", 2, 2, 20, 20), ("cat", "ten", 1, 30, 30)], True),  # the bytes of v_mixed.jpg
}
MIXED_YOLO = {  # stem: label lines (None: no label file, a negative), whether its image file exists
    "y_unknown": (["5 0.5 0.5 0.2 0.2"], True),  # the wrong --classes: its only box is rejected
    "y_mixed": (["0 0.5 0.5 0.2 0.2", "7 0.5 0.5 0.2 0.2"], True),
    "y_missing": (["3 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2"], False),
    "y_bad_line": (["x y z"], True),
    "y_negative": (None, True),
    "y_zcopy": (["0 0.5 0.5 0.2 0.2"], True),  # the bytes of y_unknown.jpg
}
MIXED_COCO = {
    "images": [{"id": 1, "file_name": "c_unknown.jpg"}, {"id": 2, "file_name": "c_ok.jpg"},
               {"id": 3, "file_name": "c_missing.jpg"}, {"id": 4, "file_name": "c_shared_a.jpg"},
               {"id": 4, "file_name": "c_shared_b.jpg"}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 99, "bbox": [1, 1, 20, 20]},  # its only annotation
        {"id": 11, "image_id": 2, "category_id": 1, "bbox": [1, 1, 20, 20]},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": "x"},
        {"id": 13, "image_id": 3, "category_id": 99, "bbox": [1, 1, 20, 20]},  # and its image file is missing
        {"id": 14, "image_id": 4, "category_id": 1, "bbox": [1, 1, 20, 20]},  # id 4 names two images
        {"id": 15, "image_id": 4, "category_id": 99, "bbox": [1, 1, 20, 20]},
        {"id": 16, "image_id": 404, "category_id": 1, "bbox": [1, 1, 20, 20]},  # no such image
    ],
    "categories": [{"id": 1, "name": "cat"}],
}
MIXED_CVAT = """<annotations><version>1.1</version>
<image id="0" name="k_poly.jpg" width="64" height="48"><polyline label="cat" points="1,1;5,5"/></image>
<image id="1" name="k_ok.jpg" width="64" height="48"><box label="cat" xtl="1" ytl="1" xbr="20" ybr="20"/><points label="cat" points="3,3"/></image>
</annotations>"""
MIXED_REJECTED = [  # without --keep_unlabeled
    ("annotations.xml", "shape_unsupported", "box", 0),  # k_ok.jpg keeps its box
    ("c_unknown.jpg", "image_boxes_all_rejected", "image", 1),
    ("instances.json", "box_malformed", "box", 0),  # c_ok.jpg keeps its box
    ("instances.json", "box_unknown_class", "box", 0),  # c_missing.jpg's, beside its image_missing
    ("instances.json", "box_unknown_class", "box", 0),  # of id 4, whose images are rejected by the parser
    ("instances.json", "box_unknown_image", "box", 0),
    ("instances.json", "coco_duplicate_id", "annotation", 0),
    ("instances.json", "coco_duplicate_id", "annotation", 1),
    ("instances.json", "image_missing", "image", 0),  # c_missing.jpg: no box it carries
    ("k_poly.jpg", "image_boxes_all_rejected", "image", 1),
    ("v_allbad.jpg", "image_boxes_all_rejected", "image", 1),
    ("v_both.jpg", "image_boxes_all_rejected", "image", 2),
    ("v_missing.xml", "box_malformed", "box", 0),
    ("v_missing.xml", "image_missing", "image", 1),
    ("v_mixed.xml", "box_malformed", "box", 0),
    ("v_outside.xml", "box_malformed", "box", 0),
    ("v_outside.xml", "path_outside_images", "image", 1),
    ("v_zdup.xml", "box_malformed", "box", 0),
    ("y_bad_line.jpg", "image_boxes_all_rejected", "image", 1),
    ("y_missing.txt", "box_unknown_class", "box", 0),
    ("y_missing.txt", "image_missing", "image", 1),
    ("y_mixed.txt", "box_unknown_class", "box", 0),
    ("y_unknown.jpg", "image_boxes_all_rejected", "image", 1),
]
MIXED_WRITTEN = {"v_good.jpg": 1, "v_mixed.jpg": 1, "v_empty.jpg": 0, "v_zdup.jpg": 1, "y_mixed.jpg": 1,
                 "y_negative.jpg": 0, "y_zcopy.jpg": 1, "c_ok.jpg": 1, "k_ok.jpg": 1}
MIXED_BOXES_READ = 12 + 7 + 7 + 3  # VOC, YOLO, COCO, CVAT
MIXED_BOX_REJECTIONS, MIXED_ON_REJECTED = 11, 11  # lines of item box; boxes carried by rejected items


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    folders = {name: root / name for name in ("voc_ann", "voc_img", "labels", "yolo_img", "coco_img", "cvat_img")}
    for folder in folders.values():
        folder.mkdir()
    number = 0
    for stem, (boxes, exists) in MIXED_VOC.items():
        name = f"../{stem}.jpg" if stem == "v_outside" else f"{stem}.jpg"
        (folders["voc_ann"] / f"{stem}.xml").write_text(_voc(name, *boxes))
        if exists and stem != "v_zdup":
            number += 1
            (folders["voc_img"] / f"{stem}.jpg").write_bytes(_image_bytes(number))
    for stem, (lines, exists) in MIXED_YOLO.items():
        if lines is not None:
            (folders["labels"] / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        if exists and stem != "y_zcopy":
            number += 1
            (folders["yolo_img"] / f"{stem}.jpg").write_bytes(_image_bytes(number))
    shutil.copy(folders["yolo_img"] / "y_unknown.jpg", folders["yolo_img"] / "y_zcopy.jpg")
    shutil.copy(folders["voc_img"] / "v_mixed.jpg", folders["voc_img"] / "v_zdup.jpg")
    (root / "classes.txt").write_text("cat\n")
    (root / "instances.json").write_text(json.dumps(MIXED_COCO))
    for stem in ("c_unknown", "c_ok"):
        number += 1
        (folders["coco_img"] / f"{stem}.jpg").write_bytes(_image_bytes(number))
    (root / "annotations.xml").write_text(MIXED_CVAT)
    for stem in ("k_poly", "k_ok"):
        number += 1
        (folders["cvat_img"] / f"{stem}.jpg").write_bytes(_image_bytes(number))
    return root


def _convert_mixed(root, output, *flags):
    run_cli("convert", "--annotations", f"voc:{root / 'voc_ann'}", "--images", root / "voc_img",
            "--annotations", f"yolo:{root / 'labels'}", "--images", root / "yolo_img", "--classes", root / "classes.txt",
            "--annotations", f"coco:{root / 'instances.json'}", "--images", root / "coco_img",
            "--annotations", f"cvat:{root / 'annotations.xml'}", "--images", root / "cvat_img",
            "--splits", "train=1.0", "--max_rejected", "1", *flags, check_exit=0)
    rejected = [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]
    summary = json.loads((output / "summary.json").read_text())
    examples = {e["image/filename"][0].decode(): _boxes(e) for e in read_examples(shard_files(output))}
    return rejected, summary, examples


def _lines(rejected):
    return sorted((r["source"].rsplit("/", 1)[-1], r["reason"], r["item"], r["boxes"]) for r in rejected)


def _check_mixed_counts(summary, rejected):
    """Every box counted once, wherever it was rejected: the identity, and rejected.jsonl agreeing with it."""
    boxes = summary["boxes"]
    assert boxes["read"] == MIXED_BOXES_READ
    assert boxes["read"] == boxes["written"] + boxes["rejected"] + boxes["on_rejected_items"] + boxes["dropped_by_class_map"]
    assert boxes["rejected"] == sum(r["item"] == "box" for r in rejected)
    assert boxes["on_rejected_items"] == sum(r["boxes"] for r in rejected)
    assert summary["images_read"] == summary["images_written"] + summary["images_rejected"]
    assert summary["images_rejected"] == sum(r["item"] == "image" for r in rejected)


@pytest.mark.slow
@pytest.mark.parametrize("drop_duplicates", [False, True], ids=["plain", "drop_duplicates"])
def test_boxes_a_parser_rejected_count_as_the_images_own_in_every_format(mixed, tmp_path, drop_duplicates):
    """With --drop_duplicates, y_zcopy.jpg (the bytes of y_unknown.jpg, which loses its only box) is kept: an
    image that will be rejected takes no part in the duplicate search. v_zdup.jpg (the bytes of v_mixed.jpg)
    is dropped with the box it carries, and its box its parser rejected is still reported, once."""
    output = tmp_path / "out"
    rejected, summary, examples = _convert_mixed(mixed, output, "--output", output,
                                                 *(["--drop_duplicates"] if drop_duplicates else []))
    dropped = [("v_zdup.xml", "image_duplicate", "image", 1)] if drop_duplicates else []
    assert _lines(rejected) == sorted(MIXED_REJECTED + dropped)
    by_source = {r["source"].rsplit("/", 1)[-1]: r["detail"] for r in rejected if r["reason"] == "image_boxes_all_rejected"}
    assert by_source["y_unknown.jpg"].startswith("its only box rejected: box_unknown_class (line 1: class index 5 ")
    assert by_source["c_unknown.jpg"].startswith("its only box rejected: box_unknown_class (annotation 10: category_id 99")
    assert by_source["v_both.jpg"].startswith("all 2 boxes rejected: box_inverted 1, box_malformed 1 (first: object 0")
    assert by_source["k_poly.jpg"].startswith("its only box rejected: shape_unsupported")
    written = {name: boxes for name, boxes in MIXED_WRITTEN.items() if not (drop_duplicates and name == "v_zdup.jpg")}
    assert examples == written
    assert summary["boxes"] == {"read": MIXED_BOXES_READ, "written": sum(written.values()), "clipped": 0,
                                "rejected": MIXED_BOX_REJECTIONS, "on_rejected_items": MIXED_ON_REJECTED + len(dropped),
                                "dropped_by_class_map": 0, "dropped_difficult": 0}
    assert (summary["images_written"], summary["images_rejected"]) == (len(written), 10 + len(dropped))
    assert summary["duplicates"]["dropped"] == len(dropped)
    _check_mixed_counts(summary, rejected)


@pytest.mark.slow
def test_keep_unlabeled_writes_them_as_negatives_with_each_box_rejected_once(mixed, tmp_path):
    output = tmp_path / "out"
    rejected, summary, examples = _convert_mixed(mixed, output, "--output", output, "--keep_unlabeled")
    unlabeled = {"c_unknown.jpg": 1, "k_poly.jpg": 1, "v_allbad.jpg": 1, "v_both.jpg": 2, "y_bad_line.jpg": 1,
                 "y_unknown.jpg": 1}
    assert examples == {**MIXED_WRITTEN, **{name: 0 for name in unlabeled}}
    assert not any(r["reason"] == "image_boxes_all_rejected" for r in rejected)
    assert summary["boxes"]["rejected"] == MIXED_BOX_REJECTIONS + sum(unlabeled.values())
    assert summary["boxes"]["on_rejected_items"] == MIXED_ON_REJECTED - sum(unlabeled.values())
    _check_mixed_counts(summary, rejected)


@pytest.mark.slow
def test_an_incremental_run_reports_the_box_rejections_of_unchanged_images_again(mixed, tmp_path):
    """An image ingested before is not read again, but the boxes its parser rejected are reported every run, as
    before (its writer's box checks are not: they need the image); the annotation fingerprint ignores them, so
    nothing looks changed. A run that writes nothing new publishes nothing: its counts are in its run log."""
    output = tmp_path / "out"
    first, summary, _ = _convert_mixed(mixed, output, "--output", output, "--incremental", "--name", "nightly")
    assert _lines(first) == sorted(MIXED_REJECTED)
    assert summary["incremental"]["new"] == len(MIXED_WRITTEN) + 6  # 6 more reach a writer and are rejected there
    _convert_mixed(mixed, output, "--output", output, "--incremental", "--name", "nightly")
    first_log, second_log = sorted((output / "runs").glob("*.json"))  # named by start time
    again = json.loads(second_log.read_text())
    assert again["incremental"] | {"class_boxes_written": None} == {
        "run": 1, "published": False, "new": 6, "changed": 0, "deleted": 0, "unchanged": len(MIXED_WRITTEN), "removed": 0,
        "update_changed": False, "class_boxes_written": None, "dataset_images": len(MIXED_WRITTEN), "live_shards": 1}
    assert again["rejections"] == summary["rejections"]  # the same lines, the written images' box rejections included
    assert again["boxes"]["rejected"] == MIXED_BOX_REJECTIONS
