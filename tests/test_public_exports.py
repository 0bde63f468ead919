"""End to end: public exports converted as they are downloaded, with `--splits source`.

Each layout is built for real (tiny real JPEGs, annotation files written the way the tool ships them): a
Pascal VOC devkit with ImageSets/Main (BCCD's layout, scaled down from 205/87/72), Roboflow exports from
their root in COCO, Pascal VOC, YOLOv8, CreateML and TensorFlow CSV, and a CVAT for images 1.1 project
export with `images/<subset>/`. Every image must land in its own split.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import read_examples, run_cli, shard_files
from tests.image_factory import encode, gradient

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 64, 48
CLASSES = ("Platelets", "RBC", "WBC")
BOX = (4, 6, 30, 40)  # xmin, ymin, xmax, ymax in pixels
README_ROBOFLOW = "\nBCCD - v3 raw\n==============================\n\nThis dataset was exported via roboflow.com\n"
README_DATASET = "# BCCD > raw\nhttps://public.roboflow.com/object-detection/bccd\n\nProvided by Roboflow\nLicense: MIT\n"


def jpeg(index: int) -> bytes:
    """A small real JPEG, different for every index (byte-identical copies would be a cross-split leak)."""
    image = gradient(WIDTH, HEIGHT)
    for x in range(8):
        image.putpixel((x + 8 * (index % 7), index % HEIGHT), (255, (37 * index) % 256, 0))
    return encode(image, "JPEG", quality=95)


def written_splits(output: Path) -> dict:
    """{image/filename: split} of every record written, read back with TensorFlow."""
    splits = {}
    for path in shard_files(output):
        split = Path(path).name.split("-")[1].split(".")[0]
        for example in read_examples([path]):
            splits[example["image/filename"][0].decode()] = split
    return splits


def convert(annotations: Path, images: Path, output: Path, *extra) -> dict:
    run_cli("convert", "--annotations", annotations, "--images", images, "--output", output, "--splits", "source",
            *extra, check_exit=0)
    return json.loads((output / "summary.json").read_text())


def split_counts(summary: dict) -> dict:
    return {split: counts["images"] for split, counts in summary["splits"].items()}


# --- Pascal VOC devkit: ImageSets/Main --------------------------------------------------------------------

VOC_XML = """<annotation>
\t<folder>JPEGImages</folder>
\t<filename>{name}.jpg</filename>
\t<path>/home/pi/detection_dataset/JPEGImages/{name}.jpg</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>{label}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def voc_xml(name: str, label: str = "RBC") -> str:
    xmin, ymin, xmax, ymax = BOX
    return VOC_XML.format(name=name, label=label, width=WIDTH, height=HEIGHT, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax)


def bccd_like(root: Path, counts=(("train", 5), ("val", 3), ("test", 2)), only_trainval=0, unlisted=0) -> dict:
    """BCCD's devkit (BCCD/Annotations, BCCD/ImageSets/Main/{train,val,trainval,test}.txt, BCCD/JPEGImages):
    trainval.txt is train + val, as BCCD ships it. Returns {image file name: expected split}."""
    for folder in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / folder).mkdir(parents=True)
    expected, lists, index = {}, {"train": [], "val": [], "test": [], "trainval": []}, 0

    def image(split):
        nonlocal index
        name = f"BloodImage_{index:05d}"
        (root / "JPEGImages" / f"{name}.jpg").write_bytes(jpeg(index))
        (root / "Annotations" / f"{name}.xml").write_text(voc_xml(name, CLASSES[index % 3]))
        expected[f"{name}.jpg"] = split
        index += 1
        return name

    for split, count in counts:
        for _ in range(count):
            name = image(split)
            lists[split].append(name)
            if split in ("train", "val"):
                lists["trainval"].append(name)
    for _ in range(only_trainval):
        lists["trainval"].append(image("trainval"))
    for _ in range(unlisted):
        image(None)
    for split, names in lists.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{name}\n" for name in sorted(names)))
    # Per-class files list every image with a flag: they are not split files and must not count.
    for label in CLASSES:
        for split in ("train", "val", "trainval", "test"):
            lines = "".join(f"{Path(name).stem}  {1 if i % 2 else -1}\n" for i, name in enumerate(sorted(expected)))
            (root / "ImageSets" / "Main" / f"{label}_{split}.txt").write_text(lines)
    return expected


