"""Box maths: validate, clip to the image, normalize to [0, 1]. Pure functions, no Beam."""
from __future__ import annotations

import dataclasses
import math
import struct
from collections import Counter
from typing import Iterable, List, NamedTuple, Sequence, Tuple

from transforms.model import ITEM_BOX, PIXELS, Box, Rejection


class NormalizedBox(NamedTuple):  # made for every box written: a tuple is made in a third of a frozen dataclass's time
    box: Box  # the source box, for its label and flags
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclasses.dataclass
class BoxOutcome:
    kept: List[NormalizedBox]
    rejected: List[Rejection]
    clipped: int


def normalize_boxes(
    boxes: Sequence[Box], units: str, width: int, height: int, source: str
) -> BoxOutcome:
    """Boxes of an image of `width` x `height` pixels, as fractions of its size.

    A box partly outside the image is clipped to it (and counted); a box that is not finite, inverted,
    unlabeled or has no area left after clipping is rejected with its own reason. The no-shift rule of
    TF Models' converters applies: VOC's 1-based pixel corners are divided by the size as they are.
    """
    scale_x, scale_y = (width, height) if units == PIXELS else (1.0, 1.0)
    kept, rejected, clipped = [], [], 0
    for index, box in enumerate(boxes):
        corners = (box.xmin, box.ymin, box.xmax, box.ymax)
        if not box.label:
            rejected.append(Rejection(source, "box_no_label", f"{_where(index, box)}: empty class name", ITEM_BOX))
            continue
        if not all(map(math.isfinite, corners)):
            rejected.append(Rejection(source, "box_not_finite", f"{_where(index, box)}: coordinates {corners}", ITEM_BOX))
            continue
        if box.xmin > box.xmax or box.ymin > box.ymax:
            rejected.append(Rejection(source, "box_inverted", f"{_where(index, box)}: min > max in {corners}", ITEM_BOX))
            continue
        (xmin, xmax), x_clipped = _clip(box.xmin, box.xmax, scale_x)
        (ymin, ymax), y_clipped = _clip(box.ymin, box.ymax, scale_y)
        xmin, xmax, ymin, ymax = xmin / scale_x, xmax / scale_x, ymin / scale_y, ymax / scale_y
        # Records store float32: a box must still have width and height once rounded to it.
        if _float32(xmax) <= _float32(xmin) or _float32(ymax) <= _float32(ymin):
            rejected.append(
                Rejection(source, "box_empty", f"{_where(index, box)}: no area inside the {width}x{height} image", ITEM_BOX)
            )
            continue
        clipped += x_clipped or y_clipped
        kept.append(NormalizedBox(box, xmin, ymin, xmax, ymax))
    return BoxOutcome(kept, rejected, clipped)


def _where(index: int, box: Box) -> str:
    return f"box {index} ({box.label or 'no label'})"


def describe_rejected(rejected: Iterable[Tuple[str, str]]) -> str:
    """One line on an image's rejected boxes, given as (reason, detail) pairs (read once: a parser may have
    rejected a box per line of a huge file): how many, each reason with its count (most frequent first), and
    the first box's own detail, e.g. `all 3 boxes rejected: box_inverted 2, box_empty 1 (first: ...)`."""
    counts, first = Counter(), None
    for reason, detail in rejected:
        counts[reason] += 1
        first = first or (reason, detail)
    total = sum(counts.values())
    if total == 1:
        return f"its only box rejected: {first[0]} ({first[1]})"
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"all {total} boxes rejected: {reasons} (first: {first[1]})"


_FLOAT32 = struct.Struct("<f")


def _float32(value: float) -> float:
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def _clip(low: float, high: float, limit: float) -> Tuple[Tuple[float, float], bool]:
    clipped_low, clipped_high = min(max(low, 0.0), limit), min(max(high, 0.0), limit)
    return (clipped_low, clipped_high), (clipped_low, clipped_high) != (low, high)
