"""The spill folder: batches appended by many processes come back whole, and a spilled run writes the same
dataset as one whose metadata travels through the runner's shuffle."""
from __future__ import annotations

import json
import os
import tempfile
import multiprocessing
import shutil
from pathlib import Path

import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.graph import build_convert_pipeline
from pipeline.options import resolve_convert
from transforms.beam.runtime import RECORDS, REMOTE
from transforms.local.run import LocalRun
from transforms.local.spill import Spill


def _append_many(folder: str, worker: int) -> None:
    spill = Spill(folder)
    for index in range(200):
        spill.append(RECORDS, 7, worker, bytes([worker]) * (index * 37 % 5000))


def test_batches_appended_by_concurrent_processes_come_back_whole(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), worker)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
        assert process.exitcode == 0
    batches = list(Spill(str(tmp_path)).read(RECORDS, 7))
    assert len(batches) == 4 * 200
    for worker in range(4):
        mine = [payload for tag, payload in batches if tag == worker]
        assert mine == [bytes([worker]) * (index * 37 % 5000) for index in range(200)]  # in its order, untorn


def test_a_key_nothing_was_spilled_for_has_no_batches(tmp_path):
    assert list(Spill(str(tmp_path)).read(RECORDS, 3)) == []


def test_a_file_cut_short_fails_loudly(tmp_path):
    spill = Spill(str(tmp_path))
    spill.append(RECORDS, 1, 0, b"x" * 100)
    (written,) = (tmp_path / RECORDS / "1").iterdir()
    written.write_bytes(written.read_bytes()[:-1])
    with pytest.raises(OSError, match="cut short"):
        list(spill.read(RECORDS, 1))


def test_send_emits_through_the_runner_and_spills_on_a_local_run(tmp_path):
    assert REMOTE.exchange.send(RECORDS, 4, [(1, b"batch"), (2, b"more")]) == [(4, (1, b"batch")), (4, (2, b"more"))]
    spill = Spill(str(tmp_path))
    assert spill.send(RECORDS, 4, [(1, b"batch")]) == []
    assert spill.send(RECORDS, 4, [(2, b"more"), (3, b"most")], marker=True) == [(4, (0, None))]  # one for both
    assert spill.gather(RECORDS, 4, [(0, b"inline"), (0, None)]) == [(0, b"inline"), (1, b"batch"), (2, b"more"), (3, b"most")]
    assert REMOTE.exchange.gather(RECORDS, 4, [(0, b"inline")]) == [(0, b"inline")]


def _dataset_files(output: Path) -> dict:
    """Every published file's bytes (the output folder's path, which the README and dataset_info name,
    replaced), and the summary without its timings and settings."""
    files = {path.name: path.read_bytes().replace(str(output).encode(), b"OUTPUT")
             for path in sorted(output.iterdir()) if path.is_file()}
    summary = json.loads(files.pop("summary.json"))
    summary.pop("durations")
    summary.pop("config")
    return {**files, "summary": summary}


@pytest.mark.slow
@pytest.mark.parametrize("drop_duplicates", [False, True])
def test_a_spilled_run_writes_the_same_dataset_as_a_shuffled_one(raccoon, tmp_path, drop_duplicates):
    """Two sources, a duplicate image, an orphan image and an annotation without its image; the spilled run
    asks for two forked processes, as a local run on this machine does (handled in place if an earlier
    TestPipeline left gRPC's threads in this process: transforms/local/pool.py grpc_threads_alive; forks
    themselves are compared byte for byte through the command in test_convert_e2e.py)."""
    second = tmp_path / "second"
    (second / "annotations").mkdir(parents=True)
    (second / "images").mkdir()
    first_xml = sorted((raccoon / "annotations").glob("*.xml"))[0]
    shutil.copy(raccoon / "images" / first_xml.name.replace(".xml", ".jpg"), second / "images" / "copy.jpg")
    (second / "annotations" / "copy.xml").write_text(
        first_xml.read_text().replace(first_xml.name.replace(".xml", ".jpg"), "copy.jpg"))
    (second / "annotations" / "lost.xml").write_text(
        "<annotation><filename>lost.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    shutil.copy(sorted((raccoon / "images").iterdir())[1], second / "images" / "orphan.jpg")

    outputs = {}
    for spilled in (False, True):
        output = tmp_path / f"out-{spilled}"
        job = resolve_convert(
            {"format": "voc", "annotations": [str(raccoon / "annotations"), str(second / "annotations")],
             "images": [str(raccoon / "images"), str(second / "images")], "output": str(output), "num_shards": 3,
             "drop_duplicates": drop_duplicates},
            [],
        )
        spill_dir = tmp_path / f"spill-{spilled}"
        spill_dir.mkdir()
        with TestPipeline() as p:
            build_convert_pipeline(p, job, local=LocalRun(str(spill_dir), processes=2) if spilled else None)
        assert any(spill_dir.iterdir()) == spilled
        outputs[spilled] = _dataset_files(output)
    assert len([name for name in outputs[False] if ".tfrecord-" in name]) >= 6
    assert b"image_unannotated" in outputs[False]["rejected.jsonl"] and b"image_missing" in outputs[False]["rejected.jsonl"]
    assert outputs[True] == outputs[False]


def test_a_new_folder_clears_those_of_runs_killed_outright(tmp_path, monkeypatch):
    import fcntl

    from transforms.local import spill

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed, running, being_made = (tmp_path / f"{spill.FOLDER_PREFIX}{name}" for name in ("killed", "running", "new"))
    for folder in (killed, running, being_made):
        (folder / "records" / "3").mkdir(parents=True)
    (killed / spill.OWNER).touch()  # its run's lock went with its last process
    (running / spill.OWNER).touch()
    held = os.open(running / spill.OWNER, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # a living run (this process stands in for it)
    try:
        made = Path(spill.new_folder())
        assert made.parent == tmp_path and made.name.startswith(spill.FOLDER_PREFIX)
        assert not killed.exists()
        assert running.exists() and being_made.exists()
        spill.new_folder()
        assert made.exists()  # this run's own folder is held too
    finally:
        os.close(held)


def test_reading_a_spill_folder_that_is_gone_fails(tmp_path):
    spill = Spill(str(tmp_path / "gone"))
    with pytest.raises(OSError, match="is gone"):
        list(spill.read(RECORDS, 1))
