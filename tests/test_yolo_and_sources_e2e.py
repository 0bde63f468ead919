"""End to end: a YOLO export, source splits, and several sources merged into one dataset."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import read_examples, run_cli, shard_files, voc_boxes

pytestmark = pytest.mark.slow

F32 = 1e-6


def _yolo_line(class_index, box, width, height):
    _, xmin, ymin, xmax, ymax = box
    return (f"{class_index} {(xmin + xmax) / 2 / width:.10f} {(ymin + ymax) / 2 / height:.10f} "
            f"{(xmax - xmin) / width:.10f} {(ymax - ymin) / height:.10f}")


@pytest.fixture(scope="module")
def yolo_dataset(raccoon, tmp_path_factory):
    """Ultralytics layout: images/{train,val}, labels/{train,val}, data.yaml; two unlabeled negatives.

    The second class, `junk`, labels the second box of any image that has two.
    """
    root = tmp_path_factory.mktemp("yolo")
    expected = {}
    xmls = sorted((raccoon / "annotations").glob("*.xml"), key=lambda p: int(p.stem.split("-")[1]))[:32]
    for index, xml_path in enumerate(xmls):
        filename, _, boxes = voc_boxes(xml_path)
        split = "train" if index % 3 else "val"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(raccoon / "images" / filename, root / "images" / split / filename)
        width, height = Image.open(raccoon / "images" / filename).size
        if index >= 30:  # no label file: a negative example
            expected[f"{split}/{filename}"] = (split, [], width, height)
            continue
        lines = [_yolo_line(min(box_index, 1), box, width, height) for box_index, box in enumerate(boxes)]
        (root / "labels" / split / (Path(filename).stem + ".txt")).write_text("\n".join(lines) + "\n")
        labelled = [("Raccoon" if i == 0 else "junk", *box[1:]) for i, box in enumerate(boxes)]
        expected[f"{split}/{filename}"] = (split, labelled, width, height)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: Raccoon\n  1: junk\n")
    return root, expected


def _examples_by_split(output):
    result = {}
    for path in shard_files(output):
        split = Path(path).name.split("-")[1].split(".")[0]
        for example in read_examples([path]):
            result[example["image/filename"][0].decode()] = (split, example)
    return result


def test_yolo_export_with_detected_format_classes_and_source_splits(yolo_dataset, tmp_path):
    root, expected = yolo_dataset
    output = tmp_path / "out"
    run_cli("convert", "--annotations", root / "labels", "--images", root / "images", "--output", output,
            "--splits", "source", check_exit=0)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["config"]["format"] == ["yolo"]
    assert sorted(summary["splits"]) == ["train", "val"]
    assert summary["images_written"] == 32 and summary["images_rejected"] == 0
    assert (output / "label_map.pbtxt").read_text() == (
        "item {\n  id: 1\n  name: 'Raccoon'\n}\nitem {\n  id: 2\n  name: 'junk'\n}\n")
    examples = _examples_by_split(output)
    assert sorted(examples) == sorted(expected)
    for key, (split, boxes, width, height) in expected.items():
        got_split, example = examples[key]
        assert got_split == split, key
        assert [t.decode() for t in example["image/object/class/text"]] == [b[0] for b in boxes]
        assert example["image/object/bbox/xmin"] == pytest.approx([b[1] / width for b in boxes], abs=F32)
        assert example["image/object/bbox/ymax"] == pytest.approx([b[4] / height for b in boxes], abs=F32)
        assert example["image/source_id"] == [key.encode()]


def test_sources_merge_with_one_label_map_and_a_class_map(raccoon, yolo_dataset, tmp_path):
    root, expected = yolo_dataset
    class_map = tmp_path / "classes.yaml"
    class_map.write_text("Raccoon: raccoon\njunk: null\n")
    output = tmp_path / "out"
    run_cli("convert", "--annotations", f"voc:{raccoon / 'annotations'}", "--images", raccoon / "images",
            "--annotations", root / "labels", "--images", root / "images", "--classes", root / "data.yaml",
            "--class_map", class_map, "--output", output, check_exit=0)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["config"]["format"] == ["voc", "yolo"]
    assert summary["images_written"] == 200 + 32
    junk = sum(1 for _, boxes, _, _ in expected.values() for box in boxes if box[0] == "junk")
    assert junk > 0 and summary["boxes"]["dropped_by_class_map"] == junk
    boxes = summary["boxes"]
    assert boxes["read"] == boxes["written"] + boxes["rejected"] + boxes["on_rejected_items"] + boxes["dropped_by_class_map"]
    assert (output / "label_map.pbtxt").read_text() == "item {\n  id: 1\n  name: 'raccoon'\n}\n"
    # The YOLO copies are byte-identical to the VOC originals: each pair shares a split.
    split_of = {key: split for key, (split, _) in _examples_by_split(output).items()}
    for key in expected:
        assert split_of[key] == split_of[key.split("/", 1)[1]], key


def test_yolo_without_classes_is_a_usage_error(yolo_dataset, tmp_path):
    root, _ = yolo_dataset
    lonely = tmp_path / "labels"
    shutil.copytree(root / "labels", lonely)
    result = run_cli("convert", "--format", "yolo", "--annotations", lonely, "--images", root / "images",
                     "--output", tmp_path / "out")
    assert result.returncode == 2
    assert "pass --classes classes.txt or data.yaml" in result.stderr


def test_labelme_image_embedded_as_image_data_is_used_when_the_file_is_absent(raccoon, tmp_path):
    import base64

    photo = (raccoon / "images" / "raccoon-1.jpg").read_bytes()
    (tmp_path / "labelme").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "present.jpg").write_bytes((raccoon / "images" / "raccoon-2.jpg").read_bytes())

    def labelme(image_path, image_data):
        return json.dumps({"version": "5.4.1", "flags": {}, "imagePath": image_path, "imageData": image_data,
                           "imageWidth": 650, "imageHeight": 417, "shapes": [
                               {"label": "raccoon", "points": [[81, 88], [522, 408]], "shape_type": "rectangle",
                                "group_id": None, "flags": {}}]})

    (tmp_path / "labelme" / "embedded.json").write_text(labelme("embedded.jpg", base64.b64encode(photo).decode()))
    (tmp_path / "labelme" / "nothing.json").write_text(labelme("nothing.jpg", None))
    (tmp_path / "labelme" / "present.json").write_text(labelme("present.jpg", None))
    output = tmp_path / "out"
    run_cli("convert", "--annotations", tmp_path / "labelme", "--images", tmp_path / "images", "--output", output,
            "--splits", "train=1.0", check_exit=0)
    examples = {e["image/filename"][0].decode(): e for e in read_examples(shard_files(output))}
    assert sorted(examples) == ["embedded.jpg", "present.jpg"]
    assert examples["embedded.jpg"]["image/encoded"] == [photo]
    rejected = [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]
    assert [(Path(r["source"]).name, r["reason"]) for r in rejected] == [("nothing.json", "image_missing")]
