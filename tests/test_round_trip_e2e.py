"""One dataset expressed in every supported format converts to the same records, format detected."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import read_examples, run_cli, shard_files, voc_boxes

pytestmark = pytest.mark.slow

CORE_KEYS = ("image/encoded", "image/format", "image/filename", "image/height", "image/width",
             "image/object/class/text", "image/object/class/label", "image/key/sha256")
BOX_KEYS = ("image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax", "image/object/bbox/ymax")


@pytest.fixture(scope="module")
def image_folder(raccoon, dataset, tmp_path_factory):
    """Only the dataset's photos: a YOLO folder's unlabeled images would be negatives."""
    folder = tmp_path_factory.mktemp("images")
    for filename, _, _ in dataset:
        (folder / filename).write_bytes((raccoon / "images" / filename).read_bytes())
    return folder


@pytest.fixture(scope="module")
def dataset(raccoon):
    """12 photos; the first box of each is `raccoon`, any second box `face`, so there are two classes."""
    images = []
    for xml_path in sorted((raccoon / "annotations").glob("*.xml"), key=lambda p: int(p.stem.split("-")[1]))[:12]:
        filename, size, boxes = voc_boxes(xml_path)
        assert Image.open(raccoon / "images" / filename).size == size
        images.append((filename, size, [("raccoon" if i == 0 else "face", *box[1:]) for i, box in enumerate(boxes)]))
    assert any(len(boxes) > 1 for _, _, boxes in images)
    return images


def write_voc(folder: Path, images):
    for filename, (w, h), boxes in images:
        objects = "".join(
            f"<object><name>{label}</name><bndbox><xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax>"
            f"<ymax>{y1:g}</ymax></bndbox></object>" for label, x0, y0, x1, y1 in boxes)
        (folder / (Path(filename).stem + ".xml")).write_text(
            f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


def write_coco(folder: Path, images):
    classes = {"face": 1, "raccoon": 2}
    document = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in classes.items()]}
    for image_id, (filename, (w, h), boxes) in enumerate(images, start=1):
        document["images"].append({"id": image_id, "file_name": filename, "width": w, "height": h})
        for label, x0, y0, x1, y1 in boxes:
            document["annotations"].append({"id": len(document["annotations"]) + 1, "image_id": image_id,
                                            "category_id": classes[label], "bbox": [x0, y0, x1 - x0, y1 - y0],
                                            "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    (folder / "instances.json").write_text(json.dumps(document))


def write_yolo(folder: Path, images):
    (folder / "classes.txt").write_text("face\nraccoon\n")  # YOLO ids are index + 1: the ids VOC's sorted names get
    for filename, (w, h), boxes in images:
        lines = [f"{['face', 'raccoon'].index(label)} {(x0 + x1) / 2 / w:.12f} {(y0 + y1) / 2 / h:.12f} "
                 f"{(x1 - x0) / w:.12f} {(y1 - y0) / h:.12f}" for label, x0, y0, x1, y1 in boxes]
        (folder / (Path(filename).stem + ".txt")).write_text("\n".join(lines) + "\n")


def write_csv(folder: Path, images):
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        for filename, (w, h), boxes in images:
            for label, x0, y0, x1, y1 in boxes:
                writer.writerow([filename, w, h, label, f"{x0:g}", f"{y0:g}", f"{x1:g}", f"{y1:g}"])


def write_cvat(folder: Path, images):
    body = "".join(
        f'<image id="{i}" name="{filename}" width="{w}" height="{h}">'
        + "".join(f'<box label="{label}" occluded="0" source="manual" xtl="{x0:g}" ytl="{y0:g}" xbr="{x1:g}" '
                  f'ybr="{y1:g}" z_order="0"></box>' for label, x0, y0, x1, y1 in boxes)
        + "</image>"
        for i, (filename, (w, h), boxes) in enumerate(images))
    (folder / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task><id>1</id>'
        f"<name>raccoons</name><size>{len(images)}</size></task></meta>{body}</annotations>")


def write_labelme(folder: Path, images):
    for filename, (w, h), boxes in images:
        shapes = [{"label": label, "points": [[x0, y0], [x1, y1]], "group_id": None, "shape_type": "rectangle",
                   "flags": {}} for label, x0, y0, x1, y1 in boxes]
        (folder / (Path(filename).stem + ".json")).write_text(json.dumps(
            {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": filename, "imageData": None,
             "imageHeight": h, "imageWidth": w}))


def write_createml(folder: Path, images):
    items = [{"image": filename, "annotations": [
        {"label": label, "coordinates": {"x": (x0 + x1) / 2, "y": (y0 + y1) / 2, "width": x1 - x0, "height": y1 - y0}}
        for label, x0, y0, x1, y1 in boxes]} for filename, _, boxes in images]
    (folder / "_annotations.createml.json").write_text(json.dumps(items))


WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "csv": write_csv, "cvat": write_cvat,
           "labelme": write_labelme, "createml": write_createml}


def _records(image_folder, dataset, tmp_path, fmt):
    folder = tmp_path / fmt
    folder.mkdir()
    WRITERS[fmt](folder, dataset)
    output = tmp_path / f"out-{fmt}"
    run_cli("convert", "--annotations", folder, "--images", image_folder, "--output", output,
            "--splits", "train=1.0", "--num_shards", "1", check_exit=0)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["config"]["format"] == [fmt]  # detected, not given
    assert summary["images_rejected"] == 0 and summary["boxes"]["rejected"] == 0
    return {e["image/filename"][0]: e for e in read_examples(shard_files(output))}


@pytest.fixture(scope="module")
def reference(image_folder, dataset, tmp_path_factory):
    return _records(image_folder, dataset, tmp_path_factory.mktemp("voc"), "voc")


@pytest.mark.parametrize("fmt", [name for name in WRITERS if name != "voc"])
def test_every_format_gives_the_records_voc_gives(image_folder, dataset, reference, tmp_path, fmt):
    records = _records(image_folder, dataset, tmp_path, fmt)
    assert sorted(records) == sorted(reference) and len(records) == 12
    for name, example in records.items():
        for key in CORE_KEYS:
            assert example[key] == reference[name][key], (fmt, name, key)
        for key in BOX_KEYS:
            assert example[key] == pytest.approx(reference[name][key], abs=1e-6), (fmt, name, key)
