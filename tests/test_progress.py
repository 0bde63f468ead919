"""The progress line: workers' notes are added up and turned into one line a person reads."""
from __future__ import annotations

import io
import time

from pipeline.progress import ProgressLine, format_progress
from transforms.progress import ProgressNotes, read_progress


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
