"""The conversion pipeline, top to bottom.

Each source's image files are listed and its annotation files parsed in parallel; the shard count
is sized from the image bytes; annotations and image files (metadata only) are grouped by the shard
their image belongs to, and each shard's writer joins them, reads its images, validates them and
writes the split files; the label map is computed once for all sources; finally the dataset, its
label map, its rejections and its summary are published together.
"""
from __future__ import annotations

import uuid
from typing import Optional

import apache_beam as beam

from pipeline.options import ConvertJob
from transforms import paths
from transforms.aggregate import BuildLabelMap, CountShards, DropDuplicates, FindDuplicates
from transforms.join import JoinRule
from transforms.publish import Publish
from transforms.read import ListImages, ParseAnnotations, ShardImages
from transforms.tally import CountRejections
from transforms.write import DROPPED, WriteShards

STAGING = ".staging"


def build_convert_pipeline(p: beam.Pipeline, job: ConvertJob, progress_dir: Optional[str] = None) -> beam.PCollection:
    """Adds the conversion to `p`; returns the one-element PCollection of the published summary.

    `progress_dir`: a local folder where the workers note their progress (local runs only).
    """
    staging_dir = paths.join(paths.join(job.output, STAGING), uuid.uuid4().hex)

    labels = [f"Source{index}" if len(job.sources) > 1 else "Source" for index in range(len(job.sources))]
    rules = [JoinRule(source.images, source.format.name) for source in job.sources]
    image_lists = [p | f"{label}/ListImages" >> ListImages(source.images) for label, source in zip(labels, job.sources)]
    num_shards = image_lists | "AllImageFiles" >> beam.Flatten() | "CountShards" >> CountShards(job.num_shards, job.splits)

    steps, record_batches, image_batches = [], [], []
    for index, (label, source, images) in enumerate(zip(labels, job.sources, image_lists)):
        parsed = p | f"{label}/ParseAnnotations" >> ParseAnnotations(
            source.format, source.patterns, source.context, job.class_map,
            source_index=index, seed=job.seed, num_shards=num_shards, progress_dir=progress_dir,
        )
        steps.append(parsed)
        record_batches.append(parsed.records)
        image_batches.append(
            images | f"{label}/ShardImages" >> ShardImages(rules[index], source_index=index, seed=job.seed, num_shards=num_shards)
        )
    sharded = {
        "records": record_batches | "AllRecords" >> beam.Flatten(),
        "images": image_batches | "AllImages" >> beam.Flatten(),
    }
    if job.drop_duplicates:
        dropping = sharded | "DropDuplicates" >> DropDuplicates(job.image_policy, rules)
        steps.append(dropping)
        sharded[DROPPED] = dropping.dropped

    label_ids = sharded["records"] | "LabelMap" >> BuildLabelMap(job.label_map_seed)
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
    )
    duplicate_groups = written.content | "FindDuplicates" >> FindDuplicates()

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
    )
