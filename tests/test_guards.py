"""When a finished run refuses to publish (transforms/guards.py): pure rules, no Beam."""
from __future__ import annotations

from transforms.guards import Limits, main_reason, refusal


def summary(read=100, written=100, rejected=0, boxes_read=150, boxes_written=150, dropped=0, rejections=None,
            annotation_files=100):
    return {
        "images_read": read, "images_written": written, "images_rejected": rejected,
        "boxes": {"read": boxes_read, "written": boxes_written, "dropped_by_class_map": dropped},
        "rejections": rejections or {}, "annotation_files_read": annotation_files,
    }


def test_a_good_run_publishes():
    assert refusal(summary(), Limits()) is None
    half = summary(written=50, rejected=50, rejections={"image_missing": 50})
    assert refusal(half, Limits()) is None  # exactly the limit is still published


def test_nothing_written_is_refused_with_the_main_reason():
    line = refusal(summary(written=0, rejected=100, boxes_written=0,
                           rejections={"image_missing": 70, "image_truncated": 30}), Limits())
    assert line == "no image was written (100 read, 100 rejected; main reason: image_missing 70)"


def test_no_box_is_refused_whether_the_boxes_were_lost_or_never_there():
    lost = refusal(summary(boxes_written=0, rejections={"box_unknown_class": 150}), Limits())
    assert lost.startswith("no box was written, the annotations have 150 (100 images would be negatives")
    assert lost.endswith("main reason: box_unknown_class 150)")
    unlabeled = refusal(summary(boxes_read=0, boxes_written=0, annotation_files=0), Limits())
    assert unlabeled.startswith("no box was written, 0 annotation files were read")
    # boxes the user dropped with --class_map are not what the sources have
    assert "the annotations have 10" in refusal(summary(boxes_read=20, dropped=10, boxes_written=0), Limits())


def test_mostly_rejected_counts_only_the_images_the_annotations_name():
    mostly = summary(read=100, written=30, rejected=70, rejections={"image_truncated": 70})
    assert refusal(mostly, Limits()) == (
        "70 of the 100 images the annotations name were rejected, more than --max_rejected 0.5 "
        "(main reason: image_truncated 70)")
    assert refusal(mostly, Limits(max_rejected=1)) is None
    assert refusal(mostly, Limits(max_rejected=0.75)) is None
    # 200 image files no annotation names, 20 duplicates dropped on request: neither counts
    orphans = summary(read=300, written=80, rejected=220, rejections={"image_unannotated": 200, "image_duplicate": 20})
    assert refusal(orphans, Limits()) is None
    assert main_reason(orphans["rejections"]) == "none"


def test_an_incremental_run_may_add_nothing_but_not_delete_much():
    nothing_new = summary(read=0, written=0, boxes_read=0, boxes_written=0)
    assert refusal(nothing_new, Limits(), new_images_expected=False) is None
    assert refusal(nothing_new, Limits(), new_images_expected=False, deleted=10, published_images=100) is None
    line = refusal(nothing_new, Limits(), new_images_expected=False, deleted=300, published_images=300)
    assert line.startswith("the run would delete 300 of the 300 published images, more than --max_deleted 0.1")
    assert refusal(nothing_new, Limits(max_deleted=1), new_images_expected=False, deleted=300,
                   published_images=300) is None
