"""Dataset-wide facts computed once: the label map, the shard count, the duplicate groups."""
from __future__ import annotations

from typing import Dict

import apache_beam as beam

from transforms.label_map import extend_label_map
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
