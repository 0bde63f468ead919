"""End to end on gs://: the real CLI against a GCS-protocol server on 127.0.0.1, started by the test.

The bundled raccoon sample (22 photos, VOC) and a small YOLO export are uploaded; every path flag is
a gs:// path (--config, --annotations, --images, --output, --label_map, --classes); the CLI runs in
its own process with an empty working folder and TMPDIR, and the output is downloaded and every record
read back with TensorFlow and compared with the source, and with a local run of the same settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests import image_factory as make
from tests.conftest import REPO, read_examples, run_cli, shard_files, voc_boxes
from tests.gcs_emulator import running_emulator

pytestmark = pytest.mark.slow

SAMPLE = REPO / "sample_data" / "raccoon"
BUCKET = "od-test"
F32 = 1e-6
# Before the fix this run took ~30 s on an idle 2-core machine, ~20 s of it Beam retrying
# google.auth.default() with backoff; now ~5 s. The limit is loose (a loaded machine is slower); the
# stderr check in the test is the exact one.
MAX_SECONDS = 40


@pytest.fixture(scope="module")
def gcs():
    with running_emulator(BUCKET) as emulator:
        yield emulator


def _run_cli_on_gcs(gcs, tmp_path, *args):
    """The real CLI in an empty folder with an empty TMPDIR, talking only to the emulator."""
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    env = {**gcs.env(), "TMPDIR": str(temp)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    leftovers = [p for p in list(work.rglob("*")) + list(temp.rglob("*")) if p.is_file()]
    assert not leftovers, f"the gs:// run wrote local files: {leftovers[:5]}"
    return result, seconds


def _download(gcs, prefix: str, folder: Path):
    names = gcs.list(prefix + "/")
    for name in names:
        target = folder / name[len(prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gcs.download(name))
    return [name[len(prefix) + 1:] for name in names]


@pytest.fixture(scope="module")
def voc_on_gcs(gcs, tmp_path_factory):
    gcs.upload_tree(SAMPLE / "annotations", "raccoon/annotations")
    gcs.upload_tree(SAMPLE / "images", "raccoon/images")
    gcs.upload_bytes("seed/label_map.pbtxt", b"item {\n  id: 5\n  name: 'raccoon'\n}\n")
    config = (
        "format: voc\n"
        f"annotations: gs://{BUCKET}/raccoon/annotations\n"
        f"images: gs://{BUCKET}/raccoon/images\n"
        "splits: train=0.8,val=0.1,test=0.1\nseed: 3\nname: raccoon\n"
    )
    gcs.upload_bytes("configs/run.yaml", config.encode())
    # Something to replace: a previous dataset of the same name with more shards.
    gcs.upload_bytes("out/raccoon-train.tfrecord-00007-of-00009", b"stale")
    tmp = tmp_path_factory.mktemp("gcs_voc")
    result, seconds = _run_cli_on_gcs(
        gcs, tmp, "convert", "--config", f"gs://{BUCKET}/configs/run.yaml",
        "--output", f"gs://{BUCKET}/out", "--label_map", f"gs://{BUCKET}/seed/label_map.pbtxt",
    )
    downloaded = tmp / "downloaded"
    names = _download(gcs, "out", downloaded)
    return result, seconds, downloaded, names


def test_gcs_to_gcs_records_equal_the_source(voc_on_gcs):
    _, _, output, names = voc_on_gcs
    assert {
        "label_map.pbtxt", "raccoon-test.tfrecord-00000-of-00001", "raccoon-train.tfrecord-00000-of-00001",
        "raccoon-val.tfrecord-00000-of-00001", "rejected.jsonl", "summary.json",
    } <= set(names)
    assert sorted(name for name in names if ".tfrecord-" in name) == [
        "raccoon-test.tfrecord-00000-of-00001", "raccoon-train.tfrecord-00000-of-00001",
        "raccoon-val.tfrecord-00000-of-00001",
    ]  # the stale shard of the previous dataset is gone
    assert not [name for name in names if name.startswith(".staging")]  # nothing staged is left behind
    examples = read_examples(shard_files(output))
    by_name = {example["image/filename"][0].decode(): example for example in examples}
    assert len(examples) == len(by_name) == 22
    for xml_path in sorted((SAMPLE / "annotations").glob("*.xml")):
        filename, _, boxes = voc_boxes(xml_path)
        example = by_name[filename]
        image_bytes = (SAMPLE / "images" / filename).read_bytes()
        width, height = Image.open(SAMPLE / "images" / filename).size
        assert example["image/encoded"] == [image_bytes]
        assert example["image/key/sha256"] == [hashlib.sha256(image_bytes).hexdigest().encode()]
        assert example["image/width"] == [width] and example["image/height"] == [height]
        assert [text.decode() for text in example["image/object/class/text"]] == [box[0] for box in boxes]
        assert example["image/object/class/label"] == [5] * len(boxes)  # the --label_map id is kept
        for key, index, scale in (("xmin", 1, width), ("ymin", 2, height), ("xmax", 3, width), ("ymax", 4, height)):
            assert example[f"image/object/bbox/{key}"] == pytest.approx([box[index] / scale for box in boxes], abs=F32)
    assert "id: 5" in (output / "label_map.pbtxt").read_text()


def test_gcs_summary_and_report(voc_on_gcs):
    result, _, output, _ = voc_on_gcs
    summary = json.loads((output / "summary.json").read_text())
    assert summary["images_read"] == summary["images_written"] == 22
    assert summary["config"]["output"] == f"gs://{BUCKET}/out"
    assert summary["config"]["seed"] == 3  # from the gs:// --config
    assert f"Wrote 22 of 22 images (23 boxes) to gs://{BUCKET}/out" in result.stdout


def test_gcs_run_is_fast_and_never_looks_for_credentials(voc_on_gcs):
    result, seconds, _, _ = voc_on_gcs
    assert "_get_credentials_with_retrys" not in result.stderr
    assert "Retry with exponential backoff" not in result.stderr
    assert seconds < MAX_SECONDS, f"a 22-image gs:// run took {seconds:.1f} s"


def test_gcs_output_is_byte_identical_to_a_local_run(voc_on_gcs, tmp_path):
    _, _, gcs_output, _ = voc_on_gcs
    label_map = tmp_path / "seed.pbtxt"
    label_map.write_text("item {\n  id: 5\n  name: 'raccoon'\n}\n")
    local = tmp_path / "local"
    run_cli("convert", "--format", "voc", "--annotations", SAMPLE / "annotations", "--images", SAMPLE / "images",
            "--splits", "train=0.8,val=0.1,test=0.1", "--seed", "3", "--name", "raccoon",
            "--label_map", label_map, "--output", local, check_exit=0)
    for path in shard_files(local) + [str(local / "label_map.pbtxt"), str(local / "rejected.jsonl")]:
        name = os.path.basename(path)
        assert (gcs_output / name).read_bytes() == Path(path).read_bytes(), name


def test_yolo_with_gcs_classes_file(gcs, tmp_path):
    """--classes on gs://, and YOLO labels matched to images by stem on gs://."""
    photo = (SAMPLE / "images" / "raccoon-1.jpg").read_bytes()
    images = {"a.jpg": photo, "b.png": make.encode(make.gradient(64, 48), "PNG")}
    gcs.upload_bytes("yolo/images/a.jpg", images["a.jpg"])
    gcs.upload_bytes("yolo/images/b.png", images["b.png"])
    gcs.upload_bytes("yolo/labels/a.txt", b"1 0.5 0.5 0.25 0.5\n")
    gcs.upload_bytes("yolo/labels/b.txt", b"0 0.25 0.25 0.5 0.5\n")
    gcs.upload_bytes("meta/names.txt", b"cat\ndog\n")
    _run_cli_on_gcs(
        gcs, tmp_path, "convert", "--format", "yolo", "--annotations", f"gs://{BUCKET}/yolo/labels",
        "--images", f"gs://{BUCKET}/yolo/images", "--classes", f"gs://{BUCKET}/meta/names.txt",
        "--splits", "train=1", "--output", f"gs://{BUCKET}/yolo_out",
    )
    downloaded = tmp_path / "downloaded"
    _download(gcs, "yolo_out", downloaded)
    by_name = {e["image/filename"][0].decode(): e for e in read_examples(shard_files(downloaded))}
    assert sorted(by_name) == ["a.jpg", "b.png"]
    assert by_name["a.jpg"]["image/encoded"] == [images["a.jpg"]]
    assert by_name["a.jpg"]["image/object/class/text"] == [b"dog"]
    assert by_name["b.png"]["image/object/class/text"] == [b"cat"]
    assert by_name["b.png"]["image/format"] == [b"png"]
    assert by_name["b.png"]["image/object/bbox/xmin"] == pytest.approx([0.0], abs=F32)
    assert by_name["b.png"]["image/object/bbox/xmax"] == pytest.approx([0.5], abs=F32)


def test_missing_gcs_paths_are_one_line_usage_errors(gcs, tmp_path):
    env = gcs.env()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", "--annotations", f"gs://{BUCKET}/nothing/here",
         "--images", f"gs://{BUCKET}/raccoon/images", "--output", f"gs://{BUCKET}/x"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --annotations gs://od-test/nothing/here")
