"""Nightly incremental runs end to end, with the real CLI: a dataset that grows over four runs (the
last one killed with SIGKILL mid-way and started again), changed and deleted source items, refused
settings and a second run on a locked output. Every record is read back with TensorFlow."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, read_examples, run_cli, shard_files
from transforms.splits import assign_split, parse_splits

pytestmark = pytest.mark.slow

SPLITS = "train=0.7,val=0.2,test=0.1"
SEED = 5


def _add_images(raccoon: Path, source: Path, first: int, last: int, label: str = "raccoon", copies: int = 0):
    """raccoon-{first..last} into source/ann and source/img, their boxes labeled `label`; with `copies`,
    byte-identical copies under other names too (more images, same content groups)."""
    (source / "ann").mkdir(parents=True, exist_ok=True)
    (source / "img").mkdir(parents=True, exist_ok=True)
    for number in range(first, last + 1):
        xml = (raccoon / "annotations" / f"raccoon-{number}.xml").read_text()
        image = (raccoon / "images" / f"raccoon-{number}.jpg").read_bytes()
        for copy in range(copies + 1):
            stem = f"raccoon-{number}" if copy == 0 else f"copy{copy}-raccoon-{number}"
            text = xml.replace(f"raccoon-{number}.jpg", f"{stem}.jpg").replace("<name>raccoon</name>", f"<name>{label}</name>")
            (source / "ann" / f"{stem}.xml").write_text(text)
            (source / "img" / f"{stem}.jpg").write_bytes(image)


def _args(source: Path, output: Path, *extra):
    return ["convert", "--format", "voc", "--annotations", source / "ann", "--images", source / "img",
            "--output", output, "--incremental", "--splits", SPLITS, "--seed", SEED, "--name", "nightly", *extra]


def _live(output: Path):
    """{file name: sha256 of its bytes} of every shard file a reader's glob finds."""
    return {Path(path).name: hashlib.sha256(Path(path).read_bytes()).hexdigest()
            for path in shard_files(output, "nightly-*.tfrecord-*")}


def _records(output: Path):
    """{image file name: (split, example)}; fails on a record written twice."""
    found = {}
    for path in shard_files(output, "nightly-*.tfrecord-*"):
        split = Path(path).name.split("-")[1].split(".")[0]
        for example in read_examples([path]):
            name = example["image/filename"][0].decode()
            assert name not in found, f"{name} is written twice"
            found[name] = (split, example)
    return found


def _check_dataset(output: Path, source: Path, expected_images: int, label_ids: dict):
    """Records, ids, splits and the manifest agree with each other and with the sources."""
    records = _records(output)
    assert len(records) == expected_images
    splits = parse_splits(SPLITS)
    for name, (split, example) in records.items():
        image = (source / "img" / name).read_bytes()
        assert example["image/encoded"] == [image]
        assert split == assign_split(hashlib.sha256(image).hexdigest(), SEED, splits)  # content and seed only
        texts = [text.decode() for text in example["image/object/class/text"]]
        assert example["image/object/class/label"] == [label_ids[text] for text in texts]
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["label_map"] == label_ids
    assert sorted(entry["file"] for entry in manifest["files"]) == sorted(_live(output))
    assert sum(entry["records"] for entry in manifest["files"]) == expected_images
    boxes_by_class = {}
    for _, example in records.values():
        for text in example["image/object/class/text"]:
            boxes_by_class[text.decode()] = boxes_by_class.get(text.decode(), 0) + 1
    assert manifest["class_boxes"] == boxes_by_class
    summary = json.loads((output / "summary.json").read_text())
    assert {entry["name"]: entry["boxes"] for entry in summary["classes"] if entry["boxes"]} == boxes_by_class
    for split in ("train", "val", "test"):
        assert sum(e["records"] for e in manifest["files"] if e["split"] == split) == sum(
            1 for s, _ in records.values() if s == split)
    text = "".join(f"item {{\n  id: {i}\n  name: '{n}'\n}}\n" for n, i in sorted(label_ids.items(), key=lambda x: x[1]))
    assert (output / "label_map.pbtxt").read_text() == text
    assert not (output / ".lock").exists() and not list(output.glob(".staging/*/*"))
    return records, manifest


def _last_run_log(output: Path) -> dict:
    return json.loads(sorted((output / "runs").glob("*.json"))[-1].read_text())


