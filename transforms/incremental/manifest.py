"""The published state of an incremental dataset: manifest.json, the ingested-keys index, the publish journal.

`OUTPUT/manifest.json` is written last and atomically (a rename) by every incremental run that changed
something. It names the live shard files (with their split, records, bytes and boxes), the label map,
the settings that must not change (name, seed, splits, the number of index shards), and where the
ingested-keys index lives. The index is split by shard, one JSON-lines file per shard under
`OUTPUT/.state/rNNNN/`, so a shard writer reads only its own part: one line per ingested image with its
identity (`k`), content hash (`sha`), annotation fingerprint (`fp`), split, the id of the live file that
holds it and its position there, its boxes and record bytes.

Publishing many files is not atomic, so it is journaled: `OUTPUT/.state/publishing.json` lists every
move (staging -> OUTPUT, the manifest last) and is itself put in place by a rename before the first
move. A run killed while publishing leaves the journal; the next run finishes it (a move whose source
is gone was done) before it reads the manifest. Pure functions here, plus the few file operations.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from transforms import paths, storage
from transforms.model import ImageRecord

MANIFEST = "manifest.json"
STATE = ".state"  # index parts and the publish journal (hidden: no OUTPUT glob of records sees it)
JOURNAL = "publishing.json"
RUNS = "runs"  # one JSON file per incremental run: its summary, also when it changed nothing
FORMAT_VERSION = 1
INCREMENTAL_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}"  # TFDS template of incremental outputs


def live_file_name(name: str, split: str, index: int) -> str:
    """The n-th live file of a split: matches the OD API glob `{name}-{split}.tfrecord-*` and TFDS's
    `{SHARD_INDEX}` template; later runs append indices, so names never collide."""
    return f"{name}-{split}.tfrecord-{index:05d}"


def index_part_name(shard: int) -> str:
    return f"index-{shard:05d}.jsonl"


def new_file_id(run: int, shard: int, split: str) -> str:
    return f"r{run:04d}-{shard:05d}-{split}"


def rewritten_file_id(run: int, file_name: str) -> str:
    return f"r{run:04d}-rw-{file_name}"


def identity(record: ImageRecord, sources: int) -> str:
    """What an image is across runs: its path relative to --images (with the root when sources are merged)."""
    return record.key if sources == 1 else paths.join(record.images_root, record.key)


# Box fields added after the first published indexes: they enter a fingerprint only when a source sets
# them, so the fingerprints of published images (and their "unchanged" verdict) do not move.
_LATER_BOX_FIELDS = ("view",)


def fingerprint(record: ImageRecord) -> str:
    """A stable hash of everything the annotation says about an image (not where the annotation file is)."""
    boxes = [{name: value for name, value in dataclasses.asdict(box).items()
              if value is not None or name not in _LATER_BOX_FIELDS} for box in record.boxes]
    content = [record.source_id, record.units, record.annotated_size, record.source_split, record.embedded_format, boxes]
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:32]


# --- the manifest ------------------------------------------------------------------------------------


def read_manifest(output: str) -> Optional[dict]:
    path = paths.join(output, MANIFEST)
    if not storage.exists(path):
        return None
    manifest = json.loads(storage.read_bytes(path).decode("utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown format_version {manifest.get('format_version')!r}")
    return manifest


class StateMoved(ValueError):
    """OUTPUT/manifest.json is not the one the command read at launch (another run published meanwhile)."""


def read_published(output: str, run: int) -> dict:
    """OUTPUT's incremental manifest, read where it is needed (a worker) rather than shipped with the job,
    checked to be run `run`'s: the state the command started from, under the lock."""
    manifest = read_manifest(output)
    found = "missing" if manifest is None else ("a plain run's" if is_plain(manifest) else f"run {manifest.get('run')}'s")
    if manifest is None or is_plain(manifest) or manifest.get("run") != run:
        raise StateMoved(
            f"{paths.join(output, MANIFEST)} is {found}, but this run started from run {run}'s: another run "
            "changed the output meanwhile (was its lock removed by hand?); nothing of this run is published"
        )
    return manifest


def live_file_names(output: str, run: int, file_ids: Iterable[str]) -> Dict[str, str]:
    """{file id: file name} of these live shard files, from the published manifest of run `run`."""
    wanted = set(file_ids)
    return {entry["id"]: entry["file"] for entry in read_published(output, run)["files"] if entry["id"] in wanted}


def index_paths(output: str, manifest: Optional[dict]) -> Tuple[Optional[str], ...]:
    """The absolute path of each shard's index part (None: no image of that shard ingested yet)."""
    if not manifest:
        return ()
    return tuple(paths.join(output, part) if part else None for part in manifest["index"])


@dataclasses.dataclass(frozen=True)
class FileChange:
    """A shard writer's report of one staged file: a new one, or a live one rewritten without some records."""

    kind: str  # "new", "rewritten" or "index"
    shard: int
    staged: str
    split: str = ""
    file_id: str = ""
    replaces: str = ""  # rewritten: the live file name it replaces
    records: int = 0
    bytes: int = 0
    boxes: int = 0


