"""Dataset-wide facts computed once: the label map, the shard count, the duplicate groups."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Dict

import apache_beam as beam

from transforms.encode import ImagePolicy, prepare_record_image
from transforms.image_prep import VALIDATE_STRUCTURE
from transforms.label_map import extend_label_map
from transforms.model import Rejection
from transforms.read import REJECTED, read_record_image
from transforms.tally import TALLY, CountingDoFn
from transforms.splits import Splits
from transforms.write import auto_num_shards


class BuildLabelMap(beam.PTransform):
    """Records -> one {class name: id} dict, extending `seed` without renumbering it."""

    def __init__(self, seed: Dict[str, int]):
        super().__init__()
        self._seed = dict(seed)

    def expand(self, records):
        seed = self._seed
        return (
            records
            | "ClassNames" >> beam.FlatMap(lambda record: {box.label for box in record.boxes if box.label})
            | "Distinct" >> beam.Distinct()
            | "All" >> beam.combiners.ToList()
            | "Number" >> beam.Map(lambda names: extend_label_map(seed, names))
        )


class CountShards(beam.PTransform):
    """Records -> the number of shards per split: fixed by the user, or sized from the image bytes.

    Never from the number of workers: the same data must give the same files on every runner.
    """

    def __init__(self, requested: int, splits: Splits):
        super().__init__()
        self._requested = requested
        self._splits = splits

    def expand(self, records):
        if self._requested:
            return records.pipeline | "Requested" >> beam.Create([self._requested])
        splits = self._splits
        return (
            records
            | "ImageBytes" >> beam.Map(lambda record: record.image_bytes)
            | "Total" >> beam.CombineGlobally(sum)
            | "Size" >> beam.Map(lambda total: auto_num_shards(total, splits))
        )


class FindDuplicates(beam.PTransform):
    """(sha256, (key, split)) -> sorted key lists of the images that share their bytes."""

    def expand(self, content):
        return (
            content
            | "BySha256" >> beam.GroupByKey()
            | "Keys" >> beam.Map(lambda item: sorted(key for key, _ in item[1]))
            | "Shared" >> beam.Filter(lambda keys: len(keys) > 1)
        )


class _HashImage(beam.DoFn):
    """(sha256 of the bytes the record will hold, record): the same content the writer's split uses."""

    def __init__(self, policy: ImagePolicy):
        self._policy = dataclasses.replace(policy, validate=VALIDATE_STRUCTURE)  # the writer validates

    def process(self, record):
        try:
            data = read_record_image(record)
            digest = hashlib.sha256(prepare_record_image(record, data, self._policy).encoded).hexdigest()
        except Exception:  # unusable: the writer reads it again and rejects it with the reason
            digest = "unusable:" + record.key
        yield digest, record


class _KeepFirst(CountingDoFn):
    def process(self, element):
        _, records = element
        kept, *copies = sorted(records, key=lambda record: record.key)
        yield kept
        self.count("duplicate_images_dropped", len(copies))
        for copy in copies:
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                Rejection(copy.source, "image_duplicate", f"{copy.key} has the same bytes as {kept.key}", boxes=len(copy.boxes)),
            )


class DropDuplicates(beam.PTransform):
    """Records -> one record per distinct image content (the first by path); the others rejected.

    Deciding before the writer needs each image's hash before the shuffle, so this reads every image
    a second time (and converts the few that need it twice); it runs only when --drop_duplicates asks.
    """

    def __init__(self, policy: ImagePolicy):
        super().__init__()
        self._policy = policy

    def expand(self, records):
        return (
            records
            | "Hash" >> beam.ParDo(_HashImage(self._policy))
            | "ByContent" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(_KeepFirst()).with_outputs(REJECTED, TALLY, main="records")
        )
