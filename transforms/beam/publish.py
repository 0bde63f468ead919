"""The last step: add up what every step counted, check what the writers staged, and move the finished
dataset into place.

Shards are written under OUTPUT/.staging/RUN/; only when every file a writer reported is there, whole,
are the shards, the label map, the rejections and the summary moved over the previous dataset, through
the journal (transforms/incremental/manifest.py), manifest.json last: a run killed at any moment leaves a journal
that the next run finishes, and a reader sees the old dataset or the new one. A run deletes only the
files its previous manifest named. Releases the run's lock (taken by the command).
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam

from transforms import paths, storage
from transforms.incremental import lock
from transforms.beam.aggregate import DuplicateCounts
from transforms.incremental import manifest as state
from transforms.label_map import format_label_map
from transforms.guards import Limits, refusal
from transforms.outcomes import PublishFailed, PublishRefused
from transforms.beam.rejections import PARTS_FOLDER, merge_parts
from transforms.splits import Splits
from transforms.reports.handoff import README as HANDOFF_README
from transforms.reports.handoff import handoff_readme
from transforms.records.tfds_metadata import dataset_info_json, features_json
from transforms.records.tfds_metadata import DATASET_INFO, FEATURES
from transforms.beam.write import shard_file_name
from transforms.incremental.plan import IncrementalRun

SUMMARY = "summary.json"
REFUSED = ".refused"  # a refused run's summary and rejections (hidden: no glob of OUTPUT's records sees them)
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
    duplicates: Mapping[str, Tuple[int, int, Sequence[Sequence[str]]]],  # DuplicateCounts: (groups, images, examples)
    label_ids: Mapping[str, int],
    splits: Optional[Splits],
    num_shards: int,
) -> dict:
    """summary.json's counts (docs/design.md section 2) from the steps' tallies (rejections counted as staged)."""
    return {
        "images_read": tallies.get("images_read", 0),
        "images_written": tallies.get("images_written", 0),
        "images_rejected": tallies.get("rejected_images", 0),
        "boxes": {
            "read": tallies.get("boxes_read", 0),
            "written": tallies.get("boxes_written", 0),
            "clipped": tallies.get("boxes_clipped", 0),
            "rejected": tallies.get("rejected_boxes", 0),
            "on_rejected_items": tallies.get("boxes_on_rejected_items", 0),
            "dropped_by_class_map": tallies.get("boxes_dropped_by_class_map", 0),
            "dropped_difficult": tallies.get("boxes_dropped_difficult", 0),
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
        # how the ids were given (--class_ids), and whether a source numbering from 0 moved them up by one
        "class_ids": {"rule": getattr(label_ids, "rule", None), "shifted_by": getattr(label_ids, "shifted_by", 0)},
        "rejections": _by_kind(tallies, "rejected"),
        "duplicates_across_splits": _duplicate_counts(duplicates["across_splits"]),
        "duplicates": {
            **_duplicate_counts(duplicates["all"]),
            "dropped": tallies.get("duplicate_images_dropped", 0),
        },
    }


def duplicate_counts(duplicates: Sequence[Tuple[Sequence[str], Sequence[str]]]) -> dict:
    """What DuplicateCounts combines from (keys, splits) of each set of copies, from a list of them. Pure."""
    combine = DuplicateCounts(DUPLICATE_EXAMPLES)
    accumulator = combine.create_accumulator()
    for group in duplicates:
        accumulator = combine.add_input(accumulator, group)
    return combine.extract_output(accumulator)


def _duplicate_counts(counts: Tuple[int, int, Sequence[Sequence[str]]]) -> dict:
    groups, images, examples = counts
    return {"groups": groups, "images": images, "examples": [list(group) for group in sorted(examples)[:DUPLICATE_EXAMPLES]]}


def _by_kind(tallies: Mapping, name: str) -> Dict[str, int]:
    return dict(sorted((key[1], n) for key, n in tallies.items() if isinstance(key, tuple) and key[0] == name and n))


FRAME_BYTES = 16  # TFRecord framing around each record: length, its CRC, the data's CRC


def check_staged(changes: Iterable[state.FileChange]) -> None:
    """Every file a writer reported is in the staging folder, exactly as long as its records make it.

    A writer on another machine than the staging folder's (a local --output on a multi-host runner), a
    file cut short by a full disk, or one deleted meanwhile is found here, before anything moves.
    """
    for change in changes:
        size = storage.size(change.staged)
        expected = None if change.kind == "index" else change.bytes + FRAME_BYTES * change.records
        if size is None:
            raise PublishFailed(
                f"{change.staged} was written by a worker but is not in the staging folder (a worker on another "
                "machine with a local --output? use a shared folder or gs://); the published dataset is unchanged"
            )
        if expected is not None and size != expected:
            raise PublishFailed(
                f"{change.staged} holds {size} bytes, its writer wrote {expected} (a full disk?); "
                "the published dataset is unchanged"
            )


@dataclasses.dataclass(frozen=True)
class PublishTarget:
    """Where and what a run publishes, decided by the command (pipeline/cli.py) under OUTPUT/.lock."""

    output: str
    staging_dir: str
    name: str
    splits: Optional[Splits]  # None: --splits source
    config: dict  # the run's settings, kept in summary.json and manifest.json
    started_at: float
    # a file naming the OUTPUT-relative files of the dataset this run replaces, one a line (read on the
    # worker: it grows with the dataset); None: nothing to replace
    replaces: Optional[str] = None
    lock_token: Optional[str] = None  # set when the publish step releases the lock (remote runners)
    limits: Limits = Limits()


class _Publish(beam.DoFn):
    """A plain run's publish: the dataset replaces the one OUTPUT held (the files its manifest names)."""

    def __init__(self, target: PublishTarget):
        self._target = target

    def process(self, _, tallies, rejection_parts, duplicates, label_ids, num_shards, change_parts):
        try:
            yield self._publish(tallies, rejection_parts, duplicates, label_ids, num_shards, change_parts)
        finally:
            if self._target.lock_token:
                lock.release(self._target.output, self._target.lock_token)

    def _summary(self, tallies, duplicates, label_ids, num_shards):
        summary = build_summary(tallies, duplicates, label_ids, self._target.splits, num_shards)
        summary["config"] = self._target.config
        return summary

    def _stage(self, file_name: str, text: str) -> None:
        # backslashreplace: a lone surrogate from a crafted JSON escape becomes \udXXX, still valid JSON
        storage.write_bytes(paths.join(self._target.staging_dir, file_name), text.encode("utf-8", "backslashreplace"))

    def _stage_metadata(self, label_ids, rejection_parts, dataset_info: str, summary, readme_summary) -> List[str]:
        """The files beside the shards: label map, rejections, TFDS metadata, hand-off README, summary; returns
        their names, summary.json last.

        Written with plain json and text (no TensorFlow); the TFDS shard lengths are the writers' reports,
        so no shard is read back.
        """
        self._stage(LABEL_MAP, format_label_map(label_ids))
        merge_parts(rejection_parts, paths.join(self._target.staging_dir, REJECTED_FILE),
                    paths.join(self._target.staging_dir, PARTS_FOLDER))
        self._stage(DATASET_INFO, dataset_info)
        self._stage(FEATURES, features_json())
        self._stage(HANDOFF_README, handoff_readme(readme_summary, self._target.output, self._target.name))
        self._stage(SUMMARY, json.dumps(summary, indent=2) + "\n")
        return [LABEL_MAP, REJECTED_FILE, DATASET_INFO, FEATURES, HANDOFF_README, SUMMARY]

    def _refuse_if_wrong(self, summary: dict, rejection_parts, **context) -> None:
        """Publish nothing when the result is obviously wrong (transforms/guards.py): this run's summary and
        rejections go to OUTPUT/.refused/ for the user to read, the staging is removed, and the run ends."""
        reason = refusal(summary, self._target.limits, **context)
        if reason is None:
            return
        refused = paths.join(self._target.output, REFUSED)
        storage.remove_tree(refused)
        merge_parts(rejection_parts, paths.join(refused, REJECTED_FILE),
                    paths.join(self._target.staging_dir, PARTS_FOLDER))
        storage.write_bytes(paths.join(refused, SUMMARY),
                            (json.dumps(dict(summary, refused=reason), indent=2) + "\n").encode("utf-8", "backslashreplace"))
        storage.remove_tree(self._target.staging_dir)
        storage.remove_empty_folder(self._target.staging_dir.rsplit("/", 1)[0])
        raise PublishRefused(f"{reason}; this run's summary and rejections are in {refused}/, the published dataset "
                             "is unchanged")

    def _replaced(self) -> Iterator[str]:
        """The paths of the replaced dataset's files."""
        if self._target.replaces:
            for name in storage.read_bytes(self._target.replaces).decode("utf-8").splitlines():
                yield paths.join(self._target.output, name)

    def _publish(self, tallies, rejection_parts, duplicates, label_ids, num_shards, change_parts):
        check_staged(state.read_changes(change_parts))
        summary = self._summary(tallies, duplicates, label_ids, num_shards)
        summary["durations"] = {"total_seconds": round(time.time() - self._target.started_at, 3)}
        self._refuse_if_wrong(summary, rejection_parts)

        reported = {(change.split, change.shard): change for change in state.read_changes(change_parts)}
        files, moves = [], []
        for split in split_names(self._target.splits, tallies):
            for index in range(num_shards):
                file_name = shard_file_name(self._target.name, split, index, num_shards)
                change = reported.get((split, index))
                if change is None:  # no image of this split in this shard: an empty file keeps the -of-N set whole
                    staged = paths.join(self._target.staging_dir, file_name)
                    storage.write_bytes(staged, b"")
                    change = state.FileChange("new", index, staged, split)
                files.append({"file": file_name, "split": split, "records": change.records, "bytes": change.bytes,
                              "boxes": change.boxes})
                moves.append((change.staged, file_name))
        shard_lengths = {}
        for entry in files:
            shard_lengths.setdefault(entry["split"], []).append((entry["records"], entry["bytes"]))
        metadata = self._stage_metadata(label_ids, rejection_parts, dataset_info_json(self._target.name, shard_lengths),
                                        summary, summary)
        manifest = state.plain_manifest(name=self._target.name, seed=self._target.config["seed"],
                                        splits=self._target.config["splits"],
                                        label_ids=label_ids, files=files, config=self._target.config)
        self._stage(state.MANIFEST, json.dumps(manifest, indent=1) + "\n")
        new_paths = {paths.join(self._target.output, file_name) for _, file_name in moves}
        moves += [(paths.join(self._target.staging_dir, name), name) for name in metadata + [state.MANIFEST]]
        deletes = [path for path in self._replaced() if path not in new_paths]
        state.publish(self._target.output, self._target.staging_dir, moves, deletes=deletes)  # manifest.json last
        self._published()
        return summary

    def _published(self) -> None:
        storage.remove_empty_folder(self._target.staging_dir.rsplit("/", 1)[0])
        storage.remove_tree(paths.join(self._target.output, REFUSED))  # an earlier refusal's report no longer applies