def test_voc_devkit_image_sets_give_the_splits(tmp_path):
    root = tmp_path / "BCCD"
    expected = bccd_like(root)
    output = tmp_path / "out"
    summary = convert(root / "Annotations", root / "JPEGImages", output)
    assert summary["images_written"] == 10 and summary["images_rejected"] == 0, summary["rejections"]
    assert split_counts(summary) == {"train": 5, "val": 3, "test": 2}
    assert written_splits(output) == expected


def test_voc_devkit_from_its_root_with_trainval_only_and_unlisted_images(tmp_path):
    root = tmp_path / "BCCD"
    expected = bccd_like(root, counts=(("train", 3), ("val", 2), ("test", 2)), only_trainval=2, unlisted=1)
    output = tmp_path / "out"
    summary = convert(root, root, output)  # the devkit root for both: Annotations and JPEGImages in it
    assert split_counts(summary) == {"train": 3, "val": 2, "test": 2, "trainval": 2}
    assert summary["rejections"] == {"split_unknown": 1}
    assert written_splits(output) == {name: split for name, split in expected.items() if split}


# --- Roboflow exports, converted from their root -----------------------------------------------------------

ROBOFLOW_SPLITS = (("train", "train", 4), ("valid", "val", 3), ("test", "test", 2))


def roboflow_images(root: Path):
    """[(folder, split, file name, index)] of a Roboflow export's images, with README files at the root."""
    root.mkdir(parents=True)
    (root / "README.roboflow.txt").write_text(README_ROBOFLOW)
    (root / "README.dataset.txt").write_text(README_DATASET)
    images, index = [], 0
    for folder, split, count in ROBOFLOW_SPLITS:
        for _ in range(count):
            images.append((folder, split, f"BloodImage_{index:05d}_jpg.rf.{index:08x}d41d8cd98f00b204.jpg", index))
            index += 1
    return images


def roboflow_coco(root: Path) -> dict:
    images = roboflow_images(root)
    x, y = BOX[0], BOX[1]
    w, h = BOX[2] - BOX[0], BOX[3] - BOX[1]
    for folder, _, _ in ROBOFLOW_SPLITS:
        (root / folder).mkdir()
        entries = [(name, index) for f, _, name, index in images if f == folder]
        document = {
            "info": {"year": "2024", "version": "3", "description": "Exported from roboflow.com", "contributor": "",
                     "url": "https://public.roboflow.com/object-detection/undefined", "date_created": "2024-01-01T00:00:00+00:00"},
            "licenses": [{"id": 1, "url": "https://opensource.org/licenses/MIT", "name": "MIT"}],
            "categories": [{"id": 0, "name": "cells", "supercategory": "none"}]
            + [{"id": i + 1, "name": name, "supercategory": "cells"} for i, name in enumerate(CLASSES)],
            "images": [{"id": i, "license": 1, "file_name": name, "height": HEIGHT, "width": WIDTH,
                        "date_captured": "2024-01-01T00:00:00+00:00"} for i, (name, _) in enumerate(entries)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1 + index % 3, "bbox": [x, y, w, h], "area": w * h,
                             "segmentation": [], "iscrowd": 0} for i, (_, index) in enumerate(entries)],
        }
        for name, index in entries:
            (root / folder / name).write_bytes(jpeg(index))
        (root / folder / "_annotations.coco.json").write_text(json.dumps(document))
    return {f"{folder}/{name}": split for folder, split, name, _ in images}


