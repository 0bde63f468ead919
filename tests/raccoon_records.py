"""One conversion of the raccoon set shared by the inspect, verify and TFDS tests (each module's fixture
calls this; the first converts, the others reuse the folder), so the suite pays for it once."""
from __future__ import annotations

from pathlib import Path

from conftest import run_cli

SPLITS = "train=0.7,val=0.2,test=0.1"
NUM_SHARDS = 2


def raccoon_records(raccoon: Path, tmp_path_factory) -> Path:
    """OUTPUT of `convert` on the 200 raccoon photos: three splits of two shards each, name `raccoon`."""
    output = tmp_path_factory.getbasetemp() / "raccoon-records"
    if not (output / "summary.json").exists():  # summary.json is published last: its presence means complete
        run_cli("convert", "--format", "voc", "--annotations", raccoon / "annotations", "--images", raccoon / "images",
                "--output", output, "--splits", SPLITS, "--num_shards", NUM_SHARDS, "--name", "raccoon", check_exit=0)
    return output
