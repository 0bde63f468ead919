"""The last step: add up what every step counted, and move the finished dataset into place.

Shards are written under OUTPUT/.staging/RUN/; only when every shard, the label map, the rejections
and the summary are there do they replace the previous dataset of the same name, summary.json last.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence

import apache_beam as beam

from transforms import lock, paths, storage
from transforms import manifest as state
from transforms.label_map import format_label_map
from transforms.model import ITEM_BOX, ITEM_IMAGE, Rejection
from transforms.splits import Splits
from transforms.handoff import README as HANDOFF_README
from transforms.handoff import handoff_readme
from transforms.tfds_metadata import dataset_info_json, features_json
from transforms.tfds_metadata import DATASET_INFO, FEATURES
from transforms.write import shard_file_name

SUMMARY = "summary.json"
LABEL_MAP = "label_map.pbtxt"
REJECTED_FILE = "rejected.jsonl"
DUPLICATE_EXAMPLES = 20


def split_names(splits: Optional[Splits], tallies: Mapping) -> List[str]:
    """The configured splits in their order, or with --splits source the ones the data named."""
    if splits is not None:
        return [name for name, _ in splits]
    return sorted(key[1] for key in tallies if isinstance(key, tuple) and key[0] == "split_images")


def build_summary(
    tallies: Mapping,
    rejections: Sequence[Rejection],
    duplicate_groups: Sequence[Sequence[str]],
    label_ids: Mapping[str, int],
    splits: Optional[Splits],
    num_shards: int,
) -> dict:
    """summary.json's counts (DESIGN.md section 2) from the steps' tallies and rejections."""
    by_item = Counter(rejection.item for rejection in rejections)
    boxes_rejected = by_item[ITEM_BOX]
    return {
        "images_read": tallies.get("images_read", 0),
        "images_written": tallies.get("images_written", 0),
        "images_rejected": by_item[ITEM_IMAGE],
        "boxes": {
            "read": tallies.get("boxes_read", 0),
            "written": tallies.get("boxes_written", 0),
            "clipped": tallies.get("boxes_clipped", 0),
            "rejected": boxes_rejected,
            "on_rejected_items": sum(rejection.boxes for rejection in rejections),
            "dropped_by_class_map": tallies.get("boxes_dropped_by_class_map", 0),
        },
        "image_bytes_written": tallies.get("image_bytes_written", 0),
        "annotation_files_read": tallies.get("annotation_files_read", 0),
        "annotation_size_mismatches": tallies.get("annotation_size_mismatch", 0),
        "conversions": _by_kind(tallies, "conversion"),
        "exif_orientation": _by_kind(tallies, "exif_orientation"),
        "ignored": _by_kind(tallies, "ignored"),
        "splits": {
            split: {
                "images": tallies.get(("split_images", split), 0),
                "boxes": tallies.get(("split_boxes", split), 0),
                "shards": num_shards,
            }
            for split in split_names(splits, tallies)
        },
        "classes": [
            {"id": class_id, "name": name, "boxes": tallies.get(("class_boxes", name), 0)}
            for name, class_id in sorted(label_ids.items(), key=lambda item: item[1])
        ],
        "rejections": dict(sorted(Counter(rejection.reason for rejection in rejections).items())),
        "duplicates": {
            "groups": len(duplicate_groups),
            "images": sum(len(group) for group in duplicate_groups),
            "examples": [list(group) for group in sorted(duplicate_groups)[:DUPLICATE_EXAMPLES]],
            "dropped": tallies.get("duplicate_images_dropped", 0),
        },
    }


def _by_kind(tallies: Mapping, name: str) -> Dict[str, int]:
    return dict(sorted((key[1], n) for key, n in tallies.items() if isinstance(key, tuple) and key[0] == name and n))


class _Publish(beam.DoFn):
    """A plain run's publish: the dataset replaces whatever OUTPUT held, summary.json last."""

    def __init__(self, *, output, staging_dir, name, splits, config, started_at):
        self._output = output
        self._staging_dir = staging_dir
        self._name = name
        self._splits = splits
        self._config = config
        self._started_at = started_at

    def _summary(self, tallies, rejections, duplicate_groups, label_ids, num_shards):
        summary = build_summary(tallies, rejections, duplicate_groups, label_ids, self._splits, num_shards)
        summary["config"] = self._config
        return summary

    def _stage(self, file_name: str, text: str) -> None:
        # backslashreplace: a lone surrogate from a crafted JSON escape becomes \udXXX, still valid JSON
        storage.write_bytes(paths.join(self._staging_dir, file_name), text.encode("utf-8", "backslashreplace"))

    def _stage_metadata(self, label_ids, rejections, dataset_info: str, summary, readme_summary) -> None:
        """The files beside the shards: label map, rejections, TFDS metadata, hand-off README, summary.

        Written with plain json and text (no TensorFlow); the TFDS shard lengths are the writers' reports,
        so no shard is read back.
        """
        self._stage(LABEL_MAP, format_label_map(label_ids))
        self._stage(REJECTED_FILE, "".join(rejection.to_json() + "\n" for rejection in rejections))
        self._stage(DATASET_INFO, dataset_info)
        self._stage(FEATURES, features_json())
        self._stage(HANDOFF_README, handoff_readme(readme_summary, self._output, self._name))
        self._stage(SUMMARY, json.dumps(summary, indent=2) + "\n")

    def process(self, _, tallies, rejections, duplicate_groups, label_ids, num_shards, changes):
        rejections = sorted(rejections, key=Rejection.sort_key)
        summary = self._summary(tallies, rejections, duplicate_groups, label_ids, num_shards)
        summary["durations"] = {"total_seconds": round(time.time() - self._started_at, 3)}

        shards_by_split = {
            split: [shard_file_name(self._name, split, index, num_shards) for index in range(num_shards)]
            for split in split_names(self._splits, tallies)
        }
        shard_names = [shard for shards in shards_by_split.values() for shard in shards]
        staged = set(storage.list_files(paths.join(self._staging_dir, "*")))
        for shard in shard_names:  # a split with no image in a shard still gets its (empty) file
            if paths.join(self._staging_dir, shard) not in staged:
                storage.write_bytes(paths.join(self._staging_dir, shard), b"")
        shard_lengths = {split: [(0, 0)] * num_shards for split in shards_by_split}
        for change in changes:
            shard_lengths[change.split][change.shard] = (change.records, change.bytes)
        self._stage_metadata(label_ids, rejections, dataset_info_json(self._name, shard_lengths), summary, summary)

        # A plain run replaces the dataset: an incremental run's manifest would no longer describe it.
        storage.delete([path for path in (paths.join(self._output, state.MANIFEST),) if storage.exists(path)])
        previous = storage.list_files(paths.join(self._output, f"{self._name}-*.tfrecord-*"))
        storage.delete([path for path in previous if path.rsplit("/", 1)[-1] not in shard_names])
        # summary.json moves last: a reader that sees it sees a complete dataset.
        for batch in (shard_names + [LABEL_MAP, REJECTED_FILE, HANDOFF_README, DATASET_INFO, FEATURES], [SUMMARY]):
            storage.move(
                [paths.join(self._staging_dir, file_name) for file_name in batch],
                [paths.join(self._output, file_name) for file_name in batch],
            )
        storage.remove_tree(self._staging_dir)
        storage.remove_empty_folder(self._staging_dir.rsplit("/", 1)[0])
        storage.remove_tree(paths.join(self._output, state.STATE))
        yield summary


