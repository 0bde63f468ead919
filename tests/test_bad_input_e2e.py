"""End to end: a folder of broken files converts anyway, and every rejection is reported with its reason."""
from __future__ import annotations

import io
import json
import shutil

import pytest
from PIL import Image

from tests.conftest import read_examples, run_cli, shard_files

pytestmark = pytest.mark.slow

VOC = """<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>{objects}</annotation>"""
OBJECT = "<object><name>{label}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"
BOMB = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><annotation><filename>&lol3;</filename></annotation>"""
EXTERNAL = """<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation><filename>&x;</filename></annotation>"""


def _voc(name, w, h, *boxes, label="raccoon"):
    return VOC.format(name=name, w=w, h=h, objects="".join(OBJECT.format(*box, label=label) for box in boxes))


@pytest.fixture(scope="module")
def broken_run(raccoon, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    images, annotations, output = root / "images", root / "annotations", root / "out"
    images.mkdir()
    annotations.mkdir()
    good = (raccoon / "images" / "raccoon-1.jpg").read_bytes()  # 650 x 417
    (images / "a.jpg").write_bytes(good)
    (images / "b.jpg").write_bytes((raccoon / "images" / "raccoon-2.jpg").read_bytes())
    (images / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("not an image")
    (images / "orphan.jpg").write_bytes(good)
    png = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(png, format="PNG")
    (images / "png_named.jpg").write_bytes(png.getvalue())
    (images / "notes.txt").write_text("not an image file, not reported")
    (root / "secret.jpg").write_bytes(good)

    files = {
        # a: one good box, one partly outside (clipped), one inverted, one NaN, one with no area inside
        "a.xml": _voc("a.jpg", 650, 417, (10, 20, 100, 200), (600, 400, 700, 500), (50, 50, 10, 10),
                      ("nan", 1, 2, 3), (700, 10, 800, 20)),
        "b.xml": _voc("b.jpg", 1, 1, (1, 2, 3, 4)),  # wrong size in the annotation: the real size wins
        "dup.xml": _voc("b.jpg", 1, 1),
        "missing.xml": _voc("missing.jpg", 10, 10, (1, 1, 5, 5)),
        "outside.xml": _voc("../secret.jpg", 10, 10, (1, 1, 5, 5)),
        "truncated.xml": _voc("truncated.jpg", 650, 417, (1, 1, 5, 5)),
        "empty.xml": _voc("empty.jpg", 10, 10),
        "text.xml": _voc("text.jpg", 10, 10),
        "png_named.xml": _voc("png_named.jpg", 40, 30, (4, 3, 20, 15), label="zebra"),
        "malformed.xml": "<annotation><filename>a.jpg</filename>",
        "bomb.xml": BOMB,
        "external.xml": EXTERNAL,
    }
    for name, text in files.items():
        (annotations / name).write_text(text)
    result = run_cli("convert", "--annotations", annotations, "--images", images, "--output", output,
                     "--splits", "train=1.0", check_exit=0)
    rejected = [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]
    summary = json.loads((output / "summary.json").read_text())
    return output, annotations, images, rejected, summary, result


def test_every_broken_item_is_rejected_with_its_reason(broken_run):
    _, annotations, images, rejected, _, _ = broken_run
    outcome = sorted((r["source"].rsplit("/", 1)[-1], r["reason"], r["item"]) for r in rejected)
    assert outcome == sorted([
        ("a.xml", "box_empty", "box"),
        ("a.xml", "box_inverted", "box"),
        ("a.xml", "box_not_finite", "box"),
        ("bomb.xml", "xml_unsafe", "annotation"),
        ("dup.xml", "annotation_duplicate", "annotation"),
        ("empty.jpg", "image_empty", "image"),
        ("external.xml", "xml_unsafe", "annotation"),
        ("malformed.xml", "xml_malformed", "annotation"),
        ("missing.xml", "image_missing", "image"),
        ("orphan.jpg", "image_unannotated", "image"),
        ("outside.xml", "path_outside_images", "image"),
        ("text.jpg", "image_not_an_image", "image"),
        ("truncated.jpg", "image_truncated", "image"),
    ])
    assert all(r["detail"] and "\n" not in r["detail"] for r in rejected)
    assert rejected == sorted(rejected, key=lambda r: (r["source"], r["item"], r["reason"], r["detail"]))


def test_counts_add_up(broken_run):
    _, _, _, _, summary, result = broken_run
    assert summary["images_read"] == 9
    assert summary["images_written"] == 3
    assert summary["images_rejected"] == 6
    assert summary["images_read"] == summary["images_written"] + summary["images_rejected"]
    boxes = summary["boxes"]
    assert boxes["read"] == boxes["written"] + boxes["rejected"] + boxes["on_rejected_items"]
    assert summary["boxes"] == {"read": 10, "written": 4, "clipped": 1, "rejected": 3, "on_rejected_items": 3}
    assert summary["annotation_files_read"] == 12
    assert summary["annotation_size_mismatches"] == 1
    assert summary["rejections"]["xml_unsafe"] == 2
    assert "rejected.jsonl: 6 images, 3 boxes rejected" in result.stdout


def test_good_and_odd_images_are_written_correctly(broken_run):
    output, *_ = broken_run
    examples = {e["image/filename"][0].decode(): e for e in read_examples(shard_files(output))}
    assert sorted(examples) == ["a.jpg", "b.jpg", "png_named.jpg"]
    a = examples["a.jpg"]
    assert a["image/object/bbox/xmin"] == pytest.approx([10 / 650, 600 / 650], abs=1e-6)
    assert a["image/object/bbox/xmax"] == pytest.approx([100 / 650, 1.0], abs=1e-6)
    assert a["image/object/bbox/ymax"] == pytest.approx([200 / 417, 1.0], abs=1e-6)
    b = examples["b.jpg"]  # annotated as 1x1; the real size wins, the box is normalized by it
    assert (b["image/width"], b["image/height"]) != ([1], [1])
    assert b["image/object/bbox/xmax"] == pytest.approx([3 / b["image/width"][0]], abs=1e-6)
    png = examples["png_named.jpg"]
    assert png["image/format"] == [b"png"]  # from the bytes, not the .jpg name
    assert (png["image/width"], png["image/height"]) == ([40], [30])
    assert (output / "label_map.pbtxt").read_text().count("item {") == 2
    assert "secret" not in json.dumps(examples, default=str)
