"""What one worker of an incremental run holds, on the published state of a dataset grown for years.

    python benchmarks/incremental_state.py [--workdir /tmp/od-tfrecords-state] [--keep]

Builds synthetic published state in --workdir/out (no images, no pipeline run): a manifest.json with
20,000 live shard files and 2,000 index parts of 5,000 entries each, 10,000,000 in total. Every part
holds 5,000 distinct entries as a real one does (key, sha256, fingerprint, split, file, position, boxes,
bytes), but only 40 distinct parts are written and the others are hard links to them, so generating
takes seconds and the disk holds ~45 MB instead of ~2 GB (a copy is made where links are refused).
Then, each in a fresh process (so its peak RSS is its own), measures wall seconds and peak RSS of:

  a) what the command and the graph do with it: read manifest.json at launch, build the incremental
     plan, pickle the writer's, the duplicate hasher's and publish's DoFns (their sizes are printed),
     and the "EveryShard" step's read of the manifest for each shard's index part path;
  b) one shard writer's read of its index part (5,000 entries);
  c) publish: read manifest.json on the worker, next_manifest with 300 changes read from the writers'
     parts (200 new files, 50 rewritten, 50 index parts), and the new manifest's JSON.

The state is deleted afterwards unless --keep. A full Beam pipeline is not run at this scale.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LIVE_FILES = 20_000
INDEX_SHARDS = 2_000
ENTRIES_PER_PART = 5_000  # 2,000 x 5,000 = 10,000,000
DISTINCT_PARTS = 40
RUNS = 250


def _rss_mib() -> float:
    """Peak RSS of this process so far (the imports of Beam alone take ~220 MiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as handle:
        return round(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _file_entries():
    splits = ("train", "val")
    for n in range(LIVE_FILES):
        split = splits[n % 2]
        yield {"id": f"r{1 + n // 80:04d}-{n % 80:05d}-{split}", "file": f"nightly-{split}.tfrecord-{n // 2:05d}",
               "split": split, "records": 500, "bytes": 50_000_000, "boxes": 1500}


def _part_text(part: int) -> str:
    lines = []
    for n in range(ENTRIES_PER_PART):
        digest = hashlib.sha256(f"{part}/{n}".encode()).hexdigest()
        file_number = (part * ENTRIES_PER_PART + n) % LIVE_FILES
        split = "train" if file_number % 2 == 0 else "val"
        lines.append('{"b": 3, "file": "r%04d-%05d-%s", "fp": "%s", "k": "images/%04d/img_%07d.jpg", "n": 123456, '
                     '"pos": %d, "sha": "%s", "split": "%s"}\n'
                     % (1 + file_number // 80, file_number % 80, split, digest[:32], part, n, n % 500, digest, split))
    return "".join(lines)


def generate(output: Path) -> None:
    from transforms.incremental import manifest as state

    output.mkdir(parents=True)
    index = []
    for shard in range(INDEX_SHARDS):
        part = f"{state.STATE}/r{RUNS - shard % 7:04d}/{state.index_part_name(shard)}"
        path = output / part
        path.parent.mkdir(parents=True, exist_ok=True)
        if shard < DISTINCT_PARTS:
            path.write_text(_part_text(shard))
        else:
            source = output / index[shard % DISTINCT_PARTS]
            try:
                os.link(source, path)
            except OSError:
                shutil.copyfile(source, path)
        index.append(part)
    manifest = {
        "format_version": state.FORMAT_VERSION, "run": RUNS, "name": "nightly", "seed": 0,
        "splits": "train=0.8,val=0.2", "index_shards": INDEX_SHARDS, "label_map": {"raccoon": 1},
        "class_boxes": {"raccoon": 1500 * LIVE_FILES}, "files": list(_file_entries()), "index": index, "config": {},
    }
    (output / state.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def _job(workdir: Path):
    from pipeline.options import resolve_convert

    for folder in ("annotations", "images"):
        (workdir / folder).mkdir(exist_ok=True)
    (workdir / "annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    return resolve_convert({"annotations": [str(workdir / "annotations")], "images": [str(workdir / "images")],
                            "output": str(workdir / "out"), "format": "voc", "name": "nightly",
                            "splits": "train=0.8,val=0.2", "incremental": True, "update_changed": True}, [])


def measure_plan(workdir: Path) -> dict:
    """a) the launch's read of the manifest, the plan, the pickled DoFns, and the per-shard markers."""
    from pipeline.graph import Publication, incremental_run, new_staging_dir, publish_target
    from transforms.incremental import manifest as state
    from transforms.beam.aggregate import _HashImages
    from transforms.beam.publish import _PublishIncremental
    from transforms.beam.runtime import REMOTE
    from transforms.beam.write import ShardLayout, _WriteShard
    from transforms.incremental.plan import shard_markers

    base = _rss_now_mib()
    started = time.perf_counter()
    job = _job(workdir)  # reads and checks manifest.json, as the command does under the lock
    launch = time.perf_counter() - started
    started = time.perf_counter()
    incremental = incremental_run(job)
    plan = incremental.plan
    # what the command passes: the files of the dataset in OUTPUT (a run that starts over deletes them)
    staging_dir = new_staging_dir(job.output)
    replaced = f"{staging_dir}/replaced.txt"
    os.makedirs(staging_dir)
    Path(replaced).write_text("".join(f"{name}\n" for name in state.replaced_names(job.output, job.manifest, job.name)))
    publication = Publication(staging_dir, replaced)
    writer = _WriteShard(ShardLayout(staging_dir, job.name, job.seed, job.splits, job.image_policy, ()), plan)
    hasher = _HashImages(job.image_policy, (), REMOTE.exchange, plan)
    publish_dofn = _PublishIncremental(publish_target(job, publication), incremental)
    sizes = {name: len(pickle.dumps(dofn)) for name, dofn in
             (("writer", writer), ("hasher", hasher), ("publish", publish_dofn))}
    pickled = time.perf_counter() - started
    started = time.perf_counter()
    markers = shard_markers(INDEX_SHARDS, plan)
    marking = time.perf_counter() - started
    assert len(markers) == INDEX_SHARDS and all(marker for _, marker in markers)
    return {"launch_read_manifest_s": round(launch, 3), "plan_and_pickle_s": round(pickled, 3),
            "pickled_bytes": sizes, "shard_markers_s": round(marking, 3),
            "rss_before_mib": base, "rss_after_mib": _rss_now_mib(), "peak_rss_mib": _rss_mib(), "live_files": len(job.manifest["files"])}


def measure_index_part(workdir: Path) -> dict:
    """b) one shard writer's read of its index part."""
    from transforms.incremental import manifest as state
    from transforms.incremental.index import read_index_part

    manifest_index = json.loads((workdir / "out" / state.MANIFEST).read_text())["index"]
    path = str(workdir / "out" / manifest_index[1234])
    del manifest_index
    base = _rss_now_mib()
    started = time.perf_counter()
    entries = read_index_part(path)
    seconds = time.perf_counter() - started
    return {"entries": len(entries), "read_s": round(seconds, 3), "rss_before_mib": base, "rss_after_mib": _rss_now_mib(),
            "peak_rss_mib": _rss_mib()}


def measure_publish(workdir: Path) -> dict:
    """c) publish's read of the manifest on the worker and next_manifest with a few hundred changes."""
    from transforms.incremental import manifest as state

    base = _rss_now_mib()
    output = str(workdir / "out")
    started = time.perf_counter()
    previous = state.read_published(output, RUNS)
    read = time.perf_counter() - started
    changes = [state.FileChange("new", shard, f"/staging/{shard}-{split}", split, state.new_file_id(RUNS + 1, shard, split),
                                records=50, bytes=5_000_000, boxes=150)
               for shard in range(100) for split in ("train", "val")]
    changes += [state.FileChange("rewritten", n, f"/staging/rw/{entry['file']}", entry["split"],
                                 state.rewritten_file_id(RUNS + 1, entry["file"]), replaces=entry["file"],
                                 records=499, bytes=49_900_000, boxes=1497)
                for n, entry in enumerate(previous["files"][::400])]
    changes += [state.FileChange("index", shard, f"/staging/{state.index_part_name(shard)}") for shard in range(50)]
    staging = workdir / "staging"
    parts = []
    for shard in sorted({change.shard for change in changes}):  # the writers' parts, one per shard
        parts.append(state.change_part_path(str(staging), shard))
        state.write_changes(parts[-1], [change for change in changes if change.shard == shard])
    del changes
    started = time.perf_counter()
    manifest, moves = state.next_manifest(
        previous, run=RUNS + 1, name="nightly", seed=0, splits="train=0.8,val=0.2", index_shards=INDEX_SHARDS,
        label_ids={"raccoon": 1}, changes=state.read_changes(parts), config={}, class_boxes=state.class_boxes(previous, {}),
    )
    text = json.dumps(manifest, indent=1) + "\n"
    superseded = state.superseded_names(previous, manifest)
    built = time.perf_counter() - started
    return {"changes": len(moves), "read_published_s": round(read, 3), "next_manifest_s": round(built, 3),
            "files": len(manifest["files"]), "moves": len(moves), "superseded": len(superseded),
            "manifest_mib": round(len(text) / 2**20, 1), "rss_before_mib": base, "rss_after_mib": _rss_now_mib(),
            "peak_rss_mib": _rss_mib()}


MEASURES = {"plan": measure_plan, "index_part": measure_index_part, "publish": measure_publish}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/od-tfrecords-state")
    parser.add_argument("--keep", action="store_true", help="leave the synthetic state in --workdir")
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)  # a child process's part
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.measure:
        print(json.dumps(MEASURES[args.measure](workdir)))
        return 0
    if workdir.exists():
        shutil.rmtree(workdir)
    try:
        started = time.perf_counter()
        generate(workdir / "out")
        used = int(subprocess.run(["du", "-sk", str(workdir)], capture_output=True, text=True).stdout.split()[0])
        print(f"generated {LIVE_FILES:,} live files, {INDEX_SHARDS:,} index parts, "
              f"{INDEX_SHARDS * ENTRIES_PER_PART:,} index entries in {time.perf_counter() - started:.1f} s; "
              f"{used / 1024:.0f} MiB on disk")
        for name in MEASURES:
            child = subprocess.run([sys.executable, __file__, "--workdir", str(workdir), "--measure", name],
                                   capture_output=True, text=True, cwd=REPO)
            if child.returncode:
                print(child.stdout + child.stderr, file=sys.stderr)
                return 1
            print(f"{name}: {child.stdout.strip()}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
