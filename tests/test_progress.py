"""The progress line: workers' notes are added up and turned into one line a person reads."""
from __future__ import annotations

import io
import time

from pipeline.progress import ProgressLine, format_progress
from transforms.local.progress import ProgressNotes, read_progress


def test_notes_of_every_worker_add_up(tmp_path):
    first, second = ProgressNotes(str(tmp_path)), ProgressNotes(str(tmp_path))
    first.add("parsed", 600)
    second.add("parsed", 400)
    second.add("written", 250)
    assert read_progress(str(tmp_path)) == {}  # nothing flushed yet: notes are written every few seconds
    first.flush()
    second.flush()
    assert read_progress(str(tmp_path)) == {"parsed": 1000, "written": 250}
    (tmp_path / "x.json.partial").write_text("{")  # a note being replaced is not read
    assert read_progress(str(tmp_path)) == {"parsed": 1000, "written": 250}


def test_notes_without_a_folder_cost_nothing():
    notes = ProgressNotes(None)
    notes.add("written", 5)
    notes.flush()


def test_the_line_says_how_far_how_fast_and_how_long():
    assert format_progress({"parsed": 1200}, None) == "progress: 1,200 images parsed"
    assert format_progress({"parsed": 10000, "written": 4000}, 500.0) == (
        "progress: 4,000 of 10,000 images written (40%), 500 images/s, about 12s left"
    )
    assert format_progress({"parsed": 100000, "written": 10000}, 500.0).endswith("about 3m00s left")


def test_the_line_is_printed_while_workers_note_progress():
    stream = io.StringIO()
    with ProgressLine(stream=stream, every=0.05) as line:
        notes = ProgressNotes(line.folder)
        notes.add("parsed", 10)
        notes.flush()
        time.sleep(0.2)
        notes.add("written", 5)
        notes.flush()
        deadline = time.monotonic() + 5
        while "written" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = stream.getvalue().splitlines()
    assert "progress: 10 images parsed" in lines
    assert any(line.startswith("progress: 5 of 10 images written (50%)") for line in lines)


def _progress_folder_in_child(others=()):
    """(pid, folder, release pipe) of a forked child that made a ProgressLine's folder and then waits: it
    exits when the pipe is closed, or is killed, without removing the folder. `others`: the release pipes
    of children made before, which this child must not keep open."""
    import os

    folder_read, folder_write = os.pipe()
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: makes the folder, says where, then waits to be released or killed
        try:
            os.close(folder_read)
            for descriptor in (release_write, *others):
                os.close(descriptor)
            line = ProgressLine(stream=io.StringIO())
            os.write(folder_write, line.folder.encode())
            os.close(folder_write)
            os.read(release_read, 1)
        finally:
            os._exit(0)  # never returns into the test runner; the folder is not removed
    os.close(folder_write)
    os.close(release_read)
    with os.fdopen(folder_read, "rb") as pipe:
        folder = pipe.read().decode()
    return pid, folder, release_write


def test_a_new_line_removes_the_folders_of_runs_gone_and_keeps_those_of_living_ones(tmp_path, monkeypatch):
    import os
    import signal
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # All three are made while the others live: each new line would otherwise remove the folders of those gone.
    exited_pid, exited, exited_release = _progress_folder_in_child()
    killed_pid, killed, killed_release = _progress_folder_in_child([exited_release])
    living_pid, living, living_release = _progress_folder_in_child([exited_release, killed_release])
    try:
        os.close(exited_release)  # the child reads end-of-file and exits
        os.waitpid(exited_pid, 0)
        os.kill(killed_pid, signal.SIGKILL)
        os.waitpid(killed_pid, 0)
        os.close(killed_release)
        for folder in (exited, killed, living):
            assert os.path.dirname(folder) == str(tmp_path) and os.path.isdir(folder)
        with ProgressLine(stream=io.StringIO(), every=60) as line:
            assert not os.path.exists(exited) and not os.path.exists(killed)
            assert os.path.isdir(living)  # its process still runs
            assert os.path.isdir(line.folder)
        assert not os.path.exists(line.folder)  # a line that ends removes its own folder
    finally:
        os.close(living_release)
        os.waitpid(living_pid, 0)
    with ProgressLine(stream=io.StringIO(), every=60):
        assert not os.path.exists(living)  # once its process has exited
