"""End to end: the real CLI on real photos, every record read back with TensorFlow and compared."""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import read_examples, run_cli, shard_files, voc_boxes

pytestmark = pytest.mark.slow

F32 = 1e-6  # boxes are stored as float32


def _assert_boxes_match(example, expected_boxes, width, height, label_ids):
    assert [b.decode() for b in example["image/object/class/text"]] == [box[0] for box in expected_boxes]
    assert example["image/object/class/label"] == [label_ids[box[0]] for box in expected_boxes]
    for key, index, scale in (("xmin", 1, width), ("ymin", 2, height), ("xmax", 3, width), ("ymax", 4, height)):
        stored = example[f"image/object/bbox/{key}"]
        assert stored == pytest.approx([box[index] / scale for box in expected_boxes], abs=F32)


@pytest.fixture(scope="module")
def voc_run(raccoon, tmp_path_factory):
    output = tmp_path_factory.mktemp("voc") / "out"
    result = run_cli(
        "convert", "--format", "voc", "--annotations", raccoon / "annotations", "--images", raccoon / "images",
        "--output", output, "--splits", "train=0.8,val=0.2", "--seed", "7", "--name", "raccoon",
        check_exit=0,
    )
    return output, result


def test_voc_records_equal_the_source_annotations(raccoon, voc_run):
    output, _ = voc_run
    examples = read_examples(shard_files(output))
    assert len(examples) == 200
    by_name = {e["image/filename"][0].decode(): e for e in examples}
    assert len(by_name) == 200
    for xml_path in sorted((raccoon / "annotations").glob("*.xml")):
        filename, _, boxes = voc_boxes(xml_path)
        example = by_name[filename]
        image_bytes = (raccoon / "images" / filename).read_bytes()
        width, height = Image.open(raccoon / "images" / filename).size
        assert example["image/encoded"] == [image_bytes]  # passed through, never re-encoded
        assert example["image/format"] == [b"jpeg"]
        assert example["image/width"] == [width] and example["image/height"] == [height]
        assert example["image/source_id"] == [filename.encode()]
        assert example["image/key/sha256"] == [hashlib.sha256(image_bytes).hexdigest().encode()]
        objects = list(ElementTree.parse(xml_path).getroot().iter("object"))
        assert example["image/object/difficult"] == [int(o.findtext("difficult")) for o in objects]
        assert example["image/object/truncated"] == [int(o.findtext("truncated")) for o in objects]
        _assert_boxes_match(example, boxes, width, height, {"raccoon": 1})


def test_voc_output_layout_summary_and_report(voc_run):
    output, result = voc_run
    names = sorted(path.name for path in output.iterdir())
    assert names == [
        "README.md",
        "dataset_info.json",
        "features.json",
        "label_map.pbtxt",
        "manifest.json",
        "raccoon-train.tfrecord-00000-of-00001",
        "raccoon-val.tfrecord-00000-of-00001",
        "rejected.jsonl",
        "summary.json",
    ]  # and no staging folder left behind
    assert (output / "label_map.pbtxt").read_text() == "item {\n  id: 1\n  name: 'raccoon'\n}\n"
    summary = json.loads((output / "summary.json").read_text())
    assert summary["images_read"] == summary["images_written"] + summary["images_rejected"] == 200
    assert summary["boxes"] == {"read": 217, "written": 217, "clipped": 0, "rejected": 0, "on_rejected_items": 0, "dropped_by_class_map": 0,
                              "dropped_difficult": 0}
    assert summary["splits"]["train"]["images"] + summary["splits"]["val"]["images"] == 200
    assert 0.7 < summary["splits"]["train"]["images"] / 200 < 0.9
    assert summary["classes"] == [{"id": 1, "name": "raccoon", "boxes": 217}]
    assert summary["duplicates"]["groups"] == 4
    assert summary["config"]["seed"] == 7 and summary["config"]["name"] == "raccoon"
    assert (output / "rejected.jsonl").read_text() == ""
    assert f"to {output}" in result.stdout and "raccoon-train.tfrecord-*" in result.stdout


def test_byte_identical_images_share_a_split(voc_run):
    output, _ = voc_run
    split_of = {}
    for path in shard_files(output):
        split = Path(path).name.split("-")[1].split(".")[0]
        for example in read_examples([path]):
            split_of[example["image/filename"][0].decode()] = split
    pairs = [("raccoon-65.jpg", "raccoon-98.jpg"), ("raccoon-83.jpg", "raccoon-120.jpg"),
             ("raccoon-11.jpg", "raccoon-116.jpg"), ("raccoon-74.jpg", "raccoon-52.jpg")]
    for first, second in pairs:
        assert split_of[first] == split_of[second]


def _coco_from_voc(raccoon: Path, path: Path) -> dict:
    """The raccoon boxes as COCO JSON, with a second class whose id is not its place by name."""
    images, annotations = [], []
    for image_id, xml_path in enumerate(sorted((raccoon / "annotations").glob("*.xml")), start=100):
        filename, (width, height), boxes = voc_boxes(xml_path)
        images.append({"id": image_id, "file_name": filename, "width": width, "height": height})
        for label, xmin, ymin, xmax, ymax in boxes:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 3 if image_id % 2 else 8,
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "area": (xmax - xmin) * (ymax - ymin),
                "iscrowd": 0,
            })
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": 3, "name": "raccoon"}, {"id": 8, "name": "animal"}]}
    path.write_text(json.dumps(document))
    return document


