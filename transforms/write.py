"""Shard writing: the one place image bytes are read, checked and turned into records.

Only metadata is grouped by shard. Each shard's writer reads its images one at a time, so a worker
holds one image in memory, and writes one file per split: an image's split depends on its bytes
(byte-identical copies must share a split), which are not known until they are read.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import paths
from transforms.encode import ImagePolicy, encode_record
from transforms.example import tfrecord_frame
from transforms.images import ImageProblem
from transforms.model import ImageRecord, Rejection
from transforms.read import REJECTED, read_record_image
from transforms.splits import Splits, assign_shard, assign_split
from transforms.tally import TALLY, CountingDoFn

CONTENT = "content"
TARGET_SHARD_BYTES = 150 * 1024 * 1024  # TF's guidance: shards of 100-200 MB
MAX_IMAGE_BYTES = 512 * 1024 * 1024  # no photo is this big; reading one would cost the worker its memory


def shard_file_name(name: str, split: str, index: int, num_shards: int) -> str:
    """The TFDS file template, which OD API globs such as `{name}-train.tfrecord-*` also match."""
    return f"{name}-{split}.tfrecord-{index:05d}-of-{num_shards:05d}"


def auto_num_shards(total_image_bytes: int, splits: Optional[Splits]) -> int:
    """Shards per split so the largest split's shards hold about TARGET_SHARD_BYTES each."""
    largest = max(fraction for _, fraction in splits) if splits else 1.0  # source splits: sizes unknown
    return max(1, math.ceil(total_image_bytes * largest / TARGET_SHARD_BYTES))


class _AssignShard(beam.DoFn):
    def __init__(self, seed: int):
        self._seed = seed

    def process(self, record: ImageRecord, num_shards: int):
        yield (assign_shard(record.key, self._seed, num_shards), num_shards), record


class _WriteShard(CountingDoFn):
    def __init__(self, staging_dir: str, name: str, seed: int, splits: Splits, policy: ImagePolicy):
        self._policy = policy
        self._staging_dir = staging_dir
        self._name = name
        self._seed = seed
        self._splits = splits

    def process(self, element: Tuple[Tuple[int, int], Iterable[ImageRecord]], label_ids: Dict[str, int]):
        (shard, num_shards), records = element
        files = {}
        try:
            # Sorted, so a shard's bytes do not depend on the order the shuffle delivered its records.
            for record in sorted(records, key=lambda record: record.key):
                yield from self._write_record(record, label_ids, shard, num_shards, files)
        finally:
            for handle in files.values():
                handle.close()

    def _write_record(self, record: ImageRecord, label_ids, shard, num_shards, files):
        image_path = record.source if record.embedded_format else paths.join(record.images_root, record.key)
        if self._splits is None and record.source_split is None:
            detail = "--splits source, but neither the image's path nor its annotation file names a split"
            yield from self._reject(record, Rejection(image_path, "split_unknown", detail))
            return
        if record.image_bytes > MAX_IMAGE_BYTES:
            detail = f"{record.image_bytes} bytes; images over {MAX_IMAGE_BYTES} bytes are not read"
            yield from self._reject(record, Rejection(image_path, "image_too_large", detail))
            return
        try:
            data = read_record_image(record)
        except ImageProblem as problem:
            yield from self._reject(record, problem.rejection(image_path))
            return
        except Exception as error:  # gone since the listing, permissions, a flaky store: one rejection
            yield from self._reject(record, Rejection(image_path, "image_unreadable", str(error)))
            return
        try:
            encoded = encode_record(record, data, self._policy, label_ids)
        except ImageProblem as problem:
            yield from self._reject(record, problem.rejection(image_path))
            return
        except Exception as error:  # a decoder's surprise costs this image, not the run
            detail = f"{type(error).__name__}: {error}"
            yield from self._reject(record, Rejection(image_path, "image_unprocessable", detail))
            return
        for rejection in encoded.boxes.rejected:
            yield beam.pvalue.TaggedOutput(REJECTED, rejection)
        if self._splits is None:
            split = record.source_split
        else:
            split = assign_split(encoded.sha256, self._seed, self._splits)
        if split not in files:
            path = paths.join(self._staging_dir, shard_file_name(self._name, split, shard, num_shards))
            files[split] = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        files[split].write(tfrecord_frame(encoded.example))
        yield beam.pvalue.TaggedOutput(CONTENT, (encoded.sha256, (record.key, split)))
        self._tally(encoded, split)

    def _tally(self, encoded, split):
        kept = encoded.boxes.kept
        self.count("images_written")
        self.count(("split_images", split))
        self.count(("split_boxes", split), len(kept))
        self.count("boxes_written", len(kept))
        self.count("boxes_clipped", encoded.boxes.clipped)
        self.count("annotation_size_mismatch", int(encoded.size_mismatch))
        if encoded.image.conversion:
            self.count(("conversion", encoded.image.conversion))
        if encoded.image.exif:
            self.count(("exif_orientation", encoded.image.exif))
        for box in kept:
            self.count(("class_boxes", box.box.label))

    @staticmethod
    def _reject(record: ImageRecord, rejection: Rejection):
        yield beam.pvalue.TaggedOutput(REJECTED, dataclasses.replace(rejection, boxes=len(record.boxes)))


class WriteShards(beam.PTransform):
    """Records -> shard files in the staging folder; outputs rejections, (sha256, (key, split)) and tallies."""

    def __init__(self, *, staging_dir, name, seed, splits, policy, num_shards, label_ids):
        super().__init__()
        self._policy = policy
        self._staging_dir = staging_dir
        self._name = name
        self._seed = seed
        self._splits = splits
        self._num_shards = num_shards  # a singleton PCollection: it may depend on the data's size
        self._label_ids = label_ids

    def expand(self, records):
        return (
            records
            | "AssignShard" >> beam.ParDo(_AssignShard(self._seed), beam.pvalue.AsSingleton(self._num_shards))
            | "GroupByShard" >> beam.GroupByKey()
            | "Write"
            >> beam.ParDo(
                _WriteShard(self._staging_dir, self._name, self._seed, self._splits, self._policy),
                beam.pvalue.AsSingleton(self._label_ids),
            ).with_outputs(REJECTED, CONTENT, TALLY)
        )
