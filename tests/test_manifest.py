"""The manifest, the ingested-keys index and the publish journal: pure functions and local files."""
from __future__ import annotations

import json
import subprocess
import sys

from transforms.incremental import manifest as state
from transforms.incremental.index import IndexEntry, format_index, parse_index
from transforms.model import Box, ImageRecord
from transforms.records.tfds_metadata import dataset_info_json


def _record(**changes):
    base = dict(key="a/b.jpg", source="ann/b.xml", boxes=(Box("cat", 1, 2, 3, 4),), annotated_size=(10, 20))
    return ImageRecord(**{**base, **changes})


def test_fingerprint_is_the_annotation_content_only():
    assert state.fingerprint(_record()) == state.fingerprint(_record(source="moved/b.xml", image_bytes=99))
    assert state.fingerprint(_record()) != state.fingerprint(_record(boxes=(Box("dog", 1, 2, 3, 4),)))
    assert state.fingerprint(_record()) != state.fingerprint(_record(boxes=(Box("cat", 1, 2, 3, 5),)))
    assert state.fingerprint(_record()) != state.fingerprint(_record(source_id="7"))


def test_fingerprint_is_the_same_in_another_process():
    code = ("from transforms.incremental import manifest as m; from transforms.model import Box, ImageRecord; "
            "print(m.fingerprint(ImageRecord(key='a/b.jpg', source='ann/b.xml', boxes=(Box('cat', 1, 2, 3, 4),), "
            "annotated_size=(10, 20))))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=str(__import__("tests.conftest").conftest.REPO))
    assert other.stdout.strip() == state.fingerprint(_record())


def test_identity_names_the_root_only_for_merged_sources():
    record = _record(images_root="/data/images")
    assert state.identity(record, 1) == "a/b.jpg"
    assert state.identity(record, 2) == "/data/images/a/b.jpg"


def test_index_round_trip_is_sorted_and_stable():
    entries = {key: IndexEntry(key, f"sha-{key}", f"fp-{key}", "train", "r0001-00000-train", n, boxes=2, size=99)
               for n, key in enumerate(["b", "a"])}
    text = format_index(entries)
    assert text.splitlines()[0] == ('{"b": 2, "file": "r0001-00000-train", "fp": "fp-a", "k": "a", "n": 99, "pos": 1, '
                                    '"sha": "sha-a", "split": "train"}')
    assert parse_index(text) == entries and format_index(parse_index(text)) == text


def test_index_entries_written_before_boxes_were_kept_read_and_write_back_unchanged():
    line = '{"file": "r0001-00000-train", "fp": "f", "k": "a", "pos": 0, "sha": "s", "split": "val"}'
    (entry,) = parse_index(line).values()
    assert entry.boxes is None and entry.size is None and format_index({"a": entry}) == line + "\n"


def _first_manifest():
    changes = [
        state.FileChange("new", 1, "/s/train-1", "train", "r0001-00001-train", records=3, bytes=30, boxes=4),
        state.FileChange("new", 0, "/s/train-0", "train", "r0001-00000-train", records=2, bytes=20, boxes=2),
        state.FileChange("new", 0, "/s/val-0", "val", "r0001-00000-val", records=1, bytes=10, boxes=0),
        state.FileChange("index", 0, "/s/index-0"),
        state.FileChange("index", 1, "/s/index-1"),
    ]
    return state.next_manifest(None, run=1, name="d", seed=0, splits="train=0.5,val=0.5", index_shards=2,
                               label_ids={"cat": 1}, changes=changes, config={})


def test_next_manifest_numbers_new_files_after_the_live_ones():
    manifest, moves = _first_manifest()
    assert [entry["file"] for entry in manifest["files"]] == ["d-train.tfrecord-00000", "d-train.tfrecord-00001", "d-val.tfrecord-00000"]
    assert moves[0] == ("/s/train-0", "d-train.tfrecord-00000")  # shard order inside a split
    assert manifest["index"] == [".state/r0001/index-00000.jsonl", ".state/r0001/index-00001.jsonl"]

    changes = [
        state.FileChange("new", 1, "/t/val-1", "val", "r0002-00001-val", records=5, bytes=50, boxes=5),
        state.FileChange("rewritten", 0, "/t/rw", "train", "r0002-rw-x", replaces="d-train.tfrecord-00000", records=1, bytes=9, boxes=1),
        state.FileChange("index", 1, "/t/index-1"),
    ]
    second, moves = state.next_manifest(manifest, run=2, name="d", seed=0, splits="train=0.5,val=0.5", index_shards=2,
                                        label_ids={"cat": 1, "dog": 2}, changes=changes, config={})
    assert moves == [("/t/rw", "d-train.tfrecord-00000"), ("/t/val-1", "d-val.tfrecord-00001"),
                     ("/t/index-1", ".state/r0002/index-00001.jsonl")]  # a rewritten shard moves first
    assert second["index"] == [".state/r0001/index-00000.jsonl", ".state/r0002/index-00001.jsonl"]
    assert second["files"][0] == {"id": "r0002-rw-x", "file": "d-train.tfrecord-00000", "split": "train",
                                  "records": 1, "bytes": 9, "boxes": 1}
    assert state.split_counts(second, ["train", "val", "test"]) == {
        "train": {"images": 4, "boxes": 5, "shards": 2}, "val": {"images": 6, "boxes": 5, "shards": 2},
        "test": {"images": 0, "boxes": 0, "shards": 0}}
    info = json.loads(dataset_info_json("d", state.tfds_shards(second), state.INCREMENTAL_TEMPLATE))
    assert [split["shardLengths"] for split in info["splits"]] == [["1", "3"], ["1", "5"]]
    assert {split["filepathTemplate"] for split in info["splits"]} == {state.INCREMENTAL_TEMPLATE}


def test_a_publish_killed_half_way_is_finished_by_recover(tmp_path):
    output, staging = tmp_path / "out", tmp_path / "out" / ".staging" / "run"
    staging.mkdir(parents=True)
    moves = []
    for name in ("d-train.tfrecord-00000", "d-train.tfrecord-00001", state.MANIFEST):
        (staging / name).write_text(name)
        moves.append((str(staging / name), name))
    plan = {"staging": str(staging), "moves": [[src, str(output / dst)] for src, dst in moves]}
    (output / state.STATE).mkdir()
    (output / state.STATE / state.JOURNAL).write_text(json.dumps(plan))
    (staging / "d-train.tfrecord-00000").rename(output / "d-train.tfrecord-00000")  # the first move was done
    assert state.recover(str(output))
    assert sorted(path.name for path in output.iterdir() if path.is_file()) == [
        "d-train.tfrecord-00000", "d-train.tfrecord-00001", "manifest.json"]
    assert not staging.exists() and not (output / state.STATE / state.JOURNAL).exists()
    assert not state.recover(str(output))


def test_publish_deletes_only_what_the_previous_manifest_names_and_the_new_one_does_not(tmp_path):
    output, staging = tmp_path / "out", tmp_path / "out" / ".staging" / "run"
    staging.mkdir(parents=True)
    previous, _ = _first_manifest()
    previous["files"] = [{"id": "a", "file": "d-train.tfrecord-00000", "split": "train", "records": 1, "bytes": 1, "boxes": 0},
                         {"id": "b", "file": "d-val.tfrecord-00000", "split": "val", "records": 1, "bytes": 1, "boxes": 0}]
    previous["index"] = [".state/r0001/index-00000.jsonl", None]
    for name in ("d-train.tfrecord-00000", "d-val.tfrecord-00000", ".state/r0001/index-00000.jsonl",
                 "d-train.tfrecord-00009", "notes.txt"):  # the last two: no manifest names them
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_text("old " + name)
    manifest = dict(previous, files=previous["files"][:1], index=[".state/r0002/index-00000.jsonl", None])
    moves = []
    for name in ("d-train.tfrecord-00000", ".state/r0002/index-00000.jsonl", state.MANIFEST):
        (staging / name.replace("/", "_")).write_text("new " + name)
        moves.append((str(staging / name.replace("/", "_")), name))
    garbage = [str(output / name) for name in state.superseded_names(previous, manifest)]
    state.publish(str(output), str(staging), moves, garbage=garbage)
    assert sorted(str(path.relative_to(output)) for path in output.rglob("*") if path.is_file()) == [
        ".state/r0002/index-00000.jsonl", "d-train.tfrecord-00000", "d-train.tfrecord-00009", "manifest.json", "notes.txt"]
    assert (output / "d-train.tfrecord-00000").read_text() == "new d-train.tfrecord-00000"
    assert not staging.exists() and not (output / state.STATE / "r0001").exists()


def test_a_plain_manifest_is_replaced_whole_and_unmanaged_outputs_by_exact_names(tmp_path):
    output = tmp_path / "o[1]"
    output.mkdir()
    neighbour = tmp_path / "o1"
    neighbour.mkdir()
    for folder in (output, neighbour):
        for name in ("d-train.tfrecord-00000-of-00002", "d-train.tfrecord-00003", "dx-val.tfrecord-00000-of-00001",
                     "d-train.tfrecord-00000-of-00002.bak"):
            (folder / name).write_text("x")
    assert sorted(state.replaced_names(str(output), None, "d")) == [
        "d-train.tfrecord-00000-of-00002", "d-train.tfrecord-00003"]
    plain = state.plain_manifest(name="d", seed=0, splits="train=1.0", label_ids={"a": 1},
                                 files=[{"file": "d-train.tfrecord-00000-of-00001", "split": "train", "records": 2,
                                         "bytes": 9, "boxes": 2}], config={})
    assert state.is_plain(plain) and not state.is_plain(_first_manifest()[0])
    assert state.replaced_names(str(output), plain, "other") == ["d-train.tfrecord-00000-of-00001"]


def test_replaced_shards_are_deleted_before_the_first_move_and_only_then(tmp_path):
    output, staging = tmp_path / "out", tmp_path / "out" / ".staging" / "run"
    staging.mkdir(parents=True)
    old = [output / "d-train.tfrecord-00000", output / "d-train.tfrecord-00001"]
    for path in old:
        path.write_text("old " + path.name)
    (staging / "d-train.tfrecord-00000").write_text("new")
    (staging / state.MANIFEST).write_text("{}")
    plan = {"staging": str(staging), "deletes": [str(path) for path in old],
            "moves": [[str(staging / "d-train.tfrecord-00000"), str(old[0])],
                      [str(staging / state.MANIFEST), str(output / state.MANIFEST)]]}
    (output / state.STATE).mkdir()
    (output / state.STATE / state.JOURNAL).write_text(json.dumps(plan))
    # killed after the deletes and the first move: the recovery must not delete the moved file again
    old[0].unlink()
    old[1].unlink()
    (staging / "d-train.tfrecord-00000").rename(old[0])
    assert state.recover(str(output))
    assert old[0].read_text() == "new" and not old[1].exists() and (output / state.MANIFEST).exists()