INCREMENTAL_COUNTS = ("new", "changed", "deleted", "unchanged", "removed")


def incremental_summary(run_summary: dict, manifest: dict, split_names: Sequence[str], counts: Mapping[str, int],
                        published: bool, update_changed: bool) -> dict:
    """An incremental run's summary.json: this run's counts, the whole dataset's images and boxes per split
    and boxes per class (from the manifest it publishes), and what this run changed. Pure."""
    live_by_class = manifest.get("class_boxes", {})
    return dict(
        run_summary,
        splits=state.split_counts(manifest, split_names),
        classes=[dict(entry, boxes=live_by_class.get(entry["name"], 0)) for entry in run_summary["classes"]],
        incremental={
            "run": manifest["run"],
            "published": published,
            **counts,
            "update_changed": update_changed,
            "class_boxes_written": {entry["name"]: entry["boxes"] for entry in run_summary["classes"] if entry["boxes"]},
            "dataset_images": sum(entry["records"] for entry in manifest["files"]),
            "live_shards": len(manifest["files"]),
        },
    )


def dataset_totals(summary: dict) -> dict:
    """What the output folder's README counts for an incremental dataset: the whole dataset, not this run."""
    boxes = sum(split["boxes"] for split in summary["splits"].values())
    return dict(summary, images_written=summary["incremental"]["dataset_images"],
                boxes=dict(summary["boxes"], written=boxes))


