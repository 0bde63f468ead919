"""run_dataflow.sh: the offline dry run builds the whole Dataflow job graph; bad settings are one line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import effective_setting
from tests.conftest import REPO

SCRIPT = REPO / "run_dataflow.sh"
SAMPLE = REPO / "sample_data" / "raccoon"
FILLED = [
    "--project", "my-project-123", "--temp_location", "gs://od-bucket-temp/dataflow/temp",
    "--staging_location", "gs://od-bucket-temp/dataflow/staging", "--output", "gs://od-bucket-data/out",
]


def _offline_env(tmp_path: Path, path: str = None) -> dict:
    """No credentials, no gcloud config, no metadata server: what CI has."""
    env = {key: value for key, value in os.environ.items() if key != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(
        NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9",
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), PYTHON=sys.executable, PYTHONPATH=str(REPO),
        HOME=str(tmp_path),
    )
    if path is not None:
        env["PATH"] = path
    return env


def _run(tmp_path, *args, path=None):
    return subprocess.run([shutil.which("bash"), str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=_offline_env(tmp_path, path), timeout=300)


def test_effective_setting_flags_override_the_config():
    config = {"region": "europe-west1", "project": "a"}
    assert effective_setting(config, [], "region") == "europe-west1"
    assert effective_setting(config, ["--region", "us-east1"], "region") == "us-east1"
    assert effective_setting(config, ["--region=us-east1", "--region=asia-east1"], "region") == "asia-east1"
    assert effective_setting(config, ["--temp-location", "gs://x/t"], "temp_location") == "gs://x/t"
    assert effective_setting(config, ["--regionx", "z"], "region") == "europe-west1"
    assert effective_setting({}, [], "project") is None


@pytest.mark.slow
def test_dry_run_builds_the_whole_job_graph_offline(tmp_path):
    result = _run(tmp_path, "--dry-run", "--config", "configs/dataflow.yaml", *FILLED,
                  "--annotations", SAMPLE / "annotations", "--images", SAMPLE / "images")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("Dataflow job graph (dry run, nothing launched): ")
    steps = [line.strip() for line in out.splitlines() if line.startswith("  ") and not line.startswith("    ")]
    for step in ("Source/ParseAnnotations", "Source/ListImages", "Source/ShardImages", "LabelMap", "CountShards",
                 "WriteShards", "FindDuplicates", "AllTallies", "Publish"):
        assert step in steps, out
    assert "    WriteShards/GroupByShard" in out
    assert "output gs://od-bucket-data/out" in out
    assert "Retry with exponential backoff" not in result.stderr  # no credential hunt
    assert "storage.googleapis.com" not in result.stderr


@pytest.mark.slow
def test_an_incremental_dry_run_touches_nothing_in_the_output(tmp_path):
    # Offline, reading the manifest or taking OUTPUT/.lock would fail; on a real bucket the lock would
    # stay until it went stale (only a launched job releases it).
    result = _run(tmp_path, "--dry-run", "--config", "configs/dataflow.yaml", *FILLED, "--incremental",
                  "--annotations", SAMPLE / "annotations", "--images", SAMPLE / "images")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Dataflow job graph (dry run, nothing launched): ")
    assert "incremental: shown as a full run (a dry run reads no manifest and takes no lock)" in result.stdout
    assert "storage.googleapis.com" not in result.stderr


def test_placeholders_are_refused_with_one_line(tmp_path):
    result = _run(tmp_path, "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: configs/dataflow.yaml still has a placeholder (YOUR-PROJECT-ID): "
        "copy it and fill in your project and buckets"
    )


def test_missing_region_and_local_output_are_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("runner: DataflowRunner\nproject: p-1234\ntemp_location: gs://b-temp/t\noutput: gs://b-out/o\n")
    result = _run(tmp_path, "--dry-run", "--config", config)
    assert result.returncode == 2 and result.stderr.startswith("error: no region:"), result.stderr
    result = _run(tmp_path, "--dry-run", "--config", config, "--region", "europe-west1", "--output", "out/local")
    assert result.returncode == 2 and "--output must be a gs:// path" in result.stderr, result.stderr


def _bin_with(tmp_path, gcloud_script=None) -> str:
    """A PATH with the few tools the script uses, and a stand-in `gcloud` (or none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sed", "cut", "grep", "dirname", "cat", "printf"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    if gcloud_script is not None:
        (bin_dir / "gcloud").write_text("#!" + shutil.which("bash") + "\n" + gcloud_script)
        (bin_dir / "gcloud").chmod(0o755)
    return str(bin_dir)


def test_a_real_launch_without_gcloud_says_so(tmp_path):
    result = _run(tmp_path, "--config", "configs/dataflow.yaml", *FILLED, path=_bin_with(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: gcloud is not installed"), result.stderr


def test_a_real_launch_without_credentials_says_so(tmp_path):
    gcloud = 'case "$*" in "auth application-default print-access-token") exit 1 ;; esac; exit 0\n'
    result = _run(tmp_path, "--config", "configs/dataflow.yaml", *FILLED, path=_bin_with(tmp_path, gcloud))
    assert result.returncode == 2
    assert result.stderr.startswith("error: no application default credentials: run `gcloud auth application-default login`")


def test_a_real_launch_with_an_unreachable_bucket_says_so(tmp_path):
    gcloud = 'case "$*" in "storage buckets describe gs://od-bucket-data"*) exit 1 ;; esac; exit 0\n'
    result = _run(tmp_path, "--config", "configs/dataflow.yaml", *FILLED, path=_bin_with(tmp_path, gcloud))
    assert result.returncode == 2
    assert result.stderr.startswith("error: bucket gs://od-bucket-data is not reachable"), result.stderr


def test_a_real_launch_without_the_dataflow_api_says_so(tmp_path):
    gcloud = 'exit 0\n'  # `services list` prints nothing: the API is not enabled
    result = _run(tmp_path, "--config", "configs/dataflow.yaml", *FILLED, path=_bin_with(tmp_path, gcloud))
    assert result.returncode == 2
    assert "the Dataflow API is not enabled in my-project-123" in result.stderr, result.stderr


REMOTE = ["--annotations", "gs://od-bucket-data/voc/Annotations", "--images", "gs://od-bucket-data/voc/JPEGImages"]


@pytest.mark.slow
def test_a_dry_run_with_remote_paths_lists_and_reads_nothing(tmp_path):
    # gs:// sources with no credentials and no network: listing or reading them would retry for minutes
    result = _run(tmp_path, "--dry-run", "--config", "configs/dataflow.yaml", *FILLED, *REMOTE, "--format", "voc")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Dataflow job graph (dry run, nothing launched): ")
    assert "not checked by a dry run: that the annotation and image paths exist" in result.stdout
    assert "Retry with exponential backoff" not in result.stderr and "storage.googleapis.com" not in result.stderr


@pytest.mark.slow
def test_the_plain_command_dry_runs_dataflow_offline_too(tmp_path):
    command = [sys.executable, "-m", "pipeline", "convert", *REMOTE, *FILLED, "--region", "europe-west1",
               "--runner", "DataflowRunner", "--dry_run=True", "--no_auth", "--sdk_location=container", "--incremental"]
    run = lambda *more: subprocess.run([*command, *more], capture_output=True, text=True, env=_offline_env(tmp_path),
                                       cwd=REPO, timeout=120)
    without_format = run()
    assert without_format.returncode == 2
    assert without_format.stderr.strip() == ("error: a dry run reads no remote file, so it cannot detect the format "
                                             "of gs://od-bucket-data/voc/Annotations: pass --format")
    result = run("--format", "voc")
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ") and not line.startswith("    ")]
    assert "WriteShards" in steps and "Publish" in steps
    assert "incremental: shown as a full run (a dry run reads no manifest and takes no lock)" in result.stdout
    assert "Traceback" not in result.stderr