def roboflow_voc(root: Path) -> dict:
    images = roboflow_images(root)
    xmin, ymin, xmax, ymax = BOX
    for folder, _, name, index in images:
        (root / folder).mkdir(exist_ok=True)
        (root / folder / name).write_bytes(jpeg(index))
        (root / folder / (name[:-4] + ".xml")).write_text(
            f"<annotation>\n\t<folder></folder>\n\t<filename>{name}</filename>\n\t<path>{name}</path>\n"
            f"\t<source>\n\t\t<database>roboflow.com</database>\n\t</source>\n\t<size>\n\t\t<width>{WIDTH}</width>\n"
            f"\t\t<height>{HEIGHT}</height>\n\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
            f"\t<object>\n\t\t<name>{CLASSES[index % 3]}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>0</difficult>\n\t\t<occluded>0</occluded>\n\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymin>{ymin}</ymin>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n"
            f"\t</object>\n</annotation>\n")
    return {f"{folder}/{name}": split for folder, split, name, _ in images}


def roboflow_yolov8(root: Path) -> dict:
    images = roboflow_images(root)
    xmin, ymin, xmax, ymax = BOX
    line = (f"{(xmin + xmax) / 2 / WIDTH:.6f} {(ymin + ymax) / 2 / HEIGHT:.6f} "
            f"{(xmax - xmin) / WIDTH:.6f} {(ymax - ymin) / HEIGHT:.6f}")
    for folder, _, name, index in images:
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        (root / folder / "labels").mkdir(parents=True, exist_ok=True)
        (root / folder / "images" / name).write_bytes(jpeg(index))
        (root / folder / "labels" / (name[:-4] + ".txt")).write_text(f"{index % 3} {line}\n")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 3\n"
        f"names: {list(CLASSES)!r}\n\nroboflow:\n  workspace: roboflow-100\n  project: bccd\n  version: 3\n"
        "  license: MIT\n  url: https://universe.roboflow.com/roboflow-100/bccd/dataset/3\n")
    return {f"{folder}/images/{name}": split for folder, split, name, _ in images}


def roboflow_createml(root: Path) -> dict:
    images = roboflow_images(root)
    xmin, ymin, xmax, ymax = BOX
    for folder, _, _ in ROBOFLOW_SPLITS:
        (root / folder).mkdir()
        items = []
        for f, _, name, index in images:
            if f == folder:
                (root / folder / name).write_bytes(jpeg(index))
                items.append({"image": name, "annotations": [{"label": CLASSES[index % 3], "coordinates": {
                    "x": (xmin + xmax) / 2, "y": (ymin + ymax) / 2, "width": xmax - xmin, "height": ymax - ymin}}]})
        (root / folder / "_annotations.createml.json").write_text(json.dumps(items))
    return {f"{folder}/{name}": split for folder, split, name, _ in images}


def roboflow_csv(root: Path) -> dict:
    images = roboflow_images(root)
    for folder, _, _ in ROBOFLOW_SPLITS:
        (root / folder).mkdir()
        rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
        for f, _, name, index in images:
            if f == folder:
                (root / folder / name).write_bytes(jpeg(index))
                rows.append(f"{name},{WIDTH},{HEIGHT},{CLASSES[index % 3]},{','.join(map(str, BOX))}")
        (root / folder / "_annotations.csv").write_text("\n".join(rows) + "\n")
    return {f"{folder}/{name}": split for folder, split, name, _ in images}


@pytest.mark.parametrize("build, format_name", [
    (roboflow_coco, "coco"), (roboflow_voc, "voc"), (roboflow_yolov8, "yolo"), (roboflow_createml, "createml"),
    (roboflow_csv, "csv"),
])
def test_roboflow_export_from_its_root(tmp_path, build, format_name):
    root = tmp_path / "BCCD.v3-raw"
    expected = build(root)
    output = tmp_path / "out"
    summary = convert(root, root, output)  # format detected at the root
    assert summary["config"]["format"] == [format_name]
    assert summary["images_written"] == 9 and summary["images_rejected"] == 0, summary["rejections"]
    assert split_counts(summary) == {"train": 4, "val": 3, "test": 2}
    assert written_splits(output) == expected


