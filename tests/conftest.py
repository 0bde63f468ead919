"""Shared fixtures: the real raccoon dataset, the real CLI, and TFRecords read back with TensorFlow."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RACCOON = SHARED / "datasets" / "raccoon"


@pytest.fixture(scope="session")
def raccoon() -> Path:
    """../shared/datasets/raccoon; its absence fails the test in CI and skips it elsewhere."""
    if not (RACCOON / "annotations").is_dir():
        message = f"{RACCOON} is missing: the end-to-end tests need ../shared beside the checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return RACCOON


def voc_boxes(xml_path: Path):
    """(filename, (width, height), [(label, xmin, ymin, xmax, ymax), ...]) read independently of the parser."""
    root = ElementTree.parse(xml_path).getroot()
    size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
    boxes = [
        (obj.findtext("name"), *(float(obj.findtext(f"bndbox/{c}")) for c in ("xmin", "ymin", "xmax", "ymax")))
        for obj in root.iter("object")
    ]
    return root.findtext("filename"), size, boxes


def run_cli(*args, cwd=REPO, check_exit=None) -> subprocess.CompletedProcess:
    """The real CLI in a new process, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    if check_exit is not None:
        assert result.returncode == check_exit, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def shard_files(output: Path, pattern: str = "*.tfrecord-*"):
    return sorted(glob.glob(str(output / pattern)))


def read_examples(files):
    """Every record of `files`, parsed by TensorFlow itself, as {key: python list}."""
    import tensorflow as tf

    examples = []
    for record in tf.data.TFRecordDataset(list(files)):
        example = tf.train.Example.FromString(record.numpy())
        parsed = {}
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            parsed[key] = list(getattr(feature, kind).value) if kind else []
        examples.append(parsed)
    return examples
