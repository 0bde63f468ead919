"""Shard writing: the one place image bytes are read, checked and turned into records.

Only metadata is grouped by shard: an image's shard is a hash of its join key, so its annotation and
its image file meet in one shard, and each shard's writer joins them in memory. It then reads its
images one at a time, so a worker holds one image in memory, and writes one file per split: an
image's split depends on its bytes (byte-identical copies must share a split), which are not known
until they are read.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from typing import Dict, Iterable, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.incremental import manifest as state
from transforms.incremental.index import IndexEntry, format_index, read_index_part
from transforms.incremental.plan import IncrementalPlan, index_part_path
from transforms import paths
from transforms.records.encode import ImagePolicy, encode_record, unlabeled_rejection
from transforms.records.example import tfrecord_frame
from transforms.images.probe import ImageProblem
from transforms.join import JoinRule, join_shard
from transforms.beam.runtime import REMOTE, HandlingDoFn, Runtime
from transforms.model import ImageRecord, Rejection, box_rejections
from transforms.beam.read import REJECTED, read_record_image
from transforms.beam.content_groups import content_batches
from transforms.splits import Splits, assign_split
from transforms.beam.tally import TALLY

CONTENT = "content"  # the image hashes for the duplicate search: an output, and the kind they are spilled as
DROPPED = "dropped"
FILES = "files"  # the path of each writer's part of FileChange reports (new files; incremental: rewritten, index)
REWRITE = "rewrite"  # staging subfolder of rewritten live shards
TARGET_SHARD_BYTES = 100 * 1024 * 1024  # TF's guidance is 100-200 MB; the low end gives more shards to write in parallel
# ...and at most about this many images: a writer holds its shard's records in memory (~2 KB each), and
# thumbnails would otherwise put 100,000 in one shard.
TARGET_SHARD_IMAGES = 10_000
MAX_IMAGE_BYTES = 512 * 1024 * 1024  # no photo is this big; reading one would cost the worker its memory


def shard_file_name(name: str, split: str, index: int, num_shards: int) -> str:
    """The TFDS file template, which OD API globs such as `{name}-train.tfrecord-*` also match."""
    return f"{name}-{split}.tfrecord-{index:05d}-of-{num_shards:05d}"


def auto_num_shards(total_images: int, total_image_bytes: int, splits: Optional[Splits]) -> int:
    """Shards per split so the largest split's shards hold about TARGET_SHARD_BYTES, and at most about
    TARGET_SHARD_IMAGES images, each."""
    largest = max(fraction for _, fraction in splits) if splits else 1.0  # source splits: sizes unknown
    by_bytes = math.ceil(total_image_bytes * largest / TARGET_SHARD_BYTES)
    by_images = math.ceil(total_images * largest / TARGET_SHARD_IMAGES)
    return max(1, by_bytes, by_images)


class _ShardFiles:
    """One shard's split files in the staging folder, opened as records arrive, and what went into each."""

    def __init__(self, staging_dir: str, name: str, shard: int, num_shards: int):
        self._handles = {}
        self._staging_dir, self._name, self._shard, self._num_shards = staging_dir, name, shard, num_shards
        self.counts = defaultdict(lambda: [0, 0, 0])  # split -> [records, record bytes, boxes]
        self.hashes = []  # (sha256, key, split) of every record written, for the duplicate search

    def path(self, split: str) -> str:
        return paths.join(self._staging_dir, shard_file_name(self._name, split, self._shard, self._num_shards))

    def write(self, split: str, frames, size: int, boxes: int) -> int:
        """Appends a record's frames to its split's file; returns the record's position in that file."""
        if split not in self._handles:
            self._handles[split] = FileSystems.create(self.path(split), compression_type=CompressionTypes.UNCOMPRESSED)
        self._handles[split].writelines(frames)
        counts = self.counts[split]
        position = counts[0]
        counts[0], counts[1], counts[2] = counts[0] + 1, counts[1] + size, counts[2] + boxes
        return position

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()


@dataclasses.dataclass(frozen=True)
class _Written:
    sha256: str
    split: str
    position: int  # in its split's file
    size: int  # bytes of the serialized record
    boxes: int


@dataclasses.dataclass(frozen=True)
class ShardLayout:
    """What every shard writer writes by: where, under which name, with which splits, seed and image checks."""

    staging_dir: str
    name: str
    seed: int
    splits: Splits
    policy: ImagePolicy
    rules: Tuple[JoinRule, ...]  # one per source: how its annotations meet its image files


