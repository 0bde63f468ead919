"""Safe by default: a mistaken path, format or empty folder never publishes an empty, all-negative or destroyed
dataset with exit 0. Each case is a real CLI run laid out the way a user gets it wrong."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_cli
from tests.small_datasets import digest, voc_dataset

pytestmark = pytest.mark.slow


def convert(*args, check_exit=None, fmt="voc"):
    return run_cli("convert", "--format", fmt, "--splits", "train=0.5,val=0.5", *args, check_exit=check_exit)


def refused_line(result) -> str:
    assert result.returncode == 3, result.stdout + result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refused to publish: "), result.stderr[-3000:]
    return lines[0]


def test_images_one_folder_too_high_is_refused_with_the_folder_that_holds_them(tmp_path):
    voc = tmp_path / "VOC2012"
    annotations, images = voc_dataset(voc, 6, images="JPEGImages", annotations="Annotations")
    output = tmp_path / "out"
    convert("--annotations", annotations, "--images", images, "--output", output, check_exit=0)
    published = digest(output)

    line = refused_line(convert("--annotations", annotations, "--images", voc, "--output", output, "--seed", "1"))
    assert "no image was written (12 read, 12 rejected; main reason: image_missing 6)" in line
    assert line.endswith(f"hint: the images the annotations name are in {images}: pass --images {images}")
    assert f"{output}/.refused/" in line
    refused = {name: value for name, value in digest(output).items() if name.startswith(".refused/")}
    assert digest(output) == {**published, **refused}  # the published dataset, untouched
    report = json.loads((output / ".refused" / "summary.json").read_text())
    assert report["rejections"]["image_missing"] == 6 and report["refused"] in line
    assert len((output / ".refused" / "rejected.jsonl").read_text().splitlines()) == 12

    convert("--annotations", annotations, "--images", images, "--output", output, "--seed", "1", check_exit=0)
    assert not (output / ".refused").exists()  # a published run clears the last refusal's report


def test_images_one_folder_too_low_is_refused_with_the_folder_above(tmp_path):
    annotations, images = voc_dataset(tmp_path, 4)
    (images / "sub").mkdir()
    shutil.copy(images / "img0.jpg", images / "sub" / "img0.jpg")
    line = refused_line(convert("--annotations", annotations, "--images", images / "sub", "--output", tmp_path / "out"))
    assert line.endswith(f"hint: the images the annotations name are in {images}: pass --images {images}")
    assert not list((tmp_path / "out").glob("*.tfrecord*"))


def test_voc_read_as_yolo_is_refused_and_names_the_format_the_files_have(tmp_path):
    annotations, images = voc_dataset(tmp_path, 4)
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\n")
    line = refused_line(convert("--annotations", annotations, "--images", images, "--output", tmp_path / "out",
                                "--classes", classes, fmt="yolo"))
    assert "no box was written, 0 annotation files were read (4 images would be negatives" in line
    assert line.endswith(f"hint: the files at {annotations} look like voc, not yolo: try --format voc")


def test_most_images_rejected_is_refused_unless_the_limit_says_otherwise(tmp_path):
    annotations, images = voc_dataset(tmp_path, 10)
    for index in range(6):
        (images / f"img{index}.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    line = refused_line(convert("--annotations", annotations, "--images", images, "--output", tmp_path / "out"))
    assert "6 of the 10 images the annotations name were rejected, more than --max_rejected 0.5" in line
    result = convert("--annotations", annotations, "--images", images, "--output", tmp_path / "out",
                     "--max_rejected", "1", check_exit=0)
    assert "Wrote 4 of 10 images" in result.stdout


def test_a_nightly_run_never_reads_an_empty_images_folder_or_mass_deletion_as_news(tmp_path):
    annotations, images = voc_dataset(tmp_path, 8)
    output = tmp_path / "out"
    nightly = ("--annotations", annotations, "--images", images, "--output", output, "--incremental", "--update_changed")
    convert(*nightly, check_exit=0)
    live = lambda: {name: value for name, value in digest(output).items() if not name.startswith(("runs/", ".refused/"))}
    published = live()

    moved = tmp_path / "unmounted"
    images.rename(moved)
    images.mkdir()  # the mount point is there, empty
    assert "8 of the 8 images the annotations name were rejected" in refused_line(convert(*nightly))
    assert live() == published
    images.rmdir()
    moved.rename(images)

    for index in range(5):  # most of the dataset gone from the sources at once
        (annotations / f"img{index}.xml").unlink()
        (images / f"img{index}.jpg").unlink()
    line = refused_line(convert(*nightly))
    assert "the run would delete 5 of the 8 published images, more than --max_deleted 0.1" in line
    assert live() == published
    assert json.loads(run_cli("verify", output, "--json", check_exit=0).stdout)["records"] == 8
    convert(*nightly, "--max_deleted", "1", check_exit=0)
    assert json.loads(run_cli("verify", output, "--json", check_exit=0).stdout)["records"] == 3


def test_one_output_folder_holds_one_dataset(tmp_path):
    annotations, images = voc_dataset(tmp_path, 4)
    output = tmp_path / "out"
    convert("--annotations", annotations, "--images", images, "--output", output, "--name", "first", check_exit=0)
    published = digest(output)
    result = convert("--annotations", annotations, "--images", images, "--output", output, "--name", "second",
                     check_exit=2)
    assert result.stderr.strip() == (
        f"error: --output {output} holds the dataset 'first', and one folder holds one dataset: choose another "
        "--output, or add --replace to replace 'first' with 'second'")
    assert digest(output) == published
    convert("--annotations", annotations, "--images", images, "--output", output, "--name", "second", "--replace",
            check_exit=0)
    assert sorted(path.name for path in output.glob("*.tfrecord-*")) == [
        "second-train.tfrecord-00000-of-00001", "second-val.tfrecord-00000-of-00001"]


def test_yolo_read_with_the_wrong_classes_file_is_refused_with_a_hint(tmp_path):
    from tests import image_factory as make

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for index in range(4):
        (images / f"img{index}.jpg").write_bytes(make.encode(make.gradient(64 + index, 48), "JPEG"))
        (labels / f"img{index}.txt").write_text("3 0.5 0.5 0.2 0.2\n")  # class 3: the file below declares one class
    (tmp_path / "classes.txt").write_text("cat\n")
    line = refused_line(convert("--annotations", labels, "--images", images, "--output", tmp_path / "out",
                                "--classes", tmp_path / "classes.txt", fmt="yolo"))
    assert "image_boxes_all_rejected 4" in line
    assert line.endswith("hint: most boxes name a class id that the source does not declare: check --classes (YOLO) "
                         "or the file's categories (COCO)")


def test_a_coco_file_name_that_repeats_the_images_folder_resolves_without_a_flag(tmp_path):
    from tests import image_factory as make

    images = tmp_path / "val2017"
    images.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    for index in range(3):
        (images / f"{index:012d}.jpg").write_bytes(make.encode(make.gradient(64 + index, 48), "JPEG"))
        coco["images"].append({"id": index + 1, "file_name": f"val2017/{index:012d}.jpg", "width": 64 + index, "height": 48})
        coco["annotations"].append({"id": index + 1, "image_id": index + 1, "category_id": 1, "bbox": [2, 2, 20, 20],
                                    "area": 400, "iscrowd": 0})
    (tmp_path / "instances_val2017.json").write_text(json.dumps(coco))
    result = convert("--annotations", tmp_path / "instances_val2017.json", "--images", images, "--output",
                     tmp_path / "out", "--splits", "val=1.0", fmt="coco", check_exit=0)
    assert "Wrote 3 of 3 images" in result.stdout
