"""Instance masks for `--include_masks`: COCO polygons and RLE rendered to PNG, one per box.

pycocotools decodes RLE (compressed or not) and rasterizes polygons exactly as COCO's own tools do;
it and Pillow are imported only when masks are asked for.
"""
from __future__ import annotations

import io
import json
from typing import Optional, Sequence


def mask_png(segmentation: Optional[str], box: Sequence[float], width: int, height: int) -> bytes:
    """A 0/1 grayscale PNG of `width` x `height`: the segmentation (JSON text) or, without one, the box.

    `box` is (xmin, ymin, xmax, ymax) normalized to [0, 1].
    """
    import numpy as np
    from PIL import Image

    if segmentation:
        from pycocotools import mask as coco_mask

        shape = json.loads(segmentation)
        if isinstance(shape, list):  # polygons: [[x1, y1, x2, y2, ...], ...]
            rles = coco_mask.frPyObjects([polygon for polygon in shape if len(polygon) >= 6], height, width)
            rle = coco_mask.merge(rles) if rles else None
        elif isinstance(shape.get("counts"), list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(shape, height, width)
        else:
            rle = dict(shape, counts=shape["counts"].encode() if isinstance(shape["counts"], str) else shape["counts"])
        pixels = coco_mask.decode(rle) if rle is not None else np.zeros((height, width), np.uint8)
        if pixels.shape != (height, width):  # annotated on another size than the real image: rescale
            pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.NEAREST))
    else:
        pixels = np.zeros((height, width), np.uint8)
        xmin, ymin, xmax, ymax = box
        pixels[round(ymin * height) : round(ymax * height), round(xmin * width) : round(xmax * width)] = 1
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