def test_four_nightly_runs_over_a_growing_dataset(raccoon, tmp_path):
    source, output = tmp_path / "source", tmp_path / "out"

    # Night 1: 40 images of one class; --num_shards fixes the index shards for good.
    _add_images(raccoon, source, 1, 40)
    run_cli(*_args(source, output, "--num_shards", "2"), check_exit=0)
    first, manifest = _check_dataset(output, source, 40, {"raccoon": 1})
    assert manifest["run"] == 1 and manifest["index_shards"] == 2
    assert all(Path(p).name.count("-") == 2 for p in shard_files(output, "nightly-*"))  # nightly-train.tfrecord-00000
    files_1 = _live(output)

    # Night 2: 40 more, a new class: new files only, old files untouched, ids kept, splits kept.
    _add_images(raccoon, source, 41, 80, label="dog")
    result = run_cli(*_args(source, output), check_exit=0)
    assert "40 new, 0 changed, 0 deleted, 40 already ingested" in result.stdout
    second, manifest = _check_dataset(output, source, 80, {"raccoon": 1, "dog": 2})
    files_2 = _live(output)
    assert {name: files_2[name] for name in files_1} == files_1  # never rewritten
    assert all(second[name][0] == split for name, (split, _) in first.items())
    assert manifest["run"] == 2 and len(files_2) > len(files_1)
    import tensorflow_datasets as tfds  # the growing folder still loads with TFDS

    builder = tfds.builder_from_directory(str(output))
    assert sum(builder.info.splits[split].num_examples for split in builder.info.splits) == 80

    # Night 3: nothing new: no shard, no manifest change, only a run log.
    before = {path.name: path.read_bytes() for path in output.iterdir() if path.is_file()}
    result = run_cli(*_args(source, output), check_exit=0)
    assert "0 new" in result.stdout and "nothing new" in result.stdout
    assert {path.name: path.read_bytes() for path in output.iterdir() if path.is_file()} == before
    assert len(list((output / "runs").glob("*.json"))) == 3 and _last_run_log(output)["incremental"]["published"] is False

    # Night 4: 360 new images; the run is killed (SIGKILL) while it writes its shards.
    _add_images(raccoon, source, 81, 200, copies=2)
    process = subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, _args(source, output))], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(output.glob(".staging/*/nightly-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert _live(output) == files_2  # the published dataset is intact: no half-written shard visible
    assert json.loads((output / "manifest.json").read_text())["run"] == 2
    assert len(_records(output)) == 80  # and readable
    holder = json.loads((output / ".lock").read_text())  # the killed run's lock, stale: its process is gone
    assert holder["pid"] == process.pid and holder["host"] == socket.gethostname()

    result = run_cli(*_args(source, output), check_exit=0)
    assert "360 new, 0 changed, 0 deleted, 80 already ingested" in result.stdout
    fourth, manifest = _check_dataset(output, source, 440, {"raccoon": 1, "dog": 2})
    assert {name: _live(output)[name] for name in files_2} == files_2
    assert all(fourth[name][0] == split for name, (split, _) in second.items())
    for number in range(81, 201):  # byte-identical copies share a split
        assert len({fourth[f"{prefix}raccoon-{number}.jpg"][0] for prefix in ("", "copy1-", "copy2-")}) == 1
    assert manifest["run"] == 3  # the killed run published nothing


def test_changed_and_deleted_items_are_reported_then_rewritten(raccoon, tmp_path):
    source, output = tmp_path / "source", tmp_path / "out"
    _add_images(raccoon, source, 1, 30)
    run_cli(*_args(source, output, "--num_shards", "2"), check_exit=0)
    changed = source / "ann" / "raccoon-3.xml"
    changed.write_text(changed.read_text().replace("<name>raccoon</name>", "<name>cat</name>"))
    (source / "ann" / "raccoon-7.xml").unlink()
    (source / "img" / "raccoon-7.jpg").unlink()
    files = _live(output)

    result = run_cli(*_args(source, output), check_exit=0)  # reported only
    assert "0 new, 1 changed, 1 deleted" in result.stdout and "--update_changed" in result.stdout
    assert _live(output) == files
    assert _records(output)["raccoon-3.jpg"][1]["image/object/class/text"] == [b"raccoon"]

    # in forked writer processes (what local runs of 1000+ images use), shards rewritten there
    result = run_cli(*_args(source, output, "--update_changed", "--local_processes", "2"), check_exit=0)
    assert "1 changed, 1 deleted" in result.stdout and "2 old records removed" in result.stdout
    records, manifest = _check_dataset(output, source, 29, {"raccoon": 1, "cat": 2})
    assert "raccoon-7.jpg" not in records
    assert records["raccoon-3.jpg"][1]["image/object/class/text"] == [b"cat"]  # once: the new record only
    rewritten = [name for name in files if name in _live(output) and _live(output)[name] != files[name]]
    assert rewritten and manifest["run"] == 2

    result = run_cli(*_args(source, output, "--update_changed"), check_exit=0)  # settled: nothing to do
    assert "0 new, 0 changed, 0 deleted" in result.stdout


def test_changed_settings_and_a_held_lock_are_refused(raccoon, tmp_path):
    source, output = tmp_path / "source", tmp_path / "out"
    _add_images(raccoon, source, 1, 10)
    run_cli(*_args(source, output), check_exit=0)
    args = _args(source, output)
    moved = args[:args.index("--splits") + 1] + ["train=0.5,val=0.5"] + args[args.index("--splits") + 2:]
    result = run_cli(*moved, check_exit=2)
    assert "--splits train=0.5,val=0.5 differs" in result.stderr and "--resplit" in result.stderr
    assert "Traceback" not in result.stderr

    (output / ".lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(), "token": "x"}))
    result = run_cli(*_args(source, output), check_exit=2)
    assert "another run is writing this output" in result.stderr and str(os.getpid()) in result.stderr
    (output / ".lock").write_text(json.dumps(  # stale by age
        {"host": "elsewhere", "pid": 1, "started_at": time.time() - 2 * 3600, "token": "x"}))
    run_cli(*_args(source, output, "--lock_timeout_hours", "1"), check_exit=0)

    result = run_cli(*moved, "--resplit", check_exit=0)  # a new dataset, ids kept
    records = _records(output)
    assert len(records) == 10 and {split for split, _ in records.values()} <= {"train", "val"}
    assert json.loads((output / "manifest.json").read_text())["splits"] == "train=0.5,val=0.5"


def test_incremental_runs_on_gcs(raccoon, tmp_path):
    """The same story with every path on gs:// (a GCS-protocol server on 127.0.0.1): lock, journal,
    manifest and index parts live in the bucket, and no local file is written."""
    from tests.gcs_emulator import running_emulator

    source = tmp_path / "source"
    _add_images(raccoon, source, 1, 12)
    with running_emulator("nightly") as gcs:
        gcs.upload_tree(source, "source")
        env = {**gcs.env(), "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path / "tmp")}
        (tmp_path / "tmp").mkdir()
        args = ["convert", "--format", "voc", "--annotations", "gs://nightly/source/ann", "--images", "gs://nightly/source/img",
                "--output", "gs://nightly/out", "--incremental", "--splits", SPLITS, "--seed", SEED, "--name", "nightly"]

        def run():
            result = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
            return result

        assert "12 new" in run().stdout
        first = set(gcs.list("out/"))
        _add_images(raccoon, tmp_path / "more", 13, 20, label="dog")
        gcs.upload_tree(tmp_path / "more", "source")
        assert "8 new, 0 changed, 0 deleted, 12 already ingested" in run().stdout
        names = gcs.list("out/")
        assert "out/.lock" not in names and not [name for name in names if "/.staging/" in name]
        assert {name for name in first if ".tfrecord-" in name} <= set(names)  # old shards stay
        output = tmp_path / "downloaded"
        for name in names:
            if ".tfrecord-" in name or name.endswith(("manifest.json", "label_map.pbtxt")):
                (output / name[4:]).parent.mkdir(parents=True, exist_ok=True)
                (output / name[4:]).write_bytes(gcs.download(name))
        manifest = json.loads((output / "manifest.json").read_text())
        assert manifest["run"] == 2 and manifest["label_map"] == {"raccoon": 1, "dog": 2}
        assert len(_records(output)) == 20
        assert [path for path in (tmp_path / "tmp").rglob("*") if path.is_file()] == []


def test_dropping_duplicates_reads_no_unchanged_image(raccoon, tmp_path):
    """An image ingested before and unchanged since is not read again to hash it: its hash is in the index.
    A new copy of it is still found and dropped."""
    source, output = tmp_path / "source", tmp_path / "out"
    _add_images(raccoon, source, 1, 10)
    run_cli(*_args(source, output, "--drop_duplicates"), check_exit=0)
    # raccoon-2 now holds raccoon-3's bytes. Its annotation is unchanged, so the run does not read it; had
    # it been hashed, it would be a copy of raccoon-3 and one of the two would be dropped.
    (source / "img" / "raccoon-2.jpg").write_bytes((source / "img" / "raccoon-3.jpg").read_bytes())
    (source / "img" / "zz-copy.jpg").write_bytes((source / "img" / "raccoon-5.jpg").read_bytes())
    (source / "ann" / "zz-copy.xml").write_text(
        (source / "ann" / "raccoon-5.xml").read_text().replace("raccoon-5.jpg", "zz-copy.jpg"))
    result = run_cli(*_args(source, output, "--drop_duplicates"), check_exit=0)
    assert "0 new, 0 changed, 0 deleted, 10 already ingested" in result.stdout  # the copy is dropped first
    assert _last_run_log(output)["rejections"] == {"image_duplicate": 1}  # zz-copy, not raccoon-2 or -3