class _PublishIncremental(_Publish):
    """An incremental run's publish: new and rewritten shards, index parts and metadata moved into place
    through the journal, manifest.json last; nothing but a run log when nothing changed."""

    def __init__(self, target: PublishTarget, incremental: IncrementalRun):
        if incremental.previous_run is not None:  # the replaced dataset's files matter only to a run that starts over
            target = dataclasses.replace(target, replaces=None)
        super().__init__(target)
        # The published manifest's run this one extends (previous_run; None: a first run, or --resplit, which
        # publishes even an empty dataset). The manifest itself is read here, on the worker: it grows with the dataset.
        self._incremental = incremental

    def _previous(self) -> Optional[dict]:
        if self._incremental.previous_run is None:
            return None
        try:
            return state.read_published(self._target.output, self._incremental.previous_run)
        except state.StateMoved as error:
            raise PublishFailed(str(error)) from None

    def _publish(self, tallies, rejection_parts, duplicates, label_ids, num_shards, change_parts):
        previous = self._previous()
        check_staged(state.read_changes(change_parts))
        summary = self._summary(tallies, duplicates, label_ids, num_shards)
        counts = {key: tallies.get(f"incremental_{key}", 0) for key in INCREMENTAL_COUNTS}
        names = split_names(self._target.splits, tallies)
        published = previous is None or bool(change_parts)  # a writer with no change writes no part
        if published:
            manifest, moves = state.next_manifest(
                previous, run=self._incremental.run, name=self._target.name, seed=self._incremental.seed,
                splits=self._target.config["splits"], index_shards=num_shards, label_ids=label_ids,
                changes=state.read_changes(change_parts), config=self._target.config,
                class_boxes=state.class_boxes(previous, tallies),
            )
        else:
            manifest, moves = previous, []
        summary = incremental_summary(summary, manifest, names, counts, published, self._incremental.update_changed)
        summary["durations"] = {"total_seconds": round(time.time() - self._target.started_at, 3)}
        previous_images = sum(entry["records"] for entry in (previous or {}).get("files", []))
        self._refuse_if_wrong(
            summary, rejection_parts, new_images_expected=previous is None,
            deleted=counts["deleted"] if self._incremental.update_changed else 0, published_images=previous_images,
        )
        if published:
            dataset_info = dataset_info_json(self._target.name, state.tfds_shards(manifest), state.INCREMENTAL_TEMPLATE)
            metadata = self._stage_metadata(label_ids, rejection_parts, dataset_info, summary, dataset_totals(summary))
            self._stage(state.MANIFEST, json.dumps(manifest, indent=1) + "\n")
            moves = moves + [(paths.join(self._target.staging_dir, name), name) for name in metadata + [state.MANIFEST]]
            if previous is None:  # a first run or --resplit replaces the dataset there
                deletes, garbage = list(self._replaced()), []
            else:
                superseded = state.superseded_names(previous, manifest)
                deletes, garbage = [], [paths.join(self._target.output, name) for name in superseded]
            # manifest.json last
            state.publish(self._target.output, self._target.staging_dir, moves, deletes=deletes, garbage=garbage)
        else:
            storage.remove_tree(self._target.staging_dir)
        self._published()
        log = json.dumps(summary, indent=2) + "\n"
        storage.write_bytes(self._incremental.run_log, log.encode("utf-8", "backslashreplace"))
        return summary


