"""End to end: a folder with one file per case of the bad-input policy (docs/design.md section 5).

Each case is rejected with its reason or written with exactly the expected bytes, format and boxes;
the run exits 0 and its counts add up.
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from PIL import Image

from tests import image_factory as make
from tests.conftest import read_examples, run_cli, shard_files

pytestmark = pytest.mark.slow

VOC = "<annotation><filename>{name}</filename>{size}{objects}</annotation>"
OBJECT = "<object><name>{label}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"
BOMB = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><annotation><filename>&lol3;</filename></annotation>"""
EXTERNAL = """<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation><filename>&x;</filename></annotation>"""


def voc(name, size=None, *boxes, label="raccoon"):
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    return VOC.format(name=name, size=size_xml, objects="".join(OBJECT.format(*box, label=label) for box in boxes))


@pytest.fixture(scope="module")
def corpus(raccoon, tmp_path_factory):
    """{annotation file: text} and {image file: bytes}: one of each per case."""
    photo = (raccoon / "images" / "raccoon-1.jpg").read_bytes()  # 650 x 417
    second = (raccoon / "images" / "raccoon-2.jpg").read_bytes()
    gray = (raccoon / "images" / "raccoon-150.jpg").read_bytes()  # 275 x 183, grayscale
    rgb = Image.open(io.BytesIO(photo))
    images = {
        "a.jpg": photo,
        "a_copy.jpg": photo,
        "b.jpg": second,
        "truncated.jpg": photo[: len(photo) // 2],
        "truncated.png": make.encode(rgb, "PNG")[:5000],
        "empty.jpg": b"",
        "text.jpg": b"not an image",
        "orphan.jpg": second,
        "png_named.jpg": make.encode(rgb.resize((40, 30)), "PNG"),
        "cmyk.jpg": make.cmyk_jpeg(photo),
        "ycck.jpg": make.ycck_jpeg(photo),
        "gray.jpg": gray,
        "photo.bmp": make.encode(rgb, "BMP"),
        "photo.tif": make.encode(rgb, "TIFF"),
        "photo.webp": make.encode(rgb, "WEBP", quality=90),
        "anim.gif": make.animated_gif(),
        "rgba.png": make.encode(make.gradient(mode="RGBA"), "PNG"),
        "palette.png": make.encode(make.gradient(mode="P"), "PNG"),
        "sixteen.png": make.png16(64, 48),
        "rotated.jpg": make.jpeg_with_orientation(photo, 6),
        "rotated_raw.jpg": make.jpeg_with_orientation(photo, 6),
        "huge.png": make.png_claiming_size(30000, 30000),
        "badquant.jpg": make.jpeg_with_undefined_quantization_table(photo),
        "notes.txt": b"not an image file: not reported",
    }
    annotations = {
        # a: a good box, one partly outside (clipped), one inverted, one NaN, one infinite, one with no area inside
        "a.xml": voc("a.jpg", (650, 417), (10, 20, 100, 200), (600, 400, 700, 500), (50, 50, 10, 10),
                     ("nan", 1, 2, 3), (1, 1, "inf", 3), (700, 10, 800, 20)),
        "a_copy.xml": voc("a_copy.jpg", (650, 417), (10, 20, 100, 200)),
        "b.xml": voc("b.jpg", (1, 1), (1, 2, 3, 4)),  # the annotation's size is wrong: the real size wins
        "dup.xml": voc("b.jpg", (1, 1)),
        "missing.xml": voc("missing.jpg", (10, 10), (1, 1, 5, 5)),
        "outside.xml": voc("../secret.jpg", (10, 10), (1, 1, 5, 5)),
        "absolute.xml": voc("/etc/passwd", (10, 10)),
        "malformed.xml": "<annotation><filename>a.jpg</filename>",
        "bomb.xml": BOMB,
        "external.xml": EXTERNAL,
        "truncated.xml": voc("truncated.jpg", (650, 417), (1, 1, 5, 5)),
        "truncated_png.xml": voc("truncated.png"),
        "empty.xml": voc("empty.jpg", (10, 10)),
        "text.xml": voc("text.jpg", (10, 10)),
        "png_named.xml": voc("png_named.jpg", (40, 30), (4, 3, 20, 15), label="zebra"),
        "cmyk.xml": voc("cmyk.jpg", (650, 417), (10, 20, 100, 200)),
        "ycck.xml": voc("ycck.jpg", (650, 417), (10, 20, 100, 200)),
        "gray.xml": voc("gray.jpg", (275, 183), (10, 20, 100, 150)),
        "bmp.xml": voc("photo.bmp", (650, 417), (10, 20, 100, 200)),
        "tif.xml": voc("photo.tif", (650, 417), (10, 20, 100, 200)),
        "webp.xml": voc("photo.webp", (650, 417), (10, 20, 100, 200)),
        "gif.xml": voc("anim.gif", (64, 48), (1, 2, 30, 40)),
        "rgba.xml": voc("rgba.png", (64, 48), (1, 2, 30, 40)),
        "palette.xml": voc("palette.png", (64, 48), (1, 2, 30, 40)),
        "sixteen.xml": voc("sixteen.png", (64, 48), (1, 2, 30, 40)),
        # EXIF orientation 6: annotated on the upright photo (417 x 650), or on the raw pixels (650 x 417)
        "rotated.xml": voc("rotated.jpg", (417, 650), (10, 20, 100, 600)),
        "rotated_raw.xml": voc("rotated_raw.jpg", (650, 417), (10, 20, 600, 100)),
        "huge.xml": voc("huge.png", None, (1, 1, 5, 5)),
        "badquant.xml": voc("badquant.jpg", (650, 417), (10, 20, 100, 200)),
    }
    root = tmp_path_factory.mktemp("corpus")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    for name, data in images.items():
        (root / "images" / name).write_bytes(data)
    for name, text in annotations.items():
        (root / "annotations" / name).write_text(text)
    (root / "secret.jpg").write_bytes(photo)
    # Named pipes would block a reader forever: they must be refused, not read.
    os.mkfifo(root / "images" / "pipe.jpg")
    (root / "annotations" / "pipe_image.xml").write_text(voc("pipe.jpg", (10, 10), (1, 1, 5, 5)))
    os.mkfifo(root / "annotations" / "pipe.xml")
    return root, images


def _convert(corpus, tmp_path_factory, *flags):
    root, images = corpus
    output = tmp_path_factory.mktemp("out")
    result = run_cli("convert", "--annotations", root / "annotations", "--images", root / "images",
                     "--output", output, "--splits", "train=1.0", *flags, check_exit=0)
    rejected = [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]
    summary = json.loads((output / "summary.json").read_text())
    examples = {e["image/filename"][0].decode(): e for e in read_examples(shard_files(output))}
    return {"rejected": rejected, "summary": summary, "examples": examples, "stdout": result.stdout, "output": output}


@pytest.fixture(scope="module")
def default_run(corpus, tmp_path_factory):
    return _convert(corpus, tmp_path_factory)


@pytest.fixture(scope="module")
def strict_run(corpus, tmp_path_factory):
    return _convert(corpus, tmp_path_factory, "--validate_images", "full", "--drop_duplicates",
                    "--exif_orientation", "ignore")


def _outcomes(run):
    return sorted((r["source"].rsplit("/", 1)[-1], r["reason"], r["item"]) for r in run["rejected"])


EXPECTED_REJECTIONS = [
    ("a.xml", "box_empty", "box"),
    ("a.xml", "box_inverted", "box"),
    ("a.xml", "box_not_finite", "box"),
    ("a.xml", "box_not_finite", "box"),
    ("absolute.xml", "path_outside_images", "image"),
    ("bomb.xml", "xml_unsafe", "annotation"),
    ("dup.xml", "annotation_duplicate", "annotation"),
    ("empty.jpg", "image_empty", "image"),
    ("external.xml", "xml_unsafe", "annotation"),
    ("huge.png", "image_too_large", "image"),
    ("malformed.xml", "xml_malformed", "annotation"),
    ("missing.xml", "image_missing", "image"),
    ("orphan.jpg", "image_unannotated", "image"),
    ("pipe.jpg", "image_unreadable", "image"),
    ("pipe.xml", "annotation_unreadable", "annotation"),
    ("outside.xml", "path_outside_images", "image"),
    ("text.jpg", "image_not_an_image", "image"),
    ("truncated.jpg", "image_truncated", "image"),
    ("truncated.png", "image_truncated", "image"),
]
WRITTEN_UNCHANGED = ["a.jpg", "a_copy.jpg", "b.jpg", "png_named.jpg", "cmyk.jpg", "ycck.jpg", "gray.jpg", "rgba.png",
                     "palette.png", "sixteen.png", "rotated_raw.jpg", "badquant.jpg"]
CONVERTED = {"photo.bmp": "jpeg", "photo.tif": "jpeg", "photo.webp": "jpeg", "anim.gif": "jpeg", "rotated.jpg": "jpeg"}


def test_every_broken_item_is_rejected_with_its_reason(default_run):
    assert _outcomes(default_run) == sorted(EXPECTED_REJECTIONS)
    rejected = default_run["rejected"]
    assert all(r["detail"] and "\n" not in r["detail"] for r in rejected)
    assert rejected == sorted(rejected, key=lambda r: (r["source"], r["item"], r["reason"], r["detail"]))
    assert "secret" not in json.dumps(default_run["examples"], default=str)


def test_odd_but_valid_images_are_written_unchanged_or_converted_once(corpus, default_run):
    _, images = corpus
    examples = default_run["examples"]
    assert sorted(examples) == sorted(WRITTEN_UNCHANGED + list(CONVERTED))
    for name in WRITTEN_UNCHANGED:
        assert examples[name]["image/encoded"] == [images[name]], name
        expected_format = Image.open(io.BytesIO(images[name])).format.lower()
        assert examples[name]["image/format"] == [expected_format.encode()], name
    for name, fmt in CONVERTED.items():
        encoded = examples[name]["image/encoded"][0]
        assert encoded != images[name] and examples[name]["image/format"] == [fmt.encode()], name
        decoded = Image.open(io.BytesIO(encoded))
        assert decoded.format.lower() == fmt
        assert [examples[name]["image/width"][0], examples[name]["image/height"][0]] == list(decoded.size)
        assert examples[name]["image/key/sha256"] == [hashlib.sha256(encoded).hexdigest().encode()]
    conversions = default_run["summary"]["conversions"]
    assert conversions == {"bmp_to_jpeg": 1, "exif_rotated": 1, "gif_to_jpeg": 1, "tiff_to_jpeg": 1, "webp_to_jpeg": 1}
    assert default_run["summary"]["exif_orientation"] == {"applied": 1, "kept_raw": 1}


def test_boxes_are_clipped_normalized_and_follow_the_real_size(default_run):
    examples = default_run["examples"]
    a = examples["a.jpg"]
    assert a["image/object/bbox/xmin"] == pytest.approx([10 / 650, 600 / 650], abs=1e-6)
    assert a["image/object/bbox/xmax"] == pytest.approx([100 / 650, 1.0], abs=1e-6)
    assert a["image/object/bbox/ymax"] == pytest.approx([200 / 417, 1.0], abs=1e-6)
    b = examples["b.jpg"]  # annotated as 1x1: the real size wins and normalizes the box
    width = b["image/width"][0]
    assert width > 1 and b["image/object/bbox/xmax"] == pytest.approx([3 / width], abs=1e-6)
    rotated, raw = examples["rotated.jpg"], examples["rotated_raw.jpg"]
    assert (rotated["image/width"], rotated["image/height"]) == ([417], [650])  # upright, as annotated
    assert rotated["image/object/bbox/ymax"] == pytest.approx([600 / 650], abs=1e-6)
    assert (raw["image/width"], raw["image/height"]) == ([650], [417])  # annotated on the raw pixels
    assert raw["image/object/bbox/xmax"] == pytest.approx([600 / 650], abs=1e-6)
    assert examples["png_named.jpg"]["image/object/class/text"] == [b"zebra"]


def test_counts_add_up(default_run):
    summary = default_run["summary"]
    assert summary["images_read"] == summary["images_written"] + summary["images_rejected"]
    assert (summary["images_written"], summary["images_rejected"]) == (17, 10)
    boxes = summary["boxes"]
    assert boxes["read"] == boxes["written"] + boxes["rejected"] + boxes["on_rejected_items"]
    assert (boxes["clipped"], boxes["rejected"], boxes["on_rejected_items"]) == (1, 4, 5)
    assert summary["annotation_size_mismatches"] == 1  # b.jpg; the rotated ones are a 90 degree turn
    assert summary["annotation_files_read"] == 31
    # photo.bmp and photo.tif hold the same pixels, so they convert to the same JPEG bytes
    assert summary["duplicates"]["examples"] == [["a.jpg", "a_copy.jpg"], ["photo.bmp", "photo.tif"]]
    assert summary["rejections"]["xml_unsafe"] == 2
    assert "rejected.jsonl: 10 images (with 5 boxes), 4 boxes rejected" in default_run["stdout"]


def test_full_validation_duplicate_dropping_and_ignored_orientation(corpus, strict_run):
    _, images = corpus
    extra = {
        ("badquant.jpg", "image_corrupt", "image"),
        ("a_copy.xml", "image_duplicate", "image"),
        ("tif.xml", "image_duplicate", "image"),  # converts to the very bytes of photo.bmp
        ("rotated_raw.xml", "image_duplicate", "image"),  # same file as rotated.jpg, neither rotated now
    }
    assert set(_outcomes(strict_run)) == set(EXPECTED_REJECTIONS) | extra
    examples = strict_run["examples"]
    assert not {"badquant.jpg", "a_copy.jpg", "photo.tif", "rotated_raw.jpg"} & set(examples)
    assert examples["rotated.jpg"]["image/encoded"] == [images["rotated.jpg"]]  # --exif_orientation ignore
    summary = strict_run["summary"]
    assert summary["duplicates"]["dropped"] == 3 and summary["duplicates"]["groups"] == 0
    assert summary["images_read"] == summary["images_written"] + summary["images_rejected"]
