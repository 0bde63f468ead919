"""Shard writing: the one place image bytes are read, checked and turned into records.

Only metadata is grouped by shard: an image's shard is a hash of its join key, so its annotation and
its image file meet in one shard, and each shard's writer joins them in memory. It then reads its
images one at a time, so a worker holds one image in memory, and writes one file per split: an
image's split depends on its bytes (byte-identical copies must share a split), which are not known
until they are read.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Dict, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import paths
from transforms.encode import ImagePolicy, encode_record
from transforms.example import tfrecord_frame
from transforms.images import ImageProblem
from transforms.join import join_shard
from transforms.progress import ProgressNotes
from transforms.model import ImageRecord, Rejection
from transforms.read import REJECTED, read_record_image
from transforms.splits import Splits, assign_split
from transforms.tally import TALLY, CountingDoFn

CONTENT = "content"
DROPPED = "dropped"
CONTENT_BUCKET_DIGITS = 1  # hex digits of sha256 that pick the duplicate-search group: 16 groups
TARGET_SHARD_BYTES = 150 * 1024 * 1024  # TF's guidance: shards of 100-200 MB
MAX_IMAGE_BYTES = 512 * 1024 * 1024  # no photo is this big; reading one would cost the worker its memory


def shard_file_name(name: str, split: str, index: int, num_shards: int) -> str:
    """The TFDS file template, which OD API globs such as `{name}-train.tfrecord-*` also match."""
    return f"{name}-{split}.tfrecord-{index:05d}-of-{num_shards:05d}"


def auto_num_shards(total_image_bytes: int, splits: Optional[Splits]) -> int:
    """Shards per split so the largest split's shards hold about TARGET_SHARD_BYTES each."""
    largest = max(fraction for _, fraction in splits) if splits else 1.0  # source splits: sizes unknown
    return max(1, math.ceil(total_image_bytes * largest / TARGET_SHARD_BYTES))


class _WriteShard(CountingDoFn):
    def __init__(self, staging_dir: str, name: str, seed: int, splits: Splits, policy: ImagePolicy, rules,
                 progress_dir: Optional[str]):
        self._policy = policy
        self._staging_dir = staging_dir
        self._name = name
        self._seed = seed
        self._splits = splits
        self._rules = rules
        self._progress_dir = progress_dir

    def setup(self):
        self._progress = ProgressNotes(self._progress_dir)

    def finish_bundle(self):
        self._progress.flush()
        yield from super().finish_bundle()

    def process(self, element, label_ids: Dict[str, int], num_shards: int):
        shard, grouped = element
        joined = join_shard(grouped["records"], grouped["images"], self._rules)
        self.count("images_read", joined.images_read)
        for rejection in joined.rejections:
            yield beam.pvalue.TaggedOutput(REJECTED, rejection)
        dropped = {tuple(item) for batch in grouped.get(DROPPED, ()) for item in batch}
        files, content = {}, defaultdict(list)
        try:
            # Sorted, so a shard's bytes do not depend on the order the shuffle delivered its records.
            for record in sorted(joined.records, key=lambda record: (record.key, record.images_root, record.source)):
                if (record.images_root, record.key) in dropped:
                    continue  # rejected as a duplicate, and counted, before the shuffle
                yield from self._write_record(record, label_ids, shard, num_shards, files, content)
                self._progress.add("written")
        finally:
            for handle in files.values():
                handle.close()
        for bucket in sorted(content):
            yield beam.pvalue.TaggedOutput(CONTENT, (bucket, content[bucket]))

    def _write_record(self, record: ImageRecord, label_ids, shard, num_shards, files, content):
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
        files[split].writelines(tfrecord_frame(encoded.example))
        content[encoded.sha256[:CONTENT_BUCKET_DIGITS]].append((encoded.sha256, record.key))
        self._tally(encoded, split)

    def _tally(self, encoded, split):
        kept = encoded.boxes.kept
        self.count("images_written")
        self.count("image_bytes_written", len(encoded.image.encoded))
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
    """{"records", "images"[, "dropped"]} sharded metadata -> shard files in the staging folder.

    Outputs rejections, tallies and, for the duplicate search, (sha256 prefix, [(sha256, key)]) lists.
    """

    def __init__(self, *, staging_dir, name, seed, splits, policy, rules, num_shards, label_ids, progress_dir=None):
        super().__init__()
        self._writer = _WriteShard(staging_dir, name, seed, splits, policy, tuple(rules), progress_dir)
        self._num_shards = num_shards  # singleton PCollections: they depend on the data
        self._label_ids = label_ids

    def expand(self, sharded):
        return (
            sharded
            | "GroupByShard" >> beam.CoGroupByKey()
            | "Write"
            >> beam.ParDo(
                self._writer, beam.pvalue.AsSingleton(self._label_ids), beam.pvalue.AsSingleton(self._num_shards)
            ).with_outputs(REJECTED, CONTENT, TALLY)
        )
