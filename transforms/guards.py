"""When a finished run must not publish: its result is obviously wrong. Pure functions, no Beam.

A scheduler alerts on any exit but 0, so a run that wrote nothing, or no box although the sources
have boxes, or rejected most of what its annotations name, or would delete much of a published
dataset, refuses (exit 3) and leaves the published dataset as it was. Such results nearly always
mean a mistaken path or format (`--images` one folder too high, VOC read as YOLO, an unmounted
folder in a nightly run), not a dataset someone wants.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

# Rejections that say nothing about whether the run read its sources right: an image file that no
# annotation names (reported, not counted against the run), a duplicate dropped on request.
NOT_COUNTED = ("image_unannotated", "image_duplicate")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_rejected: float = 0.5  # of the images the annotations name (--max_rejected; 1: off)
    max_deleted: float = 0.1  # of the published images, by an incremental run (--max_deleted; 1: off)


def main_reason(rejections: Mapping[str, int]) -> str:
    """`reason count` of the commonest rejection that counts (ties: by name), or `none`."""
    counted = sorted((-n, reason) for reason, n in rejections.items() if reason not in NOT_COUNTED and n)
    return f"{counted[0][1]} {-counted[0][0]:,}" if counted else "none"


def refusal(summary: Mapping, limits: Limits, *, new_images_expected: bool = True, deleted: int = 0,
            published_images: int = 0) -> Optional[str]:
    """Why this run's result must not be published (one line without the hint), or None to publish it.

    `summary` is summary.json's counts for this run. `new_images_expected`: False for an incremental
    run that extends a dataset, where writing nothing new (or only negatives) is normal. `deleted` and `published_images`:
    what an incremental run with --update_changed would remove, out of how many published.
    """
    rejections = summary["rejections"]
    not_counted = sum(rejections.get(reason, 0) for reason in NOT_COUNTED)
    named = summary["images_read"] - not_counted
    rejected = summary["images_rejected"] - not_counted
    written = summary["images_written"]
    boxes = summary["boxes"]
    boxes_in_sources = boxes["read"] - boxes.get("dropped_by_class_map", 0) - boxes.get("dropped_difficult", 0)
    reason = main_reason(rejections)
    if new_images_expected and written == 0:
        return f"no image was written ({summary['images_read']:,} read, {summary['images_rejected']:,} rejected; " \
               f"main reason: {reason})"
    if new_images_expected and boxes["written"] == 0:  # every image a negative: a detector learns nothing
        had = f"the annotations have {boxes_in_sources:,}" if boxes_in_sources else \
            f"{summary.get('annotation_files_read', 0):,} annotation files were read"
        return f"no box was written, {had} ({written:,} images would be negatives; main reason: {reason})"
    if limits.max_rejected < 1 and named > 0 and rejected / named > limits.max_rejected:
        return f"{rejected:,} of the {named:,} images the annotations name were rejected, more than " \
               f"--max_rejected {limits.max_rejected:g} (main reason: {reason})"
    if limits.max_deleted < 1 and published_images > 0 and deleted / published_images > limits.max_deleted:
        return f"the run would delete {deleted:,} of the {published_images:,} published images, more than " \
               f"--max_deleted {limits.max_deleted:g} (is --images empty, unmounted or the wrong folder?)"
    return None
