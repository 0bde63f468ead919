"""`python -m pipeline inspect OUTPUT --report DIR`: pictures and counts of what a TFRecord folder holds.

One pass over every record: counts for the charts, and per split the N records with the smallest hash
kept as samples. Then the contact sheets, the charts and index.html are written to DIR (local or gs://).
"""
from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import os
import re
import zlib
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

from pipeline.errors import UsageError
from pipeline.console import print_output
from pipeline.verify import load_label_map, record_files_or_fail
from transforms import paths, storage
from transforms.records.reader import ExampleError, od_record, parse_example, read_frames, split_order
from transforms.reports import inspect_report as report
from transforms.reports.record_files import read_file_text

SUMMARY, REJECTED = "summary.json", "rejected.jsonl"
REJECTED_SHOWN = 100


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUTPUT", help="a folder (or gs:// prefix) of TFRecord files, or one file")
    parser.add_argument("--report", required=True, metavar="DIR", help="folder to write the PNGs and index.html to")
    parser.add_argument("--samples", type=_positive, default=16, metavar="N", help="sample records drawn per split (default 16)")
    parser.add_argument("--split", metavar="S", help="only this split (as named by the file names)")


@dataclasses.dataclass
class Collected:
    stats: Dict[str, report.SplitStats]
    samples: Dict[str, list]  # split -> heap of (inverted sample key, file, index, record bytes)


def _add_frame(frame, record_file, split_stats, heap: list, samples: int, label_names) -> None:
    try:
        record = od_record(parse_example(frame.data)) if frame.data is not None else None
    except ExampleError:
        record = None
    if record is None:  # verify says why; inspect shows what can be read
        split_stats.unreadable += 1
        return
    split_stats.add(record, label_names)
    # A max-heap on the key (bytes inverted) holds the `samples` smallest keys seen so far.
    entry = (bytes(255 - b for b in report.sample_key(frame.data)), record_file.relative, frame.index, frame.data)
    if len(heap) < samples:
        heapq.heappush(heap, entry)
    else:
        heapq.heappushpop(heap, entry)


def collect(files, split: Optional[str], samples: int, label_names) -> Collected:
    """Count every record and keep each split's `samples` records with the smallest sample key."""
    stats: Dict[str, report.SplitStats] = defaultdict(report.SplitStats)
    heaps: Dict[str, list] = defaultdict(list)
    for record_file in files:
        if split is not None and record_file.split != split:
            continue
        split_stats = stats[record_file.split]
        split_stats.files += 1
        try:
            with storage.open_records(record_file.path) as stream:
                for frame in read_frames(stream):
                    _add_frame(frame, record_file, split_stats, heaps[record_file.split], samples, label_names)
        except (OSError, EOFError, zlib.error):  # unreadable, or a .gz that is not gzip: verify says why
            split_stats.unreadable_files += 1
    order = sorted(stats, key=split_order)
    return Collected({split: stats[split] for split in order}, dict(heaps))



def _read_optional_json(path: str) -> Optional[dict]:
    try:
        return json.loads(read_file_text(path)) if storage.exists(path) else None
    except ValueError:
        return None


def _read_rejections(path: str) -> Tuple[List[dict], int]:
    if not storage.exists(path):
        return [], 0
    lines = [line for line in read_file_text(path).splitlines() if line.strip()]
    shown = []
    for line in lines[:REJECTED_SHOWN]:
        try:
            shown.append(json.loads(line))
        except ValueError:
            shown.append({"detail": line})
    return shown, len(lines)


def _file_safe(split: str) -> str:
    return re.sub(r"[^\w.-]+", "_", split)


def run_inspect(args: argparse.Namespace) -> int:
    files = record_files_or_fail(args.output)
    if args.split is not None and args.split not in {f.split for f in files}:
        found = ", ".join(sorted({f.split for f in files}))
        raise UsageError(f"--split {args.split}: the files in {args.output} name the splits {found}")
    _, label_names, _ = load_label_map(args.output, None)
    label_names = label_names or {}
    collected = collect(files, args.split, args.samples, label_names)
    classes = report.ordered_classes(collected.stats, label_names)
    colours = report.class_colours(classes)

    write = lambda name, data: storage.write_bytes(paths.join(args.report, name), data)
    if storage.is_local(args.report):
        os.makedirs(args.report, exist_ok=True)
    sheets, positions = {}, {}
    for split in collected.stats:
        chosen = sorted(collected.samples.get(split, []), key=lambda entry: entry[0], reverse=True)  # smallest key first
        samples = [(file, index, od_record(parse_example(data))) for _, file, index, data in chosen]
        sheet, tiles = report.contact_sheet(samples, colours, label_names)
        sheets[split] = f"samples-{_file_safe(split)}.png"
        write(sheets[split], report.png_bytes(sheet))
        positions[split] = [dataclasses.asdict(tile) for tile in tiles]
    write("samples.json", (json.dumps(positions, indent=1) + "\n").encode())
    write("boxes_per_class.png", report.class_chart(collected.stats, classes, colours))
    write("box_sizes.png", report.size_chart(collected.stats))

    # Only our folders have these; for another tool's folder (or a single file) they are simply absent.
    summary = _read_optional_json(paths.join(args.output, SUMMARY))
    rejected, rejected_total = _read_rejections(paths.join(args.output, REJECTED))
    class_ids = {name: class_id for class_id, name in label_names.items()}
    page = report.index_html(
        folder=args.output, stats=collected.stats, classes=classes, colours=colours, class_ids=class_ids,
        sheets=sheets, summary=summary, rejected=rejected, rejected_total=rejected_total,
    )
    write("index.html", page.encode("utf-8"))
    total = sum(s.records for s in collected.stats.values())
    counts = ", ".join(f"{split} {s.records}" for split, s in collected.stats.items())
    print_output(f"Inspected {total} records ({counts}) in {args.output}\n"
                 f"  {paths.join(args.report, 'index.html')}: {len(sheets)} contact sheet(s), boxes per class, box sizes")
    return 0

