"""The conversion pipeline, top to bottom.

Each source's image files are listed and its annotation files parsed in parallel; the shard count
is sized from the image bytes; annotations and image files (metadata only) are grouped by the shard
their image belongs to, and each shard's writer joins them, reads its images, validates them and
writes the split files; the label map is computed once for all sources; finally the dataset, its
label map, its rejections and its summary are published together.

The command (pipeline/cli.py) takes OUTPUT/.lock, finishes a killed run's publish and reads what OUTPUT
holds before the graph is built; building it touches nothing.

On a local run the metadata is grouped by shard in a spill folder on this machine's disk rather than
in the runner's memory, and the parse and write steps may fork a process per core (the LocalRun
runtime, transforms/local/); the graph is the same.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Optional

import apache_beam as beam

from pipeline.options import ConvertJob
from transforms import paths
from transforms.beam.aggregate import BuildLabelMap, CountShards, DropDuplicates, FindDuplicates
from transforms.beam.publish import Publish, PublishTarget
from transforms.beam.read import IMAGE_TOTALS, ListImages, ParseAnnotations, ShardImages
from transforms.beam.rejections import StageRejections
from transforms.beam.runtime import REMOTE, Runtime
from transforms.beam.tally import TALLY
from transforms.beam.write import DROPPED, FILES, ShardLayout, WriteShards
from transforms.guards import Limits
from transforms.incremental.plan import ALL_SHARDS, IncrementalPlan, IncrementalRun, shard_markers
from transforms.join import JoinRule

STAGING = ".staging"
REPLACED = "replaced.txt"  # in the staging folder: the files of the dataset this run replaces


@dataclasses.dataclass(frozen=True)
class Publication:
    """Where this run stages its files and what it replaces, decided by the command under OUTPUT/.lock."""

    staging_dir: str
    replaces: Optional[str] = None  # a file naming the OUTPUT-relative files of the dataset OUTPUT holds, one a line
    lock_token: Optional[str] = None  # set when the publish step releases the lock (remote runners)


def new_staging_dir(output: str) -> str:
    return paths.join(paths.join(output, STAGING), uuid.uuid4().hex)


def build_convert_pipeline(
    p: beam.Pipeline, job: ConvertJob, publication: Optional[Publication] = None, local: Optional[Runtime] = None,
) -> beam.PCollection:
    """Adds the conversion to `p`; returns the one-element PCollection of the published summary.

    `publication`: the staging folder, the files replaced and the lock (pipeline/cli.py takes the lock and
    reads OUTPUT's state first); without it (a graph built but never run, a dry run) a fresh staging folder.
    `local`: on the local runner, the LocalRun with its spill folder, forked processes and progress notes
    (pipeline/local_runner.py); None elsewhere.
    """
    publication = publication or Publication(new_staging_dir(job.output))
    runtime = local or REMOTE
    incremental = incremental_run(job) if job.incremental else None
    plan = incremental.plan if incremental else None
    rules = [JoinRule(source.images, source.format.name) for source in job.sources]
    labels = [f"Source{index}" if len(job.sources) > 1 else "Source" for index in range(len(job.sources))]

    # (chunk id, (0, packed [(relative path, size)])) per source; and (images, bytes) per chunk
    listings = [
        p | f"{label}/ListImages" >> ListImages(source.images, index, runtime)
        for index, (label, source) in enumerate(zip(labels, job.sources))
    ]
    # n, once: the index is split by shard, so an incremental dataset's shard count never changes
    if incremental and incremental.index_shards:
        num_shards = p | "IndexShards" >> beam.Create([incremental.index_shards])
    else:
        image_totals = [listing[IMAGE_TOTALS] for listing in listings] | "AllImageTotals" >> beam.Flatten()
        num_shards = image_totals | "CountShards" >> CountShards(job.num_shards, job.splits)

    steps, record_batches, image_batches, class_names = [], [], [], []
    for index, (label, source, listing) in enumerate(zip(labels, job.sources, listings)):
        # (shard, (source index, packed records)); rejections; class names; tallies
        parsed = p | f"{label}/ParseAnnotations" >> ParseAnnotations(
            source.format, source.patterns, source.context, job.class_map,
            source_index=index, seed=job.seed, num_shards=num_shards, runtime=runtime,
        )
        steps.append(parsed)
        record_batches.append(parsed.records)
        class_names.append(parsed.labels)
        # (shard, (source index, packed [(relative path, size)]))
        image_batches.append(listing.chunks | f"{label}/ShardImages" >> ShardImages(
            rules[index], source_index=index, seed=job.seed, num_shards=num_shards, runtime=runtime))
    sharded = {
        "records": record_batches | "AllRecords" >> beam.Flatten(),
        "images": image_batches | "AllImages" >> beam.Flatten(),
    }
    # (shard, marker): every shard's writer runs, so one with nothing new still finds an incremental run's
    # deletions, and spilled metadata, which sends no element that would start it, is written
    if incremental or runtime.exchange.spilled:
        sharded[ALL_SHARDS] = num_shards | "EveryShard" >> beam.FlatMap(shard_markers, plan)
    if job.drop_duplicates:
        # (shard, [(images root, key)]) of every copy but the first; their rejections
        dropping = sharded | "DropDuplicates" >> DropDuplicates(job.image_policy, rules, runtime, plan)
        steps.append(dropping)
        sharded[DROPPED] = dropping.dropped

    # {class name: id}, once, for every source
    label_ids = class_names | "AllClassNames" >> beam.Flatten() | "LabelMap" >> BuildLabelMap(
        job.label_map_seed, job.class_ids, job.class_map,
        [f"{source.format.name}:{source.annotations}" for source in job.sources],
    )
    # shard files in staging; rejections; tallies; FileChange part paths; (group, hashes) for duplicates
    layout = ShardLayout(publication.staging_dir, job.name, job.seed, job.splits, job.image_policy, tuple(rules))
    written = sharded | "WriteShards" >> WriteShards(
        layout, num_shards=num_shards, label_ids=label_ids, incremental=plan, runtime=runtime)
    steps.append(written)
    # (sorted keys, sorted splits) of each set of images that share their bytes
    duplicate_groups = written.content | "FindDuplicates" >> FindDuplicates(runtime)

    # Each step's rejections are written to part files right where they arise (a ParDo on one step's output
    # runs fused with it): a Flatten of several steps' outputs is materialized whole by the local runner.
    staged_rejections = [
        step.rejected | f"StageRejections{index}" >> beam.ParDo(
            StageRejections(publication.staging_dir)).with_outputs(TALLY, main="parts")
        for index, step in enumerate(steps)
    ]
    results = {
        "tallies": [step.tally for step in steps] + [staged[TALLY] for staged in staged_rejections]
        | "AllTallies" >> beam.Flatten() | "Sum" >> beam.CombinePerKey(sum),
        "rejection_parts": [staged.parts for staged in staged_rejections] | "AllRejectionParts" >> beam.Flatten(),
        "duplicate_groups": duplicate_groups,
        "label_ids": label_ids,
        "num_shards": num_shards,
        "change_parts": written[FILES],
    }
    return results | "Publish" >> Publish(publish_target(job, publication), incremental)


def publish_target(job: ConvertJob, publication: Publication) -> PublishTarget:
    return PublishTarget(
        output=job.output, staging_dir=publication.staging_dir, name=job.name, splits=job.splits,
        config=job.settings, started_at=job.started_at, replaces=publication.replaces,
        lock_token=publication.lock_token, limits=Limits(job.max_rejected, job.max_deleted),
    )


def incremental_run(job: ConvertJob) -> IncrementalRun:
    """What an incremental run's writers and publish need of the published state (job.manifest, read by
    the command under the lock)."""
    previous = None if job.resplit else job.manifest
    plan = IncrementalPlan(
        run=(job.manifest or {}).get("run", 0) + 1,
        output=job.output,
        previous_run=previous["run"] if previous else None,
        update_changed=job.update_changed,
    )
    return IncrementalRun(plan, previous["index_shards"] if previous else None, job.seed, job.run_log)
