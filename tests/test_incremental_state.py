"""What a worker of an incremental run is given must not grow with the dataset's history: the writers'
plan names where the published state is, and each writer reads its own shard's part of it."""
from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from pipeline.graph import Publication, incremental_run, new_staging_dir, publish_target
from pipeline.options import resolve_convert
from transforms.incremental import manifest as state
from transforms.beam.aggregate import _HashImages
from transforms.beam.runtime import REMOTE
from transforms.beam.write import ShardLayout, _WriteShard
from transforms.incremental.plan import ALL_SHARDS, index_part_path, shard_markers

LIVE_FILES = 20_000
INDEX_SHARDS = 2_000
PICKLED_LIMIT = 4096  # bytes: a few KB whatever the number of live files


def synthetic_manifest(run: int = 250) -> dict:
    """A dataset grown over `run` nightly runs: 20,000 live shard files, 2,000 index parts."""
    files = [{"id": f"r{1 + n // 80:04d}-{n % 80:05d}-{split}", "file": f"ds-{split}.tfrecord-{n // 2:05d}",
              "split": split, "records": 500, "bytes": 50_000_000, "boxes": 1500}
             for n in range(LIVE_FILES) for split in ["train" if n % 2 == 0 else "val"]]
    return {
        "format_version": state.FORMAT_VERSION, "run": run, "name": "ds", "seed": 0,
        "splits": "train=0.8,val=0.2", "index_shards": INDEX_SHARDS, "label_map": {"raccoon": 1},
        "class_boxes": {"raccoon": 1500 * LIVE_FILES}, "files": files,
        "index": [f"{state.STATE}/r{run - shard % 7:04d}/{state.index_part_name(shard)}" for shard in range(INDEX_SHARDS)],
        "config": {},
    }


@pytest.fixture()
def published(raccoon, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    job = resolve_convert({"annotations": [str(raccoon / "annotations")], "images": [str(raccoon / "images")],
                           "output": str(output), "incremental": True, "update_changed": True}, [])
    manifest = synthetic_manifest()
    (output / state.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return dataclasses.replace(job, manifest=manifest), manifest


def test_pickled_writer_does_not_grow_with_the_live_files(published):
    job, manifest = published
    plan = incremental_run(job).plan
    assert len(pickle.dumps(plan)) < 1024
    layout = ShardLayout(job.output + "/.staging/x", job.name, job.seed, job.splits, job.image_policy, ())
    writer = _WriteShard(layout, plan)
    hasher = _HashImages(job.image_policy, (), REMOTE.exchange, plan)
    for dofn in (writer, hasher):
        assert len(pickle.dumps(dofn)) < PICKLED_LIMIT, type(dofn).__name__


def test_each_writer_gets_its_index_part_and_looks_up_only_the_files_it_rewrites(published):
    job, manifest = published
    plan = incremental_run(job).plan
    markers = shard_markers(INDEX_SHARDS, plan)  # read from OUTPUT/manifest.json, on a worker
    assert len(markers) == INDEX_SHARDS
    shard, marker = markers[1234]
    assert shard == 1234 and index_part_path({ALL_SHARDS: [marker]}) == f"{job.output}/{manifest['index'][1234]}"
    wanted = [manifest["files"][7]["id"], manifest["files"][19_999]["id"]]
    assert plan.live_paths(wanted) == {
        entry["id"]: (entry["file"], f"{job.output}/{entry['file']}") for entry in (manifest["files"][7], manifest["files"][19_999])
    }


def test_a_first_run_marks_every_shard_with_no_index(published):
    job, _ = published
    plan = incremental_run(dataclasses.replace(job, manifest=None)).plan
    assert shard_markers(3, plan) == [(0, None), (1, None), (2, None)]
    assert shard_markers(2) == [(0, True), (1, True)]  # a spilled plain run: markers only


def test_a_manifest_published_by_another_run_meanwhile_is_refused(published):
    job, manifest = published
    plan = incremental_run(job).plan
    with open(f"{job.output}/{state.MANIFEST}", "w") as handle:
        json.dump(dict(manifest, run=manifest["run"] + 1), handle)
    with pytest.raises(state.StateMoved, match="run 251's, but this run started from run 250's"):
        shard_markers(INDEX_SHARDS, plan)
    with pytest.raises(state.StateMoved):
        plan.live_paths(["r0001-00000-train"])


def _publish_dofn(job, replaces=None):
    from transforms.beam.publish import _PublishIncremental

    return _PublishIncremental(publish_target(job, Publication(new_staging_dir(job.output), replaces)), incremental_run(job))


def test_pickled_publish_does_not_carry_the_previous_manifest(published):
    job, manifest = published
    replaced = f"{job.output}/replaced.txt"
    with open(replaced, "w") as handle:
        handle.writelines(f"{name}\n" for name in state.published_names(manifest))
    publish = _publish_dofn(job, replaces=replaced)  # unused when extending
    assert len(pickle.dumps(publish)) < PICKLED_LIMIT
    assert publish._previous()["files"] == manifest["files"]  # read on the worker


def test_publish_refuses_a_manifest_another_run_published_meanwhile(published):
    from transforms.outcomes import PublishFailed

    job, manifest = published
    publish = _publish_dofn(job)
    with open(f"{job.output}/{state.MANIFEST}", "w") as handle:
        json.dump(dict(manifest, run=manifest["run"] + 1), handle)
    with pytest.raises(PublishFailed, match="started from run 250's"):
        publish._publish({}, [], None, {}, INDEX_SHARDS, [])



@pytest.mark.parametrize("options", [{}, {"incremental": True, "resplit": True}], ids=["plain", "resplit"])
def test_a_run_replacing_a_grown_dataset_passes_its_files_as_a_file(published, raccoon, options):
    """A plain run or --resplit deletes every file of the dataset it replaces: the command writes their
    names to the staging folder, and publish reads them there, on the worker."""
    from pipeline.cli import _output_taken
    from transforms.beam.publish import _Publish, _PublishIncremental

    _, manifest = published
    output = published[0].output
    job = resolve_convert({"annotations": [str(raccoon / "annotations")], "images": [str(raccoon / "images")],
                           "output": output, "name": "ds", "splits": "train=0.8,val=0.2", **options}, [])
    with _output_taken(job, local=True) as (job, publication):
        target = publish_target(job, publication)
        publish = _PublishIncremental(target, incremental_run(job)) if job.incremental else _Publish(target)
        assert len(pickle.dumps(publish)) < PICKLED_LIMIT
        replaced = list(publish._replaced())
    assert len(replaced) == LIVE_FILES + INDEX_SHARDS
    assert replaced[0] == f"{output}/{manifest['files'][0]['file']}"