INCREMENTAL_COUNTS = ("new", "changed", "deleted", "unchanged", "removed")


class _PublishIncremental(_Publish):
    """An incremental run's publish: new and rewritten shards, index parts and metadata moved into place
    through the journal, manifest.json last; nothing but a run log when nothing changed. Releases the lock."""

    def __init__(self, *, previous, run, seed, update_changed, lock_token, run_log, replacing=(), **common):
        super().__init__(**common)
        self._previous = previous  # None: a first run (or --resplit), which publishes even an empty dataset
        self._run = run
        self._seed = seed
        self._update_changed = update_changed
        self._lock_token = lock_token
        self._run_log = run_log
        self._replacing = tuple(replacing)  # names of datasets this run replaces (--resplit with a new --name)

    def process(self, _, tallies, rejections, duplicate_groups, label_ids, num_shards, changes):
        try:
            yield self._publish(tallies, rejections, duplicate_groups, label_ids, num_shards, changes)
        finally:
            if self._lock_token:
                lock.release(self._output, self._lock_token)

    def _publish(self, tallies, rejections, duplicate_groups, label_ids, num_shards, changes):
        rejections = sorted(rejections, key=Rejection.sort_key)
        summary = self._summary(tallies, rejections, duplicate_groups, label_ids, num_shards)
        counts = {key: tallies.get(f"incremental_{key}", 0) for key in INCREMENTAL_COUNTS}
        names = split_names(self._splits, tallies)
        published = self._previous is None or bool(changes)
        if published:
            manifest, moves = state.next_manifest(
                self._previous, run=self._run, name=self._name, seed=self._seed, splits=self._config["splits"],
                index_shards=num_shards, label_ids=label_ids, changes=changes, config=self._config,
                class_boxes=state.class_boxes(self._previous, tallies),
            )
        else:
            manifest, moves = self._previous, []
        summary["splits"] = state.split_counts(manifest, names)
        written_by_class = {entry["name"]: entry["boxes"] for entry in summary["classes"]}
        live_by_class = manifest.get("class_boxes", {})
        for entry in summary["classes"]:  # the whole dataset's boxes, as for the splits
            entry["boxes"] = live_by_class.get(entry["name"], 0)
        summary["incremental"] = {
            "run": manifest["run"],
            "published": published,
            **counts,
            "update_changed": self._update_changed,
            "class_boxes_written": {name: n for name, n in written_by_class.items() if n},
            "dataset_images": sum(entry["records"] for entry in manifest["files"]),
            "live_shards": len(manifest["files"]),
        }
        summary["durations"] = {"total_seconds": round(time.time() - self._started_at, 3)}
        if published:
            totals = dict(summary, images_written=summary["incremental"]["dataset_images"],
                          boxes=dict(summary["boxes"], written=sum(split["boxes"] for split in summary["splits"].values())))
            dataset_info = dataset_info_json(self._name, state.tfds_shards(manifest), state.INCREMENTAL_TEMPLATE)
            self._stage_metadata(label_ids, rejections, dataset_info, summary, totals)
            self._stage(state.MANIFEST, json.dumps(manifest, indent=1) + "\n")
            metadata = [LABEL_MAP, REJECTED_FILE, DATASET_INFO, FEATURES, HANDOFF_README, SUMMARY, state.MANIFEST]
            moves = moves + [(paths.join(self._staging_dir, file_name), file_name) for file_name in metadata]
            replaced = []  # a first run or --resplit replaces every shard file of the dataset there
            if self._previous is None:
                for name in sorted({self._name, *self._replacing}):
                    replaced += storage.list_files(paths.join(self._output, f"{name}-*.tfrecord-*"))
            state.publish(self._output, self._staging_dir, moves, deletes=replaced)  # manifest.json last
            state.collect_garbage(self._output, manifest, extra_names=self._replacing)
        else:
            storage.remove_tree(self._staging_dir)
        storage.remove_empty_folder(self._staging_dir.rsplit("/", 1)[0])
        storage.write_bytes(self._run_log, (json.dumps(summary, indent=2) + "\n").encode("utf-8", "backslashreplace"))
        return summary


class Publish(beam.PTransform):
    """Side inputs in, the published summary out (one element)."""

    def __init__(self, *, tallies, rejections, duplicate_groups, label_ids, num_shards, file_changes,
                 incremental=None, **settings):
        super().__init__()
        self._inputs = (tallies, rejections, duplicate_groups, label_ids, num_shards)
        self._file_changes = file_changes  # the writers' FileChange reports
        self._incremental = incremental  # incremental runs: previous, run, seed, update_changed, lock_token, run_log
        self._settings = settings

    def expand(self, pbegin):
        tallies, rejections, duplicate_groups, label_ids, num_shards = self._inputs
        side_inputs = [
            beam.pvalue.AsDict(tallies),
            beam.pvalue.AsList(rejections),
            beam.pvalue.AsList(duplicate_groups),
            beam.pvalue.AsSingleton(label_ids),
            beam.pvalue.AsSingleton(num_shards),
        ]
        side_inputs.append(beam.pvalue.AsList(self._file_changes))
        if self._incremental is None:
            publish = _Publish(**self._settings)
        else:
            publish = _PublishIncremental(**self._settings, **self._incremental)
        return pbegin | "Once" >> beam.Create([None]) | "Publish" >> beam.ParDo(publish, *side_inputs)
