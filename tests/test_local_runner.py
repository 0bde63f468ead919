"""The DirectRunner's parallelism: one worker process per core for big local jobs, unless the user chose."""
from __future__ import annotations

from pipeline import local_runner
from pipeline.local_runner import direct_runner_args


def _images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"{index}.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


def test_big_local_jobs_get_a_worker_process_per_core(tmp_path, monkeypatch):
    monkeypatch.setattr(local_runner, "PARALLEL_FROM_IMAGES", 3)
    monkeypatch.setattr(local_runner.os, "cpu_count", lambda: 4)
    small, big = _images(tmp_path / "small", 2), _images(tmp_path / "big" / "deep", 3)
    assert direct_runner_args(["--x=1"], None, [small]) == ["--x=1"]
    assert direct_runner_args([], None, [small, str(tmp_path / "big")]) == [
        "--direct_running_mode=multi_processing", "--direct_num_workers=4"]
    assert direct_runner_args([], "DirectRunner", ["gs://bucket/images"])[-1] == "--direct_num_workers=4"


def test_the_users_choice_and_other_runners_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(local_runner, "PARALLEL_FROM_IMAGES", 1)
    monkeypatch.setattr(local_runner.os, "cpu_count", lambda: 4)
    images = _images(tmp_path / "images", 2)
    for chosen in (["--direct_running_mode=in_memory"], ["--direct_num_workers", "1"]):
        assert direct_runner_args(chosen, None, [images]) == chosen
    assert direct_runner_args([], "DataflowRunner", [images]) == []
    monkeypatch.setattr(local_runner.os, "cpu_count", lambda: 1)
    assert direct_runner_args([], None, [images]) == []
