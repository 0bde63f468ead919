"""One image record and its file's bytes -> one serialized OD API Example. Pure: no Beam, no I/O."""
from __future__ import annotations

import dataclasses
import itertools
import hashlib
from typing import Mapping, Optional

from transforms.boxes import BoxOutcome, describe_rejected, normalize_boxes
from transforms.images.prep import (
    DEFAULT_MAX_PIXELS,
    EXIF_AUTO,
    VALIDATE_STRUCTURE,
    PreparedImage,
    prepare_image,
)
from transforms.records.masks import mask_png
from transforms.model import ITEM_IMAGE, ImageRecord, Rejection, boxes_given
from transforms.records.example import Chunks
from transforms.records.od_schema import od_example


@dataclasses.dataclass(frozen=True)
class ImagePolicy:
    """How images are checked and when they are re-encoded (--exif_orientation, --validate_images)."""

    exif_orientation: str = EXIF_AUTO
    validate: str = VALIDATE_STRUCTURE
    max_pixels: int = DEFAULT_MAX_PIXELS
    include_masks: bool = False  # image/object/mask: one PNG per box (--include_masks)
    keep_unlabeled: bool = False  # an image whose every box was rejected is written as a negative (--keep_unlabeled)
    skip_difficult: bool = False  # boxes the source marks difficult are dropped, counted (--skip_difficult)


BOXES_ALL_REJECTED = "image_boxes_all_rejected"


@dataclasses.dataclass(frozen=True)
class EncodedRecord:
    example: Chunks  # the serialized tf.train.Example in pieces (see transforms.records.example)
    sha256: str  # of the record's image bytes: the content that decides the split
    image: PreparedImage
    boxes: BoxOutcome
    size_mismatch: bool  # the annotation states a size other than the image's (beyond a 90 degree turn)


def prepare_record_image(record: ImageRecord, data: bytes, policy: ImagePolicy) -> PreparedImage:
    """The bytes that go into the record: the file's own, or converted once (see image_prep)."""
    return prepare_image(data, record.annotated_size, policy.exif_orientation, policy.validate, policy.max_pixels)


def encode_record(
    record: ImageRecord, data: bytes, policy: ImagePolicy, label_ids: Mapping[str, int]
) -> EncodedRecord:
    """Raises ImageProblem when the bytes are not a usable image; box problems are in `boxes.rejected`."""
    image = prepare_record_image(record, data, policy)
    size = (image.info.width, image.info.height)
    turned = image.exif is not None and record.annotated_size == size[::-1]
    size_mismatch = record.annotated_size is not None and record.annotated_size != size and not turned
    boxes = image_boxes(record, image)
    sha256 = hashlib.sha256(image.encoded).hexdigest()
    masks = None
    if policy.include_masks:
        masks = [
            mask_png(kept.box.segmentation, (kept.xmin, kept.ymin, kept.xmax, kept.ymax), *size)
            for kept in boxes.kept
        ]
    example = od_example(record, image.encoded, sha256, image.info, boxes.kept, label_ids, masks)
    return EncodedRecord(example, sha256, image, boxes, size_mismatch)


def image_boxes(record: ImageRecord, image: PreparedImage) -> BoxOutcome:
    """The record's boxes checked and normalized against the image as it is written."""
    return normalize_boxes(record.boxes, record.units, image.info.width, image.info.height, record.source)


def is_unlabeled(record: ImageRecord, boxes: BoxOutcome, policy: ImagePolicy) -> bool:
    """Whether the image is rejected as image_boxes_all_rejected (see `unlabeled_rejection`)."""
    return boxes_given(record) > 0 and not boxes.kept and not policy.keep_unlabeled


def unlabeled_rejection(record: ImageRecord, boxes: BoxOutcome, policy: ImagePolicy, image_path: str) -> Optional[Rejection]:
    """The rejection of an image that had boxes and lost every one to a box rejection, or None to write it.

    Written as a negative it would teach the model that nothing is there, so it is rejected unless
    --keep_unlabeled asks for it. The boxes lost count whenever they were rejected: by its parser (an
    unknown class, bad numbers: `record.rejected_boxes`) or by the checks against the image (`boxes`).
    An image whose annotation has no box (left) is a negative as the format says: boxes a --class_map
    drops never reach the record. The rejection carries all the image's boxes, counted once as
    `on_rejected_items`; their own rejections are folded into its detail (reasons and counts, the first
    box's detail, its parser's first) and are not reported apart.
    """
    if not is_unlabeled(record, boxes, policy):
        return None
    detail = describe_rejected(itertools.chain(
        record.rejected_boxes, ((rejection.reason, rejection.detail) for rejection in boxes.rejected)))
    if record.source != image_path:
        detail += f"; annotation {record.source}"
    return Rejection(image_path, BOXES_ALL_REJECTED, detail, ITEM_IMAGE, boxes=boxes_given(record))
