"""A real GCS-protocol server on 127.0.0.1 for gs:// tests (docs/design.md section 6).

`gcp-storage-emulator` serves the JSON, upload, download and batch endpoints that Beam's GcsIO uses,
including the batch copy/delete Beam uses to finalize writes. The server runs in a thread of the test
process, on a free port of 127.0.0.1 only; a CLI started by the test reaches it through `env()`:
STORAGE_EMULATOR_HOST, no credentials (anonymous client) and NO_GCE_CHECK=true, so nothing ever probes
for a cloud metadata server or leaves this machine.
"""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator

REPO = Path(__file__).resolve().parents[1]

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class GcsEmulator:
    """A running emulator: `url`, `env()` for a subprocess, and a google-cloud-storage `client`."""

    def __init__(self, port: int, bucket: str):
        self.port = port
        self.bucket = bucket
        self.url = f"http://{HOST}:{port}"

    def env(self) -> Dict[str, str]:
        """The environment for a process that must talk to this emulator and nothing else."""
        env = {key: value for key, value in os.environ.items() if key != "GOOGLE_APPLICATION_CREDENTIALS"}
        env.update(
            STORAGE_EMULATOR_HOST=self.url,
            NO_GCE_CHECK="true",  # google.auth must not probe 169.254.169.254 for a metadata server
            GCE_METADATA_HOST="127.0.0.1:9",  # and if anything does, it is refused at once, locally
            GCE_METADATA_IP="127.0.0.1:9",
            CLOUDSDK_CONFIG=str(Path(env.get("TMPDIR", "/tmp")) / "no-gcloud-config"),
            GOOGLE_CLOUD_PROJECT="test-project",
            # the repository, and a sitecustomize that keeps Beam from looking up credentials
            PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).resolve().parent / "emulator_site")]),
        )
        return env

    @property
    def client(self):
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = self.url
        return storage.Client.create_anonymous_client()

    def upload_tree(self, folder: Path, prefix: str) -> int:
        """Every file below `folder` to gs://bucket/prefix/..., keeping relative paths; returns the count."""
        bucket = self.client.bucket(self.bucket)
        count = 0
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                bucket.blob(f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}").upload_from_filename(str(path))
                count += 1
        return count

    def upload_bytes(self, name: str, data: bytes) -> None:
        self.client.bucket(self.bucket).blob(name).upload_from_string(data)

    def list(self, prefix: str = ""):
        return sorted(blob.name for blob in self.client.list_blobs(self.bucket, prefix=prefix))

    def download(self, name: str) -> bytes:
        return self.client.bucket(self.bucket).blob(name).download_as_bytes()


def beam_without_credentials() -> None:
    """Tell Beam there are no credentials to look for: an emulator accepts anonymous requests, and
    without this Beam's lookup on a machine without Google credentials retries `google.auth.default()`
    for about 20 seconds before it connects anonymously anyway, once per process."""
    from apache_beam.internal.gcp import auth

    credentials = auth._Credentials
    with credentials._credentials_lock:
        credentials._credentials = None
        credentials._credentials_init = True


@contextmanager
def running_emulator(bucket: str = "od-test") -> Iterator[GcsEmulator]:
    """Start the emulator in memory on a free 127.0.0.1 port with `bucket` created; stop it afterwards."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    port = free_port()
    server = create_server(HOST, port, in_memory=True, default_bucket=bucket)
    server.start()
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://{HOST}:{port}"
    beam_without_credentials()  # for this process's own gs:// calls
    try:
        yield GcsEmulator(port, bucket)
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved
