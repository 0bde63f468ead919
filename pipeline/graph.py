"""The conversion pipeline, top to bottom.

Each source's annotation files are parsed in parallel and joined with its image files by path, and
the sources merge into one dataset; the label map and the shard count are computed once for all of
it; records (metadata only) are grouped by shard and each shard's writer reads its images, validates
them and writes the split files; finally the dataset, its label map, its rejections and its summary
are published together.
"""
from __future__ import annotations

import uuid

import apache_beam as beam

from pipeline.options import ConvertJob
from transforms import paths
from transforms.aggregate import BuildLabelMap, CountShards, DropDuplicates, FindDuplicates
from transforms.join import JoinImages
from transforms.publish import Publish
from transforms.read import ListImages, ParseAnnotations
from transforms.write import WriteShards

STAGING = ".staging"


def build_convert_pipeline(p: beam.Pipeline, job: ConvertJob) -> beam.PCollection:
    """Adds the conversion to `p`; returns the one-element PCollection of the published summary."""
    staging_dir = paths.join(paths.join(job.output, STAGING), uuid.uuid4().hex)

    steps, joined_records = [], []
    for index, source in enumerate(job.sources):
        label = f"Source{index}" if len(job.sources) > 1 else "Source"
        parsed = p | f"{label}/ParseAnnotations" >> ParseAnnotations(
            source.format, source.patterns, source.context, job.class_map
        )
        image_files = p | f"{label}/ListImages" >> ListImages(source.images)
        joined = (parsed.records, image_files) | f"{label}/JoinImages" >> JoinImages(source.images, source.format)
        steps += [parsed, joined]
        joined_records.append(joined.records)
    records = joined_records | "AllSources" >> beam.Flatten()
    if job.drop_duplicates:
        distinct = records | "DropDuplicates" >> DropDuplicates(job.image_policy)
        steps.append(distinct)
        records = distinct.records

    label_ids = records | "LabelMap" >> BuildLabelMap(job.label_map_seed)
    num_shards = records | "CountShards" >> CountShards(job.num_shards, job.splits)
    written = records | "WriteShards" >> WriteShards(
        staging_dir=staging_dir,
        name=job.name,
        seed=job.seed,
        splits=job.splits,
        policy=job.image_policy,
        num_shards=num_shards,
        label_ids=label_ids,
    )
    duplicates = written.content | "FindDuplicates" >> FindDuplicates()

    steps.append(written)
    rejections = [step.rejected for step in steps] | "AllRejections" >> beam.Flatten()
    tallies = [step.tally for step in steps] | "AllTallies" >> beam.Flatten() | "Sum" >> beam.CombinePerKey(sum)
    return p | "Publish" >> Publish(
        tallies=tallies,
        rejections=rejections,
        duplicate_groups=duplicates,
        label_ids=label_ids,
        num_shards=num_shards,
        output=job.output,
        staging_dir=staging_dir,
        name=job.name,
        splits=job.splits,
        config=job.settings,
        started_at=job.started_at,
    )
