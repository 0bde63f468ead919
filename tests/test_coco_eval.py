"""Our COCO records scored as COCO detectors are: every box read back as a perfect detection, evaluated by
pycocotools' COCOeval against the source instances JSON, must score AP 1.0 (docs/design.md section 2: the label
id is COCO's category_id). With --class_ids sorted the ids are renumbered 1..N and the same detections score
far lower, which shows the evaluation can fail."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests import image_factory
from tests.conftest import read_examples, run_cli, shard_files

pytestmark = pytest.mark.slow

# Non-contiguous ids as COCO's own (person 1, car 3, dog 18, toothbrush 90), some declared and unused
# (bicycle 2, zebra 24), declared out of id order.
CATEGORIES = [
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 2, "name": "bicycle", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 24, "name": "zebra", "supercategory": "animal"},
]
SIZES = [(96, 64), (80, 120), (128, 96), (64, 64), (100, 75), (72, 90)]
BOXES = {  # image id -> (category id, [x, y, w, h], iscrowd)
    1: [(1, [4, 6, 30, 40], 0), (3, [40, 10, 50, 30], 0), (90, [60, 40, 8, 20], 0)],
    2: [(18, [10, 20, 40, 60], 0), (1, [5, 5, 60, 100], 1), (1, [50, 70, 20, 30], 0)],
    3: [(3, [0, 0, 128, 96], 0), (3, [10, 12, 20, 14], 0), (18, [70, 30, 40, 50], 0)],
    4: [(90, [2, 3, 10, 40], 0), (1, [20, 20, 30, 30], 1)],
    5: [(1, [10, 10, 40, 50], 0), (18, [50, 20, 45, 50], 0), (3, [1, 1, 30, 20], 0), (90, [70, 5, 10, 30], 0)],
    6: [],  # a negative
}


def _coco_dataset(root):
    images, annotations = [], []
    (root / "images").mkdir()
    for image_id, (width, height) in enumerate(SIZES, 1):
        file_name = f"img{image_id}.jpg"
        (root / "images" / file_name).write_bytes(
            image_factory.encode(image_factory.gradient(width, height), "JPEG", quality=90))
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for category_id, bbox, crowd in BOXES[image_id]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": bbox, "area": float(bbox[2] * bbox[3]), "iscrowd": crowd,
                                "segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1],
                                                  bbox[0] + bbox[2], bbox[1] + bbox[3], bbox[0], bbox[1] + bbox[3]]]})
    source = root / "instances_val.json"
    source.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return source


@pytest.fixture(scope="module")
def coco_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_eval")
    return root, _coco_dataset(root)


def _convert(root, source, *flags):
    output = root / ("out" + "".join(flag.strip("-") for flag in flags))
    run_cli("convert", "--annotations", source, "--images", root / "images", "--output", output,
            "--splits", "train=1.0", "--num_shards", "2", *flags, check_exit=0)
    return output


def _detections(examples):
    """Every box of the records as a COCO detection with score 1, in pixels."""
    detections = []
    for example in examples:
        width, height = example["image/width"][0], example["image/height"][0]
        image_id = int(example["image/source_id"][0].decode())
        boxes = zip(example["image/object/class/label"], example["image/object/bbox/xmin"],
                    example["image/object/bbox/ymin"], example["image/object/bbox/xmax"],
                    example["image/object/bbox/ymax"])
        for label, xmin, ymin, xmax, ymax in boxes:
            detections.append({"image_id": image_id, "category_id": int(label), "score": 1.0,
                               "bbox": [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height]})
    return detections


def _average_precision(source, output) -> float:
    examples = read_examples(shard_files(output))
    assert len(examples) == len(SIZES)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(source))
        evaluation = COCOeval(truth, truth.loadRes(_detections(examples)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def test_records_score_ap_one_against_the_source_json(coco_source):
    root, source = coco_source
    assert _average_precision(source, _convert(root, source)) == pytest.approx(1.0)


def test_sorted_ids_do_not_match_the_source_json(coco_source):
    root, source = coco_source
    assert _average_precision(source, _convert(root, source, "--class_ids", "sorted")) < 0.5


def test_each_box_label_is_its_annotation_category_id(coco_source):
    root, source = coco_source
    output = _convert(root, source)
    document = json.loads(source.read_text())
    expected = {}  # image id -> sorted (category id, rounded pixel box)
    for annotation in document["annotations"]:
        expected.setdefault(annotation["image_id"], []).append(
            (annotation["category_id"], tuple(round(value) for value in annotation["bbox"])))
    found = {}
    for detection in _detections(read_examples(shard_files(output))):
        found.setdefault(detection["image_id"], []).append(
            (detection["category_id"], tuple(round(value) for value in detection["bbox"])))
    assert {key: sorted(value) for key, value in found.items()} == {key: sorted(value) for key, value in expected.items()}
    # every declared category, used or not, with its COCO id; num_classes is the largest id
    label_map = (output / "label_map.pbtxt").read_text()
    for category in CATEGORIES:
        assert f"id: {category['id']}\n  name: '{category['name']}'" in label_map
    summary = json.loads((output / "summary.json").read_text())
    assert [(item["id"], item["name"]) for item in summary["classes"]] == sorted(
        (category["id"], category["name"]) for category in CATEGORIES)
    assert summary["class_ids"] == {"rule": "source", "shifted_by": 0}
    assert "num_classes: 90" in (output / "README.md").read_text()