def test_roboflow_coco_file_below_images_names_images_beside_it(tmp_path):
    root = tmp_path / "export"
    expected = roboflow_coco(root)
    output = tmp_path / "out"
    summary = convert(root / "valid" / "_annotations.coco.json", root, output, "--format", "coco")
    assert summary["images_written"] == 3
    assert written_splits(output) == {key: split for key, split in expected.items() if key.startswith("valid/")}


# --- CVAT for images 1.1, project export with images -------------------------------------------------------

CVAT_SUBSETS = (("Train", "train", 4), ("Validation", "val", 2), ("Test", "test", 2))


def cvat_project(root: Path) -> dict:
    """annotations.xml and images/<subset>/<name>, as CVAT exports a project with "Save images"."""
    tasks, images, expected, index = [], [], {}, 0
    for task_id, (subset, split, count) in enumerate(CVAT_SUBSETS, start=1):
        tasks.append(f"      <task>\n        <id>{task_id}</id>\n        <name>cells {subset}</name>\n"
                     f"        <size>{count}</size>\n        <mode>annotation</mode>\n        <overlap>0</overlap>\n"
                     f"        <subset>{subset}</subset>\n      </task>\n")
        (root / "images" / subset).mkdir(parents=True)
        for _ in range(count):
            name = f"cell_{index:03d}.jpg"
            (root / "images" / subset / name).write_bytes(jpeg(index))
            xmin, ymin, xmax, ymax = BOX
            images.append(
                f'  <image id="{index}" name="{name}" subset="{subset}" task_id="{task_id}" width="{WIDTH}" '
                f'height="{HEIGHT}">\n    <box label="{CLASSES[index % 3]}" source="manual" occluded="0" '
                f'xtl="{xmin:.2f}" ytl="{ymin:.2f}" xbr="{xmax:.2f}" ybr="{ymax:.2f}" z_order="0">\n    </box>\n  </image>\n')
            expected[f"images/{subset}/{name}"] = split
            index += 1
    labels = "".join(f"        <label>\n          <name>{name}</name>\n          <color>#33ddff</color>\n"
                     f"          <type>any</type>\n          <attributes>\n          </attributes>\n        </label>\n"
                     for name in CLASSES)
    (root / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n    <project>\n'
        "      <id>1</id>\n      <name>cells</name>\n      <bugtracker></bugtracker>\n"
        f"      <labels>\n{labels}      </labels>\n      <tasks>\n{''.join(tasks)}      </tasks>\n    </project>\n"
        "    <dumped>2024-01-01 00:00:00.000000+00:00</dumped>\n  </meta>\n" + "".join(images) + "</annotations>\n")
    return expected


def test_cvat_project_export_with_images_per_subset(tmp_path):
    root = tmp_path / "project_cells_export"
    expected = cvat_project(root)
    output = tmp_path / "out"
    summary = convert(root / "annotations.xml", root / "images", output)
    assert summary["images_written"] == 8 and summary["images_rejected"] == 0, summary["rejections"]
    assert split_counts(summary) == {"train": 4, "val": 2, "test": 2}
    assert written_splits(output) == {key.split("/", 1)[1]: split for key, split in expected.items()}


def test_cvat_project_export_from_its_root(tmp_path):
    root = tmp_path / "project_cells_export"
    expected = cvat_project(root)
    output = tmp_path / "out"
    summary = convert(root, root, output)
    assert summary["config"]["format"] == ["cvat"]
    assert summary["images_written"] == 8 and summary["images_rejected"] == 0, summary["rejections"]
    assert written_splits(output) == expected
