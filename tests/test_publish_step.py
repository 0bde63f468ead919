"""The Publish step in a TestPipeline, on a tiny staged dataset: what it moves, what it writes beside the
shards, and what it refuses, with every input as the graph gives it."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from transforms.beam.publish import FRAME_BYTES, Publish, PublishTarget
from transforms.beam.rejections import StageRejections
from transforms.beam.tally import TALLY
from transforms.guards import Limits
from transforms.incremental import manifest as state
from transforms.model import ITEM_IMAGE, Rejection

RECORD = b"r" * 20  # one staged record's bytes


def _stage(staging: Path, records: int) -> str:
    """One staged shard file of `records` framed records, and the writer's part reporting it."""
    shard = staging / "ds-train.tfrecord-00000-of-00001"
    shard.write_bytes(b"x" * (records * (len(RECORD) + FRAME_BYTES)))
    part = state.change_part_path(str(staging), 0)
    state.write_changes(part, [state.FileChange("new", 0, str(shard), "train", records=records,
                                                bytes=records * len(RECORD), boxes=records)])
    return part


def _publish(tmp_path: Path, *, written: int, rejected: int, limits=Limits()):
    output, staging = tmp_path / "out", tmp_path / "out" / ".staging" / "run"
    staging.mkdir(parents=True)
    part = _stage(staging, written)
    target = PublishTarget(output=str(output), staging_dir=str(staging), name="ds", splits=(("train", 1.0),),
                           config={"seed": 0, "splits": "train=1.0"}, started_at=0.0, limits=limits)
    # as the steps count them; StageRejections counts the rejections it stages
    tallies = {"images_read": written + rejected, "images_written": written,
               ("split_images", "train"): written, ("class_boxes", "cat"): written, "boxes_written": written}
    with TestPipeline() as p:
        rejections = p | "Rejections" >> beam.Create(
            [Rejection(f"/src/{n}.xml", "image_missing", "", ITEM_IMAGE) for n in range(rejected)])
        staged = rejections | beam.ParDo(StageRejections(str(staging))).with_outputs(TALLY, main="parts")
        results = {
            "tallies": (p | "Tallies" >> beam.Create(list(tallies.items())), staged[TALLY]) | beam.Flatten()
            | beam.CombinePerKey(sum),
            "rejection_parts": staged.parts,
            "duplicate_groups": p | "Duplicates" >> beam.Create([]),
            "label_ids": p | "Labels" >> beam.Create([{"cat": 1}]),
            "num_shards": p | "Shards" >> beam.Create([1]),
            "change_parts": p | "Changes" >> beam.Create([part]),
        }
        summary = results | Publish(target)
        assert_that(summary, lambda got: _check_summary(got, written, rejected))
    return output


def _check_summary(got, written, rejected):
    (summary,) = got
    assert (summary["images_written"], summary["images_rejected"]) == (written, rejected)
    assert summary["splits"] == {"train": {"images": written, "boxes": 0, "shards": 1}}


def test_publish_moves_the_staged_shard_and_writes_every_file_beside_it(tmp_path):
    output = _publish(tmp_path, written=3, rejected=1)
    assert sorted(path.name for path in output.iterdir()) == [
        "README.md", "dataset_info.json", "ds-train.tfrecord-00000-of-00001", "features.json", "label_map.pbtxt",
        "manifest.json", "rejected.jsonl", "summary.json"]
    assert (output / "ds-train.tfrecord-00000-of-00001").stat().st_size == 3 * (len(RECORD) + FRAME_BYTES)
    assert [json.loads(line)["reason"] for line in (output / "rejected.jsonl").read_text().splitlines()] == ["image_missing"]
    manifest = json.loads((output / "manifest.json").read_text())
    assert [(entry["file"], entry["records"]) for entry in manifest["files"]] == [("ds-train.tfrecord-00000-of-00001", 3)]


def test_publish_refuses_a_run_that_rejected_most_of_its_images(tmp_path):
    with pytest.raises(Exception, match="refused to publish: 9 of the 10 images"):
        _publish(tmp_path, written=1, rejected=9)
    output = tmp_path / "out"
    assert not (output / "manifest.json").exists()
    refused = json.loads((output / ".refused" / "summary.json").read_text())
    assert refused["images_rejected"] == 9 and refused["refused"]
