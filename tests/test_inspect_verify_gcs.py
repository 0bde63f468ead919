"""inspect and verify on gs:// (a GCS-protocol server on 127.0.0.1): the same answers as on the local copy."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from gcs_emulator import running_emulator
from pipeline.cli import main
from raccoon_records import raccoon_records

pytestmark = pytest.mark.slow


def _cli(gcs, *args):
    env = gcs.env()
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_inspect_and_verify_read_a_gs_folder(raccoon, tmp_path_factory, tmp_path):
    local = raccoon_records(raccoon, tmp_path_factory)
    with running_emulator("od-inspect") as gcs:
        gcs.upload_tree(local, "out")
        verified = _cli(gcs, "verify", "gs://od-inspect/out", "--json")
        assert verified.returncode == 0, verified.stderr
        report = json.loads(verified.stdout)
        assert report["clean"] and report["records"] == 200 and report["label_map"] == "gs://od-inspect/out/label_map.pbtxt"

        inspected = _cli(gcs, "inspect", "gs://od-inspect/out", "--report", "gs://od-inspect/report", "--samples", "4")
        assert inspected.returncode == 0, inspected.stderr
        written = gcs.list("report/")
        assert {"report/index.html", "report/samples.json", "report/samples-train.png", "report/box_sizes.png"} <= set(written)
        page = gcs.download("report/index.html").decode()
        assert "<h2>summary.json</h2>" in page  # summary.json found beside the gs:// records
        remote_samples = json.loads(gcs.download("report/samples.json"))

    local_report = tmp_path / "report"
    assert main(["inspect", str(local), "--report", str(local_report), "--samples", "4"]) == 0
    assert remote_samples == json.loads((local_report / "samples.json").read_text())
