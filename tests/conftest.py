"""Shared fixtures: the real raccoon dataset, the real CLI, and TFRecords read back with TensorFlow; and
`--fast`, the edit-test cycle (`make test-fast`): no test marked slow, no test module that reads records
with TensorFlow, few hypothesis examples. `make test` runs everything."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RACCOON = SHARED / "datasets" / "raccoon"

# Property tests: 200 examples each in a full run; 15 in the edit-test cycle. Parsing a generated
# document can take longer than hypothesis's default deadline on a busy machine: no deadline.
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=15, deadline=None)
settings.load_profile("thorough")


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the edit-test cycle: no slow test, no TensorFlow, few hypothesis examples")


def pytest_configure(config):
    if config.getoption("--fast"):
        settings.load_profile("dev")
        config.option.markexpr = " and ".join(f"({expr})" for expr in (config.option.markexpr, "not slow") if expr)


def pytest_ignore_collect(collection_path, config):
    """In a fast run, a test module that loads TensorFlow (directly, or through read_examples) is not collected."""
    if config.getoption("--fast") and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        text = collection_path.read_text()
        return "tensorflow" in text or "read_examples" in text
    return None


def pytest_sessionfinish(session):
    if session.config.getoption("--fast") and "tensorflow" in sys.modules:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\n--fast loaded TensorFlow: mark the test that did slow, or keep TensorFlow out of it", file=sys.stderr)


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