CHANGES_FOLDER = "changes"  # staging subfolder: one part per shard of its writer's FileChange reports


def change_part_path(staging_dir: str, shard: int) -> str:
    return paths.join(paths.join(staging_dir, CHANGES_FOLDER), f"shard-{shard:05d}.jsonl")


def write_changes(path: str, changes: Sequence[FileChange]) -> None:
    """One writer's reports, a JSON line each: publish reads them a part at a time, no list of every
    file a run staged travels through the runner."""
    lines = "".join(json.dumps(dataclasses.asdict(change), sort_keys=True) + "\n" for change in changes)
    storage.write_bytes(path, lines.encode("utf-8"))


def read_changes(parts: Iterable[str]) -> Iterator[FileChange]:
    """The FileChange reports of the writers' parts (paths), part by part in path order."""
    for path in sorted(parts):
        for line in storage.read_bytes(path).decode("utf-8").splitlines():
            yield FileChange(**json.loads(line))


def next_manifest(
    previous: Optional[dict], *, run: int, name: str, seed: int, splits: str, index_shards: int,
    label_ids: Mapping[str, int], changes: Iterable[FileChange], config: dict,
    class_boxes: Optional[Mapping[str, int]] = None,
) -> Tuple[dict, List[Tuple[str, str]]]:
    """The new manifest and the (staged path, OUTPUT-relative name) moves that publish it, in order:
    rewritten shards first (a glob never sees an old and a new copy of a record), then new shards and
    index parts. Pure."""
    files = [dict(entry) for entry in previous["files"]] if previous else []
    index = list(previous["index"]) if previous else [None] * index_shards
    moves: List[Tuple[str, str]] = []
    by_name = {entry["file"]: entry for entry in files}
    by_kind = {"rewritten": [], "new": [], "index": []}  # one pass: `changes` may be read from the parts once
    for change in changes:
        by_kind[change.kind].append(change)
    for change in sorted(by_kind["rewritten"], key=lambda c: c.replaces):
        by_name[change.replaces].update(id=change.file_id, records=change.records, bytes=change.bytes, boxes=change.boxes)
        moves.append((change.staged, change.replaces))
    per_split = Counter(entry["split"] for entry in files)  # the next file index of each split
    for change in sorted(by_kind["new"], key=lambda c: (c.split, c.shard)):
        file_name = live_file_name(name, change.split, per_split[change.split])
        per_split[change.split] += 1
        files.append({"id": change.file_id, "file": file_name, "split": change.split, "records": change.records,
                      "bytes": change.bytes, "boxes": change.boxes})
        moves.append((change.staged, file_name))
    for change in sorted(by_kind["index"], key=lambda c: c.shard):
        part = f"{STATE}/r{run:04d}/{index_part_name(change.shard)}"
        index[change.shard] = part
        moves.append((change.staged, part))
    manifest = {
        "format_version": FORMAT_VERSION,
        "run": run,
        "name": name,
        "seed": seed,
        "splits": splits,
        "index_shards": index_shards,
        "label_map": dict(sorted(label_ids.items(), key=lambda item: item[1])),
        "class_boxes": dict(sorted((class_boxes or {}).items())),  # boxes per class in the live records
        "files": files,
        "index": index,
        "config": config,
    }
    return manifest, moves


PLAIN = "plain"  # the "kind" of a plain run's manifest: no index; the next run, of either kind, replaces it whole


def plain_manifest(*, name: str, seed: int, splits: str, label_ids: Mapping[str, int],
                   files: Sequence[dict], config: dict) -> dict:
    """A plain run's manifest: the shard files it published ({file, split, records, bytes, boxes}), so
    the next run deletes exactly those and nothing a listing happens to match. Pure."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": PLAIN,
        "name": name,
        "seed": seed,
        "splits": splits,
        "label_map": dict(sorted(label_ids.items(), key=lambda item: item[1])),
        "files": list(files),
        "config": config,
    }


def is_plain(manifest: Optional[dict]) -> bool:
    return bool(manifest) and manifest.get("kind") == PLAIN


def class_boxes(previous: Optional[dict], tallies: Mapping) -> Dict[str, int]:
    """Boxes per class in the live records: the published counts, plus this run's, minus the removed."""
    counts = dict((previous or {}).get("class_boxes", {}))
    for key, n in tallies.items():
        if isinstance(key, tuple) and key[0] in ("class_boxes", "removed_class_boxes"):
            counts[key[1]] = counts.get(key[1], 0) + (n if key[0] == "class_boxes" else -n)
    return {name: n for name, n in counts.items() if n}


def split_counts(manifest: dict, split_names: Iterable[str]) -> Dict[str, dict]:
    """{split: {images, boxes, shards}} of the whole published dataset."""
    counts = {split: {"images": 0, "boxes": 0, "shards": 0} for split in split_names}
    for entry in manifest["files"]:
        split = counts.setdefault(entry["split"], {"images": 0, "boxes": 0, "shards": 0})
        split["images"] += entry["records"]
        split["boxes"] += entry["boxes"]
        split["shards"] += 1
    return counts


