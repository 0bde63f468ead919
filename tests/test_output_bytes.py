"""The bytes a run publishes, pinned: the raccoon set read as VOC and as COCO must give the files whose
sha256 are checked in under tests/golden/. A refactor or a speed-up must not change them; a deliberate
change of output is made visible by regenerating the lists:

    OD_UPDATE_GOLDEN=1 python -m pytest tests/test_output_bytes.py

Only what depends on where and when the run happened is taken out: the run's durations, and the
paths of the temporary folder and of the raccoon set, which become ROOT and RACCOON.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli, voc_boxes

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).resolve().parent / "golden"


def _coco_json(raccoon: Path, target: Path) -> Path:
    """The raccoon boxes as one COCO instances file, ids in file name order."""
    images, annotations = [], []
    for image_id, xml in enumerate(sorted((raccoon / "annotations").glob("*.xml")), 1):
        file_name, (width, height), boxes = voc_boxes(xml)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for _, xmin, ymin, xmax, ymax in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "area": (xmax - xmin) * (ymax - ymin)})
    target.write_text(json.dumps({"images": images, "annotations": annotations,
                                  "categories": [{"id": 1, "name": "raccoon"}]}))
    return target


def _normalized(path: Path, root: Path, raccoon: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".tfrecord" or ".tfrecord-" in path.name:
        return data
    text = data.decode("utf-8").replace(str(root), "ROOT").replace(str(raccoon), "RACCOON")
    if path.suffix == ".json":
        record = json.loads(text)
        if isinstance(record, dict):
            record.pop("durations", None)
        return json.dumps(record, sort_keys=True).encode()
    return text.encode()


def _digests(output: Path, root: Path, raccoon: Path) -> str:
    lines = [f"{hashlib.sha256(_normalized(path, root, raccoon)).hexdigest()}  {path.relative_to(output)}"
             for path in sorted(output.rglob("*")) if path.is_file()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", ["raccoon-voc", "raccoon-coco"])
def test_published_bytes_match_the_checked_in_sha256(raccoon, tmp_path, case):
    output = tmp_path / "out"
    if case == "raccoon-voc":
        source = ["--format", "voc", "--annotations", raccoon / "annotations"]
    else:
        source = ["--annotations", _coco_json(raccoon, tmp_path / "instances.json")]
    run_cli("convert", *source, "--images", raccoon / "images", "--output", output, "--num_shards", "2", check_exit=0)
    got = _digests(output, tmp_path, raccoon)
    golden = GOLDEN / f"{case}.sha256"
    if os.environ.get("OD_UPDATE_GOLDEN"):
        golden.write_text(got)
    expected = golden.read_text()
    changed = sorted(set(got.splitlines()) ^ set(expected.splitlines()), key=lambda line: line.split("  ")[-1])
    assert got == expected, "published bytes differ from tests/golden/{}.sha256:\n{}".format(case, "\n".join(changed))