class Publish(beam.PTransform):
    """{"tallies": (name, n), "rejection_parts": part file paths, "duplicate_groups": (keys, splits),
    "label_ids": {name: id} once, "num_shards": n once, "change_parts": the writers' FileChange part paths}
    -> the published summary (one element).
    """

    def __init__(self, target: PublishTarget, incremental: Optional[IncrementalRun] = None):
        super().__init__()
        self._target = target
        self._incremental = incremental

    def expand(self, results):
        side_inputs = [
            beam.pvalue.AsDict(results["tallies"]),
            beam.pvalue.AsList(results["rejection_parts"]),
            # counts and the first examples, combined: no worker holds every set of copies
            beam.pvalue.AsSingleton(results["duplicate_groups"]
                                    | "CountDuplicates" >> beam.CombineGlobally(DuplicateCounts(DUPLICATE_EXAMPLES))),
            beam.pvalue.AsSingleton(results["label_ids"]),
            beam.pvalue.AsSingleton(results["num_shards"]),
            beam.pvalue.AsList(results["change_parts"]),
        ]
        if self._incremental is None:
            publish = _Publish(self._target)
        else:
            publish = _PublishIncremental(self._target, self._incremental)
        once = results["tallies"].pipeline | "Once" >> beam.Create([None])
        return once | "Publish" >> beam.ParDo(publish, *side_inputs)
