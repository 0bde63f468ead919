"""The TensorFlow Object Detection API record: which keys, from which parts of an image record."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from transforms.boxes import NormalizedBox
from transforms.records.example import bytes_feature, example_chunks, float_feature, int64_feature
from transforms.images.probe import ImageInfo
from transforms.model import ImageRecord

_FLOAT32_MAX = 3.4028234663852886e38


def _float32_range(value) -> float:
    """A float that float32 can hold: beyond its range, the largest it has (an area is never negative)."""
    return min(float(value), _FLOAT32_MAX)


# Optional per-object keys are written only when the source gives the value for every box.
_OPTIONAL_OBJECT_FIELDS = (
    ("image/object/area", "area", float_feature, _float32_range),
    ("image/object/is_crowd", "is_crowd", int64_feature, int),
    ("image/object/difficult", "difficult", int64_feature, int),
    ("image/object/truncated", "truncated", int64_feature, int),
    ("image/object/view", "view", bytes_feature, lambda view: view.encode("utf-8")),
)


def od_example(
    record: ImageRecord,
    encoded: bytes,
    sha256: str,
    info: ImageInfo,
    boxes: Sequence[NormalizedBox],
    label_ids: Mapping[str, int],
    masks: Optional[Sequence[bytes]] = None,
) -> bytes:
    """A serialized tf.train.Example in the OD API schema (docs/design.md section 3)."""
    features = {
        "image/encoded": bytes_feature([encoded]),
        "image/format": bytes_feature([info.format.encode()]),
        "image/filename": bytes_feature([record.key.encode("utf-8")]),
        "image/source_id": bytes_feature([record.source_id.encode("utf-8")]),
        "image/key/sha256": bytes_feature([sha256.encode()]),
        "image/height": int64_feature([info.height]),
        "image/width": int64_feature([info.width]),
        "image/object/bbox/xmin": float_feature([b.xmin for b in boxes]),
        "image/object/bbox/ymin": float_feature([b.ymin for b in boxes]),
        "image/object/bbox/xmax": float_feature([b.xmax for b in boxes]),
        "image/object/bbox/ymax": float_feature([b.ymax for b in boxes]),
        "image/object/class/text": bytes_feature([b.box.label.encode("utf-8") for b in boxes]),
        "image/object/class/label": int64_feature([label_ids[b.box.label] for b in boxes]),
    }
    for key, attribute, feature, cast in _OPTIONAL_OBJECT_FIELDS:
        values = [getattr(b.box, attribute) for b in boxes]
        if values and all(value is not None for value in values):
            features[key] = feature([cast(value) for value in values])
    if masks is not None:
        features["image/object/mask"] = bytes_feature(masks)
    return example_chunks(features)
