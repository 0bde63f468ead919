"""`python -m pipeline verify OUTPUT`: read every record of any OD API TFRecord folder and judge it.

Exit 0 when no error was found (notes may remain), 1 when one was, 2 for unusable arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import zlib
from typing import Dict, List, Optional, Tuple

from pipeline.console import print_output
from pipeline.errors import UsageError
from transforms import storage
from transforms.incremental.manifest import journal_path
from transforms.label_map import LabelMapError, parse_label_map
from transforms.records.reader import BOX_KEYS, ExampleError, parse_example, read_frames
from transforms.reports.record_files import RecordFile, find_label_map, find_record_files, read_file_text
from transforms.reports.verify_checks import ERROR, Finding, Report, Where, check_example


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUTPUT", help="a folder (or gs:// prefix) of TFRecord files, or one file")
    parser.add_argument(
        "--label_map",
        metavar="FILE",
        help="the label_map.pbtxt to check labels against (default: label_map.pbtxt or *label_map*.pbtxt in OUTPUT)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON, for machines")


def record_files_or_fail(output: str) -> List[RecordFile]:
    """The record files under OUTPUT; a UsageError (exit 2) when there are none, e.g. a mistyped path."""
    if storage.is_local(output) and not os.path.exists(output):
        raise UsageError(f"{output} does not exist")
    try:
        files = find_record_files(output)
    except Exception as error:  # FileSystems reports a missing gs:// bucket or folder in several ways
        raise UsageError(f"cannot list {output}: {error}") from None
    if not files:
        raise UsageError(f"no TFRecord files (*.tfrecord*, *.record*) in {output}")
    return files


def load_label_map(output: str, given: Optional[str]) -> Tuple[Optional[str], Optional[Dict[int, str]], Optional[str]]:
    """(path, {id: name}, problem) of the label map: the one given, else one found beside the records."""
    path = given or find_label_map(output)
    if path is None:
        return None, None, None
    try:
        text = read_file_text(path)
    except Exception as error:
        if given:
            raise UsageError(f"--label_map {given}: cannot read it ({type(error).__name__})") from None
        return path, None, f"{path}: {error}"
    try:
        return path, {class_id: name for name, class_id in parse_label_map(text).items()}, None
    except LabelMapError as error:
        if given:
            raise UsageError(f"--label_map {given}: {error}") from None
        return path, None, f"{path}: {error}"


def verify_folder(output: str, label_map_path: Optional[str] = None) -> Tuple[Report, Optional[str]]:
    """Read and check every record under `output`; the report and the label map used."""
    files = record_files_or_fail(output)
    path, label_map, problem = load_label_map(output, label_map_path)
    report = Report(label_map)
    if problem:
        report.add(Finding("label_map_invalid", problem), None)
    if not os.path.isfile(output) and storage.exists(journal_path(output)):
        report.add(Finding("publish_interrupted", f"{journal_path(output)} lists moves not yet done"), None)
    for record_file in files:
        report.files += 1
        where = Where(record_file.relative, None, record_file.split)
        frames = 0
        try:
            with storage.open_records(record_file.path) as stream:
                for frame in read_frames(stream):
                    frames += 1
                    where = Where(record_file.relative, frame.index, record_file.split)
                    if frame.problem:
                        report.add(Finding(*frame.problem), where)
                        continue
                    try:
                        features = parse_example(frame.data)
                    except ExampleError as error:
                        report.add(Finding("record_unparseable", str(error)), where)
                        continue
                    findings, facts = check_example(features, label_map)
                    boxes = min(len(features[key].values) if key in features else 0 for key in BOX_KEYS)
                    report.add_record(where, findings, facts, boxes)
        except (OSError, EOFError, zlib.error) as error:  # unreadable, or a .gz that is not gzip
            report.add(Finding("file_unreadable", f"{type(error).__name__}: {error}"), where)
        report.frames += frames
        if not frames:
            report.add(Finding("file_empty", "no records"), where)
    report.finish()
    return report, path


def format_report(report: Report, output: str, label_map_path: Optional[str]) -> str:
    data = report.to_dict()
    splits = ", ".join(f"{split} {counts['records']} records/{counts['boxes']} boxes" for split, counts in data["splits"].items())
    lines = [f"Read {data['files']} files, {data['records']} records ({splits or 'none'}) in {output}"]
    lines.append(f"  label map: {label_map_path or 'none'}")
    errors = [kind for kind, problem in data["problems"].items() if problem["severity"] == ERROR]
    lines.append("  CLEAN: no errors" if data["clean"] else f"  NOT CLEAN: {len(errors)} kind(s) of error")
    for kind, problem in data["problems"].items():
        lines.append(f"  {problem['severity'].upper():5} {kind:<30} {problem['count']:>7}  {problem['meaning']}")
        for example in problem["examples"]:
            lines.append(f"        {_place(example)}{example['detail']}")
    return "\n".join(lines)


def _place(example: dict) -> str:
    """`file #record: `, `file: ` for a finding about a whole file, nothing for one about the folder."""
    if "file" not in example:
        return ""
    return f"{example['file']}: " if example["record"] is None else f"{example['file']} #{example['record']}: "


def run_verify(args: argparse.Namespace) -> int:
    report, label_map_path = verify_folder(args.output, args.label_map)
    if args.json:
        print_output(json.dumps({**report.to_dict(), "label_map": label_map_path}, indent=2))
    else:
        print_output(format_report(report, args.output, label_map_path))
    return 0 if report.clean else 1