def tfds_shards(manifest: dict) -> Dict[str, List[Tuple[int, int]]]:
    """split -> [(records, bytes)] in file-index order, for tfds_metadata.dataset_info_json."""
    shards: Dict[str, List[Tuple[int, int]]] = {}
    for entry in manifest["files"]:  # appended in index order per split
        shards.setdefault(entry["split"], []).append((entry["records"], entry["bytes"]))
    return shards


# --- publishing with a journal ----------------------------------------------------------------------


def journal_path(output: str) -> str:
    return paths.join(paths.join(output, STATE), JOURNAL)


def publish(output: str, staging_dir: str, moves: Sequence[Tuple[str, str]], deletes: Sequence[str] = (),
            garbage: Sequence[str] = ()) -> None:
    """Delete `deletes` (paths), then move staged files into OUTPUT in order (manifest.json must be the
    last), then delete `garbage` (files the new manifest no longer names), journaled first. Deleting the
    replaced shards before the first move means a reader globbing OUTPUT sees some old records or some
    new ones, never an image twice."""
    plan = {"staging": staging_dir, "deletes": list(deletes), "garbage": list(garbage),
            "moves": [[src, paths.join(output, dst)] for src, dst in moves]}
    staged_plan = paths.join(staging_dir, JOURNAL)
    storage.write_bytes(staged_plan, json.dumps(plan, indent=1).encode())
    if storage.is_local(output):
        import os

        os.makedirs(paths.join(output, STATE), exist_ok=True)
    storage.move([staged_plan], [journal_path(output)])  # a rename: the journal is whole or absent
    _finish(output, plan)


def _finish(output: str, plan: dict) -> None:
    if all(storage.exists(src) for src, _ in plan["moves"]):  # once a move is done, the deletes were all done
        storage.delete([path for path in plan.get("deletes", ()) if storage.exists(path)])
    for src, dst in plan["moves"]:
        if storage.is_local(dst):
            import os

            os.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
        if storage.exists(src):  # gone: moved before a crash
            storage.move([src], [dst])
    storage.delete([path for path in plan.get("garbage", ()) if storage.exists(path)])
    storage.delete([journal_path(output)])
    storage.remove_tree(plan["staging"])
    _remove_empty_state_folders(output)


def recover(output: str) -> bool:
    """Finish a publish a killed run left journaled; True when there was one. Call holding the lock."""
    path = journal_path(output)
    if not storage.exists(path):
        return False
    _finish(output, json.loads(storage.read_bytes(path).decode("utf-8")))
    return True


def published_names(manifest: Optional[dict]) -> List[str]:
    """Every OUTPUT-relative file a manifest names as its dataset's: shard files and index parts. A run
    deletes only these (of the manifest it replaces or supersedes), never what a listing happens to match."""
    if not manifest:
        return []
    return [entry["file"] for entry in manifest["files"]] + [part for part in manifest.get("index", ()) if part]


_TEMPLATE_SHARD = re.compile(r"^(?P<name>[A-Za-z0-9_]+)-[A-Za-z0-9_]+\.tfrecord-\d{5}(-of-\d{5})?$")


def unmanaged_shards(output: str, names: Iterable[str]) -> List[str]:
    """The shard files of datasets `names` in an OUTPUT that has no manifest (written before there were
    plain-run manifests): the files directly in OUTPUT named exactly by this project's templates."""
    wanted = set(names)
    found = []
    for path in storage.list_files(storage.literal(output.rstrip("/")) + "/*.tfrecord-*"):
        match = _TEMPLATE_SHARD.match(path.rsplit("/", 1)[-1])
        if match and match.group("name") in wanted:
            found.append(path.rsplit("/", 1)[-1])
    return found


def replaced_names(output: str, manifest: Optional[dict], name: str) -> List[str]:
    """What the dataset in OUTPUT consists of, for a run that replaces it: its manifest's files, or in an
    output without one, the shard files of this run's dataset name."""
    return published_names(manifest) if manifest else unmanaged_shards(output, [name])


def superseded_names(previous: Optional[dict], manifest: dict) -> List[str]:
    """Files the previous manifest named and the new one does not (removed shards, replaced index parts)."""
    live = set(published_names(manifest))
    return [name for name in published_names(previous) if name not in live]


def _remove_empty_state_folders(output: str) -> None:
    if storage.is_local(output):
        import os

        state = paths.join(output, STATE)
        for folder in sorted(os.listdir(state)) if os.path.isdir(state) else ():
            storage.remove_empty_folder(paths.join(state, folder))
        storage.remove_empty_folder(state)


def run_log_name(started_at: float) -> str:
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
    return f"{RUNS}/{stamp}-{uuid.uuid4().hex[:8]}.json"


def read_frames_of(path: str) -> Iterator[bytes]:
    """The records of a live shard file (CRC-checked), for rewriting it without some of them."""
    from transforms.records.reader import read_frames

    with storage.open_records(path) as stream:
        for frame in read_frames(stream):
            if frame.problem is not None:
                raise ValueError(f"{path}: {frame.problem.detail}")
            yield frame.data
