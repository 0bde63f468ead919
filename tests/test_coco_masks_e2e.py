"""End to end: COCO polygons and RLE become PNG instance masks with --include_masks; keypoints are counted."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from tests.conftest import read_examples, run_cli, shard_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coco_with_masks(raccoon, tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    width, height = Image.open(raccoon / "images" / "raccoon-1.jpg").size  # 650 x 417
    blob = np.zeros((height, width), np.uint8, order="F")
    blob[100:200, 300:420] = 1
    rle = coco_mask.encode(np.asfortranarray(blob))
    rle["counts"] = rle["counts"].decode()
    polygon = [[81, 88, 522, 88, 522, 408, 81, 408]]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [81, 88, 441, 320], "area": 141120.0, "iscrowd": 0,
         "segmentation": polygon, "keypoints": [100, 100, 2, 0, 0, 0], "num_keypoints": 1},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [300, 100, 120, 100], "area": 12000.0, "iscrowd": 1,
         "segmentation": rle},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "area": 600.0, "iscrowd": 0},
    ]
    document = {"images": [{"id": 1, "file_name": "raccoon-1.jpg", "width": width, "height": height}],
                "annotations": annotations, "categories": [{"id": 1, "name": "raccoon"}]}
    (root / "instances.json").write_text(json.dumps(document))
    (root / "images").mkdir()
    (root / "images" / "raccoon-1.jpg").write_bytes((raccoon / "images" / "raccoon-1.jpg").read_bytes())
    output = root / "out"
    run_cli("convert", "--annotations", root / "instances.json", "--images", root / "images", "--output", output,
            "--splits", "train=1.0", "--include_masks", check_exit=0)
    (example,) = read_examples(shard_files(output))
    return example, polygon, blob, json.loads((output / "summary.json").read_text())


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_one_png_mask_per_box_matching_the_segmentation(coco_with_masks):
    example, polygon, blob, _ = coco_with_masks
    masks = [_decode(png) for png in example["image/object/mask"]]
    assert len(masks) == 3 and all(mask.shape == (417, 650) for mask in masks)
    expected_polygon = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygon, 417, 650)))
    assert np.array_equal(masks[0], expected_polygon)
    assert np.array_equal(masks[1], blob)  # RLE decoded exactly
    assert masks[2].sum() == 20 * 30 and masks[2][10:40, 10:30].all()  # no segmentation: the box
    assert example["image/object/is_crowd"] == [0, 1, 0]
    assert example["image/object/area"] == [141120.0, 12000.0, 600.0]


def test_keypoints_are_ignored_with_a_count(coco_with_masks):
    *_, summary = coco_with_masks
    assert summary["ignored"] == {"coco_keypoints": 1}
