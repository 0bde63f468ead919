"""The conversion pipeline, top to bottom.

Each source's image files are listed and its annotation files parsed in parallel; the shard count
is sized from the image bytes; annotations and image files (metadata only) are grouped by the shard
their image belongs to, and each shard's writer joins them, reads its images, validates them and
writes the split files; the label map is computed once for all sources; finally the dataset, its
label map, its rejections and its summary are published together.

On a local run the metadata is grouped by shard in a spill folder on this machine's disk rather than
in the runner's memory (transforms/spill.py); the graph is the same.
"""
from __future__ import annotations

import atexit
import uuid
from typing import Optional

import apache_beam as beam

from pipeline.errors import UsageError
from pipeline.options import ConvertJob, refresh_incremental
from transforms import lock, paths, storage
from transforms import manifest as state
from transforms.aggregate import BuildLabelMap, CountShards, DropDuplicates, FindDuplicates
from transforms.join import JoinRule
from transforms.publish import Publish
from transforms.read import IMAGE_TOTALS, ListImages, ParseAnnotations, ShardImages
from transforms.spill import Spill
from transforms.tally import CountRejections
from transforms.write import ALL_SHARDS, DROPPED, FILES, IncrementalPlan, WriteShards

STAGING = ".staging"


def build_convert_pipeline(
    p: beam.Pipeline, job: ConvertJob, progress_dir: Optional[str] = None, processes: int = 1,
    spill_dir: Optional[str] = None,
) -> beam.PCollection:
    """Adds the conversion to `p`; returns the one-element PCollection of the published summary.

    Local runs only: `progress_dir`, a folder where the workers note their progress; `processes`, how
    many forked processes parse and write (pipeline/local_runner.py); `spill_dir`, an empty local folder
    where the per-image metadata waits for its shard.
    """
    incremental = None
    if job.incremental:
        job, incremental = _start_incremental(job, p)
    staging_dir = paths.join(paths.join(job.output, STAGING), uuid.uuid4().hex)
    spill = Spill(spill_dir) if spill_dir else None

    labels = [f"Source{index}" if len(job.sources) > 1 else "Source" for index in range(len(job.sources))]
    rules = [JoinRule(source.images, source.format.name) for source in job.sources]
    listings = [
        p | f"{label}/ListImages" >> ListImages(source.images, index, spill)
        for index, (label, source) in enumerate(zip(labels, job.sources))
    ]
    if incremental and incremental["previous"]:  # the index is split by shard: its shard count never changes
        num_shards = p | "IndexShards" >> beam.Create([incremental["previous"]["index_shards"]])
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
        sharded[ALL_SHARDS] = num_shards | "EveryShard" >> beam.FlatMap(lambda n: [(shard, True) for shard in range(n)])
    if job.drop_duplicates:
        dropping = sharded | "DropDuplicates" >> DropDuplicates(
            job.image_policy, rules, spill, incremental and incremental["plan"]
        )
        steps.append(dropping)
        sharded[DROPPED] = dropping.dropped

    label_ids = class_names | "AllClassNames" >> beam.Flatten() | "LabelMap" >> BuildLabelMap(job.label_map_seed)
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
    rejections = (
        [step.rejected for step in steps]
        | "AllRejections" >> beam.Flatten()
        | "CountRejections" >> beam.ParDo(CountRejections())  # counters to watch on Dataflow; the data is the record
    )
    tallies = [step.tally for step in steps] | "AllTallies" >> beam.Flatten() | "Sum" >> beam.CombinePerKey(sum)
    return p | "Publish" >> Publish(
        tallies=tallies,
        rejections=rejections,
        duplicate_groups=duplicate_groups,
        label_ids=label_ids,
        num_shards=num_shards,
        output=job.output,
        staging_dir=staging_dir,
        name=job.name,
        splits=job.splits,
        config=job.settings,
        started_at=job.started_at,
        file_changes=written[FILES],
        incremental=incremental and {key: value for key, value in incremental.items() if key != "plan"},
    )


def _start_incremental(job: ConvertJob, p: beam.Pipeline):
    """On the launcher: take the lock, finish a killed run's publish, clear its staging, read the manifest.

    The lock is released by the publish step; on a local runner also when this process exits (a failed
    run). A run killed outright leaves it, and the next run on this host sees that its process is gone
    (stale). A remote job's launcher may exit while the job runs, so only the job releases it; if the
    job fails, the lock goes stale after --lock_timeout_hours.
    """
    from apache_beam.options.pipeline_options import StandardOptions

    try:
        token = lock.acquire(job.output, job.lock_timeout_hours)
    except lock.LockHeld as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # a refused permission, an unreachable bucket
        raise UsageError(f"cannot take the lock in {job.output}: {_one_line(error)}") from None
    if p.options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct", "BundleBasedDirectRunner"):
        atexit.register(lock.release, job.output, token)
    try:
        state.recover(job.output)
        storage.remove_tree(paths.join(job.output, STAGING))  # what a killed run staged: it starts over
    except Exception as error:
        lock.release(job.output, token)
        raise UsageError(f"cannot finish the interrupted run's publish in {job.output}: {_one_line(error)}") from None
    job = refresh_incremental(job)
    previous = None if job.resplit else job.manifest
    plan = IncrementalPlan(
        run=(job.manifest or {}).get("run", 0) + 1,
        index_paths=state.index_paths(job.output, previous),
        live_files={entry["id"]: (entry["file"], paths.join(job.output, entry["file"])) for entry in (previous or {}).get("files", [])},
        update_changed=job.update_changed,
    )
    return job, {
        "plan": plan,
        "previous": previous,
        "run": plan.run,
        "seed": job.seed,
        "update_changed": job.update_changed,
        "lock_token": token,
        "run_log": job.run_log,
        "replacing": [job.manifest["name"]] if job.manifest else [],
    }


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