class _WriteShard(HandlingDoFn):
    def __init__(self, layout: ShardLayout, incremental: Optional[IncrementalPlan] = None, runtime: Runtime = REMOTE):
        super().__init__(runtime)
        self._layout = layout
        self._incremental = incremental

    def portable(self, element):
        shard, grouped = element
        return shard, {tag: list(values) for tag, values in grouped.items()}

    def handle(self, element, label_ids: Dict[str, int], num_shards: int):
        shard, grouped = element
        exchange = self._runtime.exchange
        joined = join_shard(*exchange.shard_inputs(shard, grouped), self._layout.rules)
        self.count("images_read", joined.images_read)
        for rejection in joined.rejections:
            yield beam.pvalue.TaggedOutput(REJECTED, rejection)
        dropped = {tuple(item) for batch in grouped.get(DROPPED, ()) for item in batch}
        files = _ShardFiles(self._layout.staging_dir, self._layout.name, shard, num_shards)
        plan = self._incremental
        ingested = read_index_part(index_part_path(grouped)) if plan else {}
        seen, remove, entries = set(), set(), {}
        try:
            # Sorted, so a shard's bytes do not depend on the order the shuffle delivered its records.
            for record in sorted(joined.records, key=lambda record: (record.key, record.images_root, record.source)):
                if (record.images_root, record.key) in dropped:
                    # rejected as a duplicate, with the boxes it carries, before the shuffle; the boxes its
                    # parser rejected are reported here, on their own, as when it is written
                    yield from _rejected(box_rejections(record))
                    continue
                if plan:
                    ident, fingerprint = state.identity(record, len(self._layout.rules)), state.fingerprint(record)
                    seen.add(ident)
                    if not self._is_to_write(plan, ingested.get(ident), fingerprint):
                        yield from _rejected(box_rejections(record))  # reported every run, until fixed
                        continue
                rejections, written = self._write_record(record, label_ids, files)
                yield from _rejected(rejections)
                self.note("written")
                if plan and written:
                    entries[ident] = IndexEntry(ident, written.sha256, fingerprint, written.split,
                                                file=state.new_file_id(plan.run, shard, written.split),
                                                position=written.position, boxes=written.boxes, size=written.size)
                    if ident in ingested:
                        remove.add(ident)  # its old record leaves its old shard
        finally:
            files.close()
        for group, batches in content_batches(files.hashes):
            for element in exchange.send(CONTENT, group, batches, marker=True):
                yield beam.pvalue.TaggedOutput(CONTENT, element)
        changes = list(self._new_files(shard, files, plan))
        if plan:
            changes += self._update_state(plan, shard, ingested, seen, remove, entries)
        if changes:
            part = state.change_part_path(self._layout.staging_dir, shard)
            state.write_changes(part, changes)
            yield beam.pvalue.TaggedOutput(FILES, part)

    def _is_to_write(self, plan: IncrementalPlan, previous: Optional[IndexEntry], fingerprint: str) -> bool:
        """An incremental run writes what is new, and what changed if --update_changed; counts each kind."""
        if previous is None:
            self.count("incremental_new")
            return True
        if previous.fingerprint == fingerprint:
            self.count("incremental_unchanged")  # ingested before: its image is not even read
            return False
        self.count("incremental_changed")
        return plan.update_changed

    def _new_files(self, shard, files: _ShardFiles, plan: Optional[IncrementalPlan]):
        """Report each staged file with its records, record bytes and boxes: publish reads none of them back."""
        for split, (records, size, boxes) in sorted(files.counts.items()):
            file_id = state.new_file_id(plan.run, shard, split) if plan else ""
            yield state.FileChange("new", shard, files.path(split), split, file_id, records=records, bytes=size, boxes=boxes)

    def _update_state(self, plan: IncrementalPlan, shard, ingested, seen, remove, entries):
        """Rewrite live shards without removed records, and write this shard's index; yields their reports."""
        deleted = sorted(set(ingested) - seen)
        self.count("incremental_deleted", len(deleted))
        if plan.update_changed:
            remove.update(deleted)
        kept = {ident: entry for ident, entry in ingested.items() if ident not in remove}
        rewritten = sorted({ingested[ident].file for ident in remove})
        live = plan.live_paths(rewritten) if rewritten else {}  # only this shard's files, from the manifest
        for file_id in rewritten:
            old = [entry for entry in ingested.values() if entry.file == file_id]
            removed = {entry.position for entry in old if entry.key in remove}
            yield self._rewrite(plan, shard, file_id, live[file_id], old[0].split, removed, kept)
        self.count("incremental_removed", len(remove))
        if entries or remove:
            kept.update(entries)
            staged = paths.join(self._layout.staging_dir, state.index_part_name(shard))
            with FileSystems.create(staged, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                handle.write(format_index(kept).encode("utf-8"))
            yield state.FileChange("index", shard, staged)

    def _rewrite(self, plan: IncrementalPlan, shard, file_id, live, split, removed_positions, kept):
        """A live shard file ((file name, path) `live`) without the records at `removed_positions`, staged
        under its own name."""
        file_name, live_path = live
        new_id = state.rewritten_file_id(plan.run, file_name)
        staged = paths.join(paths.join(self._layout.staging_dir, REWRITE), file_name)
        by_position = {entry.position: entry for entry in kept.values() if entry.file == file_id}
        records = size = boxes = 0
        with FileSystems.create(staged, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for position, data in enumerate(state.read_frames_of(live_path)):
                if position in removed_positions:
                    for text in _class_texts(data):  # the dataset's box counts per class go down
                        self.count(("removed_class_boxes", text))
                    continue
                handle.writelines(tfrecord_frame((data,)))
                entry = by_position.get(position)
                if entry is not None:
                    entry.file, entry.position = new_id, records
                    boxes += entry.boxes or 0
                records += 1
                size += len(data)
        return state.FileChange("rewritten", shard, staged, split, new_id, replaces=file_name, records=records,
                                bytes=size, boxes=boxes)

    def _write_record(self, record: ImageRecord, label_ids, files: _ShardFiles) -> Tuple[Iterable[Rejection], Optional[_Written]]:
        """Reads, checks and writes one record's image: (its rejections, what was written or None).

        The boxes its parser rejected (`record.rejected_boxes`) are reported as box rejections, beside the
        image's own rejection (which carries the boxes the record carries) or its written record; when
        they and the checks here leave it no box, it is rejected as image_boxes_all_rejected with them all.
        """
        if self._layout.policy.skip_difficult and any(box.difficult for box in record.boxes):
            kept = tuple(box for box in record.boxes if not box.difficult)
            self.count("boxes_dropped_difficult", len(record.boxes) - len(kept))
            record = dataclasses.replace(record, boxes=kept)
        image_path = record.source if record.embedded_format else paths.join(record.images_root, record.key)
        rejected = lambda rejection: (
            itertools.chain([dataclasses.replace(rejection, boxes=len(record.boxes))], box_rejections(record)), None)
        if self._layout.splits is None and record.source_split is None:
            detail = "--splits source, but neither the image's path nor its annotation file names a split"
            return rejected(Rejection(image_path, "split_unknown", detail))
        if record.image_bytes > MAX_IMAGE_BYTES:
            detail = f"{record.image_bytes} bytes; images over {MAX_IMAGE_BYTES} bytes are not read"
            return rejected(Rejection(image_path, "image_too_large", detail))
        try:
            data = read_record_image(record, last_read=True)
        except ImageProblem as problem:
            return rejected(problem.rejection(image_path))
        except Exception as error:  # gone since the listing, permissions, a flaky store: one rejection
            return rejected(Rejection(image_path, "image_unreadable", str(error)))
        try:
            encoded = encode_record(record, data, self._layout.policy, label_ids)
        except ImageProblem as problem:
            return rejected(problem.rejection(image_path))
        except Exception as error:  # a decoder's surprise costs this image, not the run
            return rejected(Rejection(image_path, "image_unprocessable", f"{type(error).__name__}: {error}"))
        unlabeled = unlabeled_rejection(record, encoded.boxes, self._layout.policy, image_path)
        if unlabeled is not None:  # nothing of it is written, hashed or tallied; its boxes go with it
            return [unlabeled], None
        if self._layout.splits is None:
            split = record.source_split
        else:
            split = assign_split(encoded.sha256, self._layout.seed, self._layout.splits)
        size, boxes = sum(len(chunk) for chunk in encoded.example), len(encoded.boxes.kept)
        position = files.write(split, tfrecord_frame(encoded.example), size, boxes)
        files.hashes.append((encoded.sha256, record.key, split))
        self._tally(encoded, split)
        return itertools.chain(box_rejections(record), encoded.boxes.rejected), _Written(encoded.sha256, split, position,
                                                                                         size, boxes)

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


def _rejected(rejections):
    for rejection in rejections:
        yield beam.pvalue.TaggedOutput(REJECTED, rejection)


def _class_texts(data: bytes):
    from transforms.records.reader import parse_example

    feature = parse_example(data).get("image/object/class/text")
    return [value.decode("utf-8", "replace") for value in feature.values] if feature and feature.kind == "bytes" else []


class WriteShards(beam.PTransform):
    """{"records", "images"[, "dropped", "shards"]} sharded metadata -> shard files in the staging folder.

    On a local run the records and image files are read from the spill folder, and the "shards"
    markers make every shard's writer run. Outputs rejections, tallies, the paths of the writers' parts
    of FileChange reports (transforms/incremental/manifest.py) and, for the duplicate search,
    (group, (second hex digit, packed [(sha256, key)])) batches (transforms/beam/content_groups.py), or one
    marker per group of the spilled ones.
    """

    def __init__(self, layout: ShardLayout, *, num_shards, label_ids, incremental: Optional[IncrementalPlan] = None,
                 runtime: Runtime = REMOTE):
        super().__init__()
        self._writer = _WriteShard(layout, incremental, runtime)
        self._num_shards = num_shards  # singleton PCollections: they depend on the data
        self._label_ids = label_ids

    def expand(self, sharded):
        return (
            sharded
            | "GroupByShard" >> beam.CoGroupByKey()
            | "Write"
            >> beam.ParDo(
                self._writer, beam.pvalue.AsSingleton(self._label_ids), beam.pvalue.AsSingleton(self._num_shards)
            ).with_outputs(REJECTED, CONTENT, TALLY, FILES)
        )