def test_coco_records_equal_the_source_annotations(raccoon, tmp_path):
    document = _coco_from_voc(raccoon, tmp_path / "instances.json")
    output = tmp_path / "out"
    run_cli("convert", "--annotations", tmp_path / "instances.json", "--images", raccoon / "images",
            "--output", output, "--num_shards", "3", check_exit=0)  # --format omitted: detected
    assert (output / "label_map.pbtxt").read_text() == (  # COCO's category ids, not 1..N by name
        "item {\n  id: 3\n  name: 'raccoon'\n}\nitem {\n  id: 8\n  name: 'animal'\n}\n"
    )
    assert len(shard_files(output, "dataset-train.tfrecord-*-of-00003")) == 3
    examples = {e["image/source_id"][0].decode(): e for e in read_examples(shard_files(output))}
    assert len(examples) == 200
    names = {3: "raccoon", 8: "animal"}
    for image in document["images"]:
        example = examples[str(image["id"])]
        boxes = [
            (names[a["category_id"]], a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
            for a in document["annotations"] if a["image_id"] == image["id"]
        ]
        assert example["image/filename"] == [image["file_name"].encode()]
        _assert_boxes_match(example, boxes, image["width"], image["height"], {"animal": 8, "raccoon": 3})
        assert example["image/object/area"] == pytest.approx(
            [a["area"] for a in document["annotations"] if a["image_id"] == image["id"]], rel=1e-6)
        assert example["image/object/is_crowd"] == [0] * len(boxes)
        assert "image/object/difficult" not in example


def test_same_inputs_give_byte_identical_output_across_processes(raccoon, tmp_path):
    """One process, Beam's worker processes, and our forked ones: the same bytes, summary and rejections."""
    args = ["convert", "--format", "voc", "--annotations", raccoon / "annotations", "--images", raccoon / "images",
            "--num_shards", "2", "--seed", "3"]
    run_cli(*args, "--output", tmp_path / "a", "--local_processes", "1", check_exit=0)
    run_cli(*args, "--output", tmp_path / "b", "--direct_running_mode", "multi_processing", check_exit=0)
    run_cli(*args, "--output", tmp_path / "c", "--local_processes", "2", check_exit=0)
    files_a = [Path(p).name for p in shard_files(tmp_path / "a")] + ["label_map.pbtxt", "rejected.jsonl"]
    assert len(files_a) == 8  # 3 splits x 2 shards + label map + rejections
    for other in ("b", "c"):
        assert [Path(p).name for p in shard_files(tmp_path / other)] == files_a[:6]
        for name in files_a:
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / other / name).read_bytes(), (other, name)
        summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("a", other)]
        for summary in summaries:
            summary.pop("durations")
            summary.pop("config")
        assert summaries[0] == summaries[1]


def test_changing_num_shards_moves_no_image_to_another_split(raccoon, tmp_path):
    def splits_by_image(output):
        result = {}
        for path in shard_files(output):
            split = Path(path).name.split("-")[1].split(".")[0]
            result.update({e["image/filename"][0]: split for e in read_examples([path])})
        return result

    common = ["convert", "--annotations", raccoon / "annotations", "--images", raccoon / "images"]
    run_cli(*common, "--output", tmp_path / "one", "--num_shards", "1", check_exit=0)
    run_cli(*common, "--output", tmp_path / "five", "--num_shards", "5", check_exit=0)
    assert len(shard_files(tmp_path / "five")) == 15
    assert splits_by_image(tmp_path / "one") == splits_by_image(tmp_path / "five")


def test_label_map_seed_keeps_its_ids(raccoon, tmp_path):
    seed = tmp_path / "seed.pbtxt"
    seed.write_text("item { id: 4 name: 'raccoon' }\nitem { id: 1 name: 'zebra' }\n")
    output = tmp_path / "out"
    run_cli("convert", "--annotations", raccoon / "annotations", "--images", raccoon / "images",
            "--output", output, "--label_map", seed, check_exit=0)
    assert (output / "label_map.pbtxt").read_text() == (
        "item {\n  id: 1\n  name: 'zebra'\n}\nitem {\n  id: 4\n  name: 'raccoon'\n}\n"
    )
    labels = {label for e in read_examples(shard_files(output)) for label in e["image/object/class/label"]}
    assert labels == {4}


def test_config_file_with_flag_overrides_and_beam_options(raccoon, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"annotations: {raccoon / 'annotations'}\nimages: {raccoon / 'images'}\noutput: {tmp_path / 'out'}\n"
        "name: from_config\nseed: 1\nsplits: train=0.5,val=0.5\n"
        "runner: DirectRunner\ndirect_running_mode: in_memory\ndirect_num_workers: 1\n"
    )
    run_cli("convert", "--config", config, "--seed", "2", check_exit=0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["name"] == "from_config"
    assert summary["config"]["seed"] == 2  # the flag wins over the file
    assert set(summary["splits"]) == {"train", "val"}
    assert len(shard_files(tmp_path / "out", "from_config-*")) == 2


def test_rerun_replaces_the_previous_dataset(raccoon, tmp_path):
    common = ["convert", "--annotations", raccoon / "annotations", "--images", raccoon / "images", "--output", tmp_path]
    run_cli(*common, "--num_shards", "3", check_exit=0)
    run_cli(*common, "--num_shards", "1", check_exit=0)
    assert [Path(p).name for p in shard_files(tmp_path)] == [
        "dataset-test.tfrecord-00000-of-00001",
        "dataset-train.tfrecord-00000-of-00001",
        "dataset-val.tfrecord-00000-of-00001",
    ]
    assert len(read_examples(shard_files(tmp_path))) == 200
