"""With splits the source defines, byte-identical images in two splits are a leak: counted, named, droppable."""
from __future__ import annotations

import json

import pytest

from tests import image_factory as make
from tests.conftest import read_examples, run_cli
from tests.small_datasets import VOC

pytestmark = pytest.mark.slow


def _dataset(root):
    """VOC with images in train/, val/ and test/ folders; one picture is in all three."""
    images, annotations = root / "images", root / "annotations"
    pictures = {name: make.encode(make.gradient(64 + index, 48), "JPEG") for index, name in enumerate("abcd")}
    layout = {"train": {"a": "a", "b": "b"}, "val": {"a_copy": "a", "c": "c"}, "test": {"a_again": "a", "d": "d"}}
    for split, files in layout.items():
        (images / split).mkdir(parents=True)
        (annotations / split).mkdir(parents=True)
        for name, picture in files.items():
            (images / split / f"{name}.jpg").write_bytes(pictures[picture])
            (annotations / split / f"{name}.xml").write_text(VOC.format(name=f"{split}/{name}.jpg", label="cat"))
    return annotations, images


def test_copies_in_two_splits_are_counted_named_and_dropped_from_all_but_train(tmp_path):
    annotations, images = _dataset(tmp_path)
    common = ("convert", "--format", "voc", "--annotations", annotations, "--images", images, "--splits", "source")
    result = run_cli(*common, "--output", tmp_path / "out", check_exit=0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    leak = ["test/a_again.jpg", "train/a.jpg", "val/a_copy.jpg"]
    assert summary["duplicates_across_splits"] == {"groups": 1, "images": 3, "examples": [leak]}
    assert f"1 groups in more than one split: an evaluation leak, e.g. {', '.join(leak)}" in result.stdout
    assert "add --drop_duplicates" in result.stdout
    verified = json.loads(run_cli("verify", tmp_path / "out", "--json").stdout)
    assert verified["problems"]["image_duplicate_across_splits"]["count"] == 1  # convert and verify agree

    run_cli(*common, "--output", tmp_path / "dropped", "--drop_duplicates", check_exit=0)
    summary = json.loads((tmp_path / "dropped" / "summary.json").read_text())
    assert summary["duplicates"]["dropped"] == 2 and summary["duplicates_across_splits"]["groups"] == 0
    names = {split: sorted(example["image/filename"][0].decode() for example in read_examples(
        sorted((tmp_path / "dropped").glob(f"dataset-{split}.tfrecord-*")))) for split in ("train", "val", "test")}
    assert names == {"train": ["train/a.jpg", "train/b.jpg"], "val": ["val/c.jpg"], "test": ["test/d.jpg"]}
    run_cli("verify", tmp_path / "dropped", check_exit=0)
