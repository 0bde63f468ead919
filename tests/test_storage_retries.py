"""Transient Cloud Storage errors are retried with backoff; permanent ones are raised at once."""
from __future__ import annotations

import pytest
from apache_beam.io.filesystem import BeamIOError
from google.api_core import exceptions as api

from transforms import storage


def _flaky(errors, result="ok"):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return action, calls


@pytest.mark.parametrize("error", [
    api.ServiceUnavailable("503"), api.TooManyRequests("429"), api.InternalServerError("500"),
    api.GatewayTimeout("504"), ConnectionResetError("reset"), TimeoutError("slow"),
    BeamIOError("Rename failed", {"gs://b/x": api.ServiceUnavailable("503")}),
])
def test_transient_errors_are_retried_with_growing_jittered_waits(error):
    waits = []
    action, calls = _flaky([error, error])
    assert storage.with_retries(action, sleep=waits.append) == "ok"
    assert len(calls) == 3 and len(waits) == 2
    assert 0 <= waits[0] <= storage.RETRY_INITIAL_SECONDS and 0 <= waits[1] <= 2 * storage.RETRY_INITIAL_SECONDS


@pytest.mark.parametrize("error", [api.NotFound("404"), api.Forbidden("403"), ValueError("bad"),
                                   BeamIOError("x", {"gs://b/x": api.NotFound("404")})])
def test_permanent_errors_are_raised_at_once(error):
    action, calls = _flaky([error])
    with pytest.raises(type(error)):
        storage.with_retries(action, sleep=lambda _: pytest.fail("no wait for a permanent error"))
    assert len(calls) == 1


def test_gives_up_after_the_last_attempt():
    action, calls = _flaky([api.ServiceUnavailable("503")] * 10)
    with pytest.raises(api.ServiceUnavailable):
        storage.with_retries(action, attempts=4, sleep=lambda _: None)
    assert len(calls) == 4


def test_gcs_paths():
    assert storage.split_gcs_path("gs://bucket/a/b.jpg") == ("bucket", "a/b.jpg")
    with pytest.raises(ValueError):
        storage.split_gcs_path("gs://bucket")
    assert storage.is_gcs("gs://b/x") and not storage.is_gcs("/tmp/x") and not storage.is_local("gs://b/x")


def test_reads_against_the_emulator_are_one_client_per_thread(tmp_path):
    from tests.gcs_emulator import running_emulator

    with running_emulator("od-unit") as gcs:
        gcs.upload_bytes("a/file.bin", b"0123456789")
        gcs.upload_bytes("a/empty", b"")
        storage._local.__dict__.clear()  # a client made now, for this emulator
        assert storage.read_bytes("gs://od-unit/a/file.bin") == b"0123456789"
        assert storage.read_bytes("gs://od-unit/a/file.bin", 4) == b"0123"
        assert storage.read_bytes("gs://od-unit/a/empty", 4) == b""
        client = storage.gcs_client()
        storage.write_bytes("gs://od-unit/b/out.txt", b"written")
        assert storage.gcs_client() is client
        assert gcs.download("b/out.txt") == b"written"
        with pytest.raises(api.NotFound):
            storage.read_bytes("gs://od-unit/a/missing")
        storage._local.__dict__.clear()
