"""The conversion pipeline, top to bottom.

Each source's image files are listed and its annotation files parsed in parallel; the shard count
is sized from the image bytes; annotations and image files (metadata only) are grouped by the shard
their image belongs to, and each shard's writer joins them, reads its images, validates them and
writes the split files; the label map is computed once for all sources; finally the dataset, its
label map, its rejections and its summary are published together.

The command (pipeline/cli.py) takes OUTPUT/.lock, finishes a killed run's publish and reads what OUTPUT
holds before the graph is built; building it touches nothing.

On a local run the metadata is grouped by shard in a spill folder on this machine's disk rather than
in the runner's memory (transforms/local/spill.py); the graph is the same.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Optional

import apache_beam as beam

from pipeline.options import ConvertJob
from transforms import paths
from transforms.beam.aggregate import BuildLabelMap, CountShards, DropDuplicates, FindDuplicates
from transforms.guards import Limits
from transforms.join import JoinRule
from transforms.beam.publish import Publish
from transforms.beam.read import IMAGE_TOTALS, ListImages, ParseAnnotations, ShardImages
from transforms.beam.rejections import StageRejections
from transforms.local.spill import Spill
from transforms.beam.tally import TALLY
from transforms.beam.write import DROPPED, FILES, WriteShards
from transforms.incremental.plan import ALL_SHARDS, IncrementalPlan, shard_markers

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
    p: beam.Pipeline, job: ConvertJob, progress_dir: Optional[str] = None, processes: int = 1,
    spill_dir: Optional[str] = None, publication: Optional[Publication] = None,
) -> beam.PCollection:
    """Adds the conversion to `p`; returns the one-element PCollection of the published summary.

    `publication`: the staging folder, the files replaced and the lock (pipeline/cli.py takes the lock and
    reads OUTPUT's state first); without it (a graph built but never run, a dry run) a fresh staging folder.
    Local runs only: `progress_dir`, a folder where the workers note their progress; `processes`, how
    many forked processes parse and write (pipeline/local_runner.py); `spill_dir`, an empty local folder
    where the per-image metadata waits for its shard.
    """
    publication = publication or Publication(new_staging_dir(job.output))
    incremental = _incremental(job) if job.incremental else None
    staging_dir = publication.staging_dir
    spill = Spill(spill_dir) if spill_dir else None

    labels = [f"Source{index}" if len(job.sources) > 1 else "Source" for index in range(len(job.sources))]
    rules = [JoinRule(source.images, source.format.name) for source in job.sources]
    listings = [
        p | f"{label}/ListImages" >> ListImages(source.images, index, spill)
        for index, (label, source) in enumerate(zip(labels, job.sources))
    ]
    if incremental and incremental["index_shards"]:  # the index is split by shard: its shard count never changes
        num_shards = p | "IndexShards" >> beam.Create([incremental["index_shards"]])
    else:
        image_totals = [listing[IMAGE_TOTALS] for listing in listings] | "AllImageTotals" >> beam.Flatten()
        num_shards = image_totals | "CountShards" >> CountShards(job.num_shards, job.splits)

    steps, record_batches, image_batches, class_names = [], [], [], []
    for index, (label, source, listing) in enumerate(zip(labels, job.sources, listings)):
        parsed = p | f"{label}/ParseAnnotations" >> ParseAnnotations(
            source.format, source.patterns, source.context, job.class_map,
            source_index=index, seed=job.seed, num_shards=num_shards, progress_dir=progress_dir, processes=processes,
            spill=spill,
        )
        steps.append(parsed)
        record_batches.append(parsed.records)
        class_names.append(parsed.labels)
        image_batches.append(
            listing.chunks | f"{label}/ShardImages" >> ShardImages(
                rules[index], source_index=index, seed=job.seed, num_shards=num_shards, spill=spill
            )
        )
    sharded = {
        "records": record_batches | "AllRecords" >> beam.Flatten(),
        "images": image_batches | "AllImages" >> beam.Flatten(),
    }
    # Every shard's writer runs: one with nothing new still finds an incremental run's deletions, and
    # spilled metadata sends no element that would start it.
    if incremental or spill:
        plan = incremental and incremental["plan"]
        sharded[ALL_SHARDS] = num_shards | "EveryShard" >> beam.FlatMap(shard_markers, plan)
    if job.drop_duplicates:
        dropping = sharded | "DropDuplicates" >> DropDuplicates(
            job.image_policy, rules, spill, incremental and incremental["plan"]
        )
        steps.append(dropping)
        sharded[DROPPED] = dropping.dropped

    label_ids = class_names | "AllClassNames" >> beam.Flatten() | "LabelMap" >> BuildLabelMap(
        job.label_map_seed, job.class_ids, job.class_map,
        [f"{source.format.name}:{source.annotations}" for source in job.sources],
    )
    written = sharded | "WriteShards" >> WriteShards(
        staging_dir=staging_dir,
        name=job.name,
        seed=job.seed,
        splits=job.splits,
        policy=job.image_policy,
        rules=rules,
        num_shards=num_shards,
        label_ids=label_ids,
        progress_dir=progress_dir,
        incremental=incremental and incremental["plan"],
        processes=processes,
        spill=spill,
    )
    duplicate_groups = written.content | "FindDuplicates" >> FindDuplicates(spill)

    steps.append(written)
    # Each step's rejections are written to part files right where they arise (a ParDo on one step's output
    # runs fused with it): a Flatten of several steps' outputs is materialized whole by the local runner.
    staged_rejections = [
        step.rejected | f"StageRejections{index}" >> beam.ParDo(StageRejections(staging_dir)).with_outputs(TALLY, main="parts")
        for index, step in enumerate(steps)
    ]
    rejection_parts = [staged.parts for staged in staged_rejections] | "AllRejectionParts" >> beam.Flatten()
    tallies = (
        [step.tally for step in steps] + [staged[TALLY] for staged in staged_rejections]
        | "AllTallies" >> beam.Flatten()
        | "Sum" >> beam.CombinePerKey(sum)
    )
    return p | "Publish" >> Publish(
        tallies=tallies,
        rejection_parts=rejection_parts,
        duplicate_groups=duplicate_groups,
        label_ids=label_ids,
        num_shards=num_shards,
        output=job.output,
        staging_dir=staging_dir,
        name=job.name,
        splits=job.splits,
        config=job.settings,
        started_at=job.started_at,
        change_parts=written[FILES],
        replaces=publication.replaces,
        lock_token=publication.lock_token,
        limits=Limits(job.max_rejected, job.max_deleted),
        incremental=incremental and {key: value for key, value in incremental.items() if key not in ("plan", "index_shards")},
    )


def _incremental(job: ConvertJob) -> dict:
    """What an incremental run's writers and publish need of the published state (job.manifest, read by
    the command under the lock)."""
    previous = None if job.resplit else job.manifest
    plan = IncrementalPlan(
        run=(job.manifest or {}).get("run", 0) + 1,
        output=job.output,
        previous_run=previous["run"] if previous else None,
        update_changed=job.update_changed,
    )
    return {
        "plan": plan,
        "index_shards": previous["index_shards"] if previous else None,
        "previous_run": plan.previous_run,  # publish reads that manifest again and checks it is still this run's
        "run": plan.run,
        "seed": job.seed,
        "update_changed": job.update_changed,
        "run_log": job.run_log,
    }
