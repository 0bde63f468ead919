"""`python -m pipeline convert ...`: argument handling and the report a person reads at the end."""
from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import logging
import os
import re
import sys
import tempfile
from typing import List, Optional, Tuple

from pipeline.errors import UsageError

_FORMAT_HELP_HEADER = "formats (--format; detected from the files when omitted):"


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{message} (see `python -m pipeline {self.prog.split()[-1]} --help`)")


def _build_parser() -> argparse.ArgumentParser:
    from pipeline.inspect import add_inspect_arguments
    from pipeline.options import add_convert_arguments
    from pipeline.verify import add_verify_arguments
    from transforms.formats import FORMATS

    parser = _OneLineErrorParser(
        prog="python -m pipeline",
        description="Object-detection datasets to TensorFlow Object Detection API TFRecords, with Apache Beam.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineErrorParser)
    formats = "\n".join(f"  {fmt.name:9} {fmt.summary}\n            e.g. {fmt.example}" for fmt in FORMATS.values())
    convert = commands.add_parser(
        "convert",
        help="convert a labeled dataset to sharded TFRecords",
        description="Convert a labeled dataset to sharded OD API TFRecords, a label map and a summary. "
        "Any Apache Beam pipeline option (--runner, --direct_num_workers, --project, ...) is passed to Beam.",
        epilog=f"{_FORMAT_HELP_HEADER}\n{formats}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_convert_arguments(convert)
    inspect = commands.add_parser(
        "inspect",
        help="draw what an OD API TFRecord folder holds: contact sheets, charts, index.html",
        description="Contact sheets of sample records (boxes drawn with class names), charts of boxes per class "
        "and of box sizes, and an index.html with the counts and rejections. Reads any OD API TFRecord folder.",
    )
    add_inspect_arguments(inspect)
    verify = commands.add_parser(
        "verify",
        help="read every record of an OD API TFRecord folder and report what is wrong; exit 1 if anything is",
        description="Read every record (CRC-checked) of any OD API TFRecord folder and report each kind of problem "
        "with counts and examples. Exit 0 when no error was found, 1 when one was.",
    )
    add_verify_arguments(verify)
    return parser


def _report(summary: dict, job) -> str:
    lines = [
        f"Wrote {summary['images_written']} of {summary['images_read']} images "
        f"({summary['boxes']['written']} boxes) to {job.output}"
    ]
    for source in job.sources:
        how = "detected" if source.detected else "given"
        lines.append(f"  format: {source.format.name} ({how}) for {source.annotations}")
    name = summary["config"]["name"]
    for split, counts in summary["splits"].items():
        lines.append(
            f"  {split:<6} {counts['images']:>8} images {counts['boxes']:>9} boxes "
            f"{counts['shards']:>4} shard(s)  {name}-{split}.tfrecord-*"
        )
    classes = ", ".join(f"{item['name']} ({item['boxes']})" for item in summary["classes"][:10])
    more = f" and {len(summary['classes']) - 10} more" if len(summary["classes"]) > 10 else ""
    lines.append(f"  label_map.pbtxt: {len(summary['classes'])} classes: {classes}{more}")
    lines += [f"  class ids: a source numbers its classes from 0: its ids are shifted by {n} (0 is the background)" for n in [summary.get("class_ids", {}).get("shifted_by")] if n]
    rejections = ", ".join(f"{reason} {n}" for reason, n in summary["rejections"].items()) or "none"
    boxes = summary["boxes"]
    lines.append(
        f"  rejected.jsonl: {summary['images_rejected']} images (with {boxes['on_rejected_items']} boxes), "
        f"{boxes['rejected']} boxes rejected ({rejections}); {boxes['clipped']} boxes clipped"
    )
    if boxes["dropped_by_class_map"]:
        lines.append(f"  --class_map: {boxes['dropped_by_class_map']} boxes dropped (classes mapped to null)")
    if boxes["dropped_difficult"]:
        lines.append(f"  --skip_difficult: {boxes['dropped_difficult']} boxes marked difficult dropped")
    across = summary["duplicates_across_splits"]
    if summary["duplicates"]["groups"]:
        where = "each group in one split" if not across["groups"] else \
            f"{across['groups']} groups in more than one split: an evaluation leak, e.g. {', '.join(across['examples'][0])}"
        lines.append(
            f"  duplicates: {summary['duplicates']['groups']} groups of byte-identical images "
            f"({summary['duplicates']['images']} images, {where})"
        )
        if across["groups"] and not summary["duplicates"]["dropped"]:
            lines.append("  add --drop_duplicates to keep one copy of each, the one in the first of train, val, test")
    incremental = summary.get("incremental")
    if incremental:
        what = "published" if incremental["published"] else "nothing new: the published dataset is unchanged"
        lines.append(
            f"  incremental run {incremental['run']}: {incremental['new']} new, {incremental['changed']} changed, "
            f"{incremental['deleted']} deleted, {incremental['unchanged']} already ingested; "
            f"{incremental['removed']} old records removed; {what}; the dataset holds {incremental['dataset_images']} "
            f"images in {incremental['live_shards']} shard files (manifest.json)"
        )
        if (incremental["changed"] or incremental["deleted"]) and not incremental["update_changed"]:
            lines.append("  changed and deleted source items are only reported: add --update_changed to rewrite them")
    lines.append(f"  summary.json: all counts and the settings used ({summary['durations']['total_seconds']:.1f} s)")
    return "\n".join(lines)


def _convert(given: dict, beam_args: List[str]) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import StandardOptions

    from pipeline.graph import build_convert_pipeline
    from pipeline.local_runner import (
        is_local_runner, local_engine, local_options, local_processes, local_run, parse_ahead,
    )
    from pipeline.options import is_dry_run, resolve_convert
    from pipeline.console import print_output
    from transforms import paths, storage
    from transforms.beam.publish import SUMMARY
    from transforms.beam.read import read_file

    job = resolve_convert(given, beam_args)
    options = local_options(job.beam_args)
    storage.use_pipeline_options(options)
    runner = options.view_as(StandardOptions).runner
    if is_dry_run(job.beam_args):  # nothing runs, so nothing is locked, staged or published
        from pipeline.dry_run import describe_dry_run

        print_output(describe_dry_run(job, options))
        return 0
    processes = local_processes(options, [source.images for source in job.sources])
    with _output_taken(job, is_local_runner(runner), runner) as (job, publication):
        with local_run(runner, processes) as local, parse_ahead(job, options, local):
            with beam.Pipeline(runner=local_engine(options), options=options) as p:
                build_convert_pipeline(p, job, publication, local)
                # What is imported and built so far lives until exit: out of the collector's sight, collections
                # during the run walk fewer objects, and forked workers do not copy those pages by touching them.
                gc.freeze()
                gc.enable()  # off since main() started (see there)
    summary = json.loads(read_file(job.run_log or paths.join(job.output, SUMMARY)))  # run_log: incremental runs
    print_output(_report(summary, job))
    return 0


@contextlib.contextmanager
def _output_taken(job, local: bool, runner=None):
    """Every run holds OUTPUT/.lock from before it reads OUTPUT's state until its publish is done.

    Under the lock: a killed run's journaled publish is finished and every run's leftover staging is
    removed, then what OUTPUT holds is read (the files this run replaces; an incremental run's manifest).
    A local run that fails removes its own staging (or finishes its publish, if the journal is in place)
    and releases the lock here; a remote job outlives its launcher, so its publish step releases it.
    """
    from pipeline.graph import REPLACED, STAGING, Publication, new_staging_dir
    from pipeline.options import refresh_incremental
    from transforms import paths, storage
    from transforms.incremental import lock
    from transforms.incremental import manifest as state
    from transforms.outcomes import REFUSED

    try:
        token = lock.acquire(job.output, job.lock_timeout_hours, runner=runner, remote=not local)
    except lock.LockHeld as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # a read-only or full disk, a refused permission, an unreachable bucket
        raise UsageError(f"cannot take the lock in {job.output}: {_one_line(error)}; give a writable --output") from None
    publication = None
    try:
        try:
            state.recover(job.output)
            storage.remove_tree(paths.join(job.output, STAGING))  # what a killed or failed run staged
            if job.incremental:
                job = refresh_incremental(job)
            manifest = state.read_manifest(job.output)
            held = manifest["name"] if manifest else _unmanaged_dataset_name(job.output)
            if held and held != job.name and not (job.replace or job.resplit):
                raise UsageError(
                    f"--output {job.output} holds the dataset {held!r}, and one folder holds one dataset: choose "
                    f"another --output, or add --replace to replace {held!r} with {job.name!r}"
                )
            replaces = state.replaced_names(job.output, manifest, held or job.name)
        except UsageError:
            raise
        except Exception as error:
            raise UsageError(f"cannot prepare --output {job.output} (finishing an interrupted publish, clearing "
                             f"staging, reading manifest.json): {_one_line(error)}") from None
        staging_dir = new_staging_dir(job.output)
        replaced = None
        if replaces:  # a file, not a list in the graph: publish reads it on the worker
            replaced = paths.join(staging_dir, REPLACED)
            storage.write_bytes(replaced, "".join(f"{name}\n" for name in replaces).encode("utf-8"))
        publication = Publication(staging_dir, replaced, None if local else token)
        yield job, publication
    except Exception as error:
        failure = None if isinstance(error, UsageError) else _failure_line(error, job.output)  # before the clean-up frees a full disk
        if local and publication is not None:
            _clean_up_failed_run(job.output, publication.staging_dir)
        if failure is None:
            raise
        line, status = failure
        if status == REFUSED[1]:
            from pipeline.hints import refusal_hint
            from transforms.beam.publish import REFUSED as REFUSED_FOLDER

            hint = refusal_hint(job, paths.join(job.output, REFUSED_FOLDER))
            line += f"; hint: {hint}" if hint else ""
        raise RunFailed(line, status) from None
    finally:
        if local:
            lock.release(job.output, token)


def _unmanaged_dataset_name(output: str) -> Optional[str]:
    """The name of the dataset in an output written before every run wrote a manifest, from its summary."""
    from transforms import paths, storage
    from transforms.beam.publish import SUMMARY

    try:
        return json.loads(storage.read_bytes(paths.join(output, SUMMARY)))["config"]["name"]
    except Exception:  # no summary, or not ours: nothing to protect by name
        return None


def _clean_up_failed_run(output: str, staging_dir: str) -> None:
    """A failed local run leaves the published dataset as it was: a publish whose journal is in place is
    finished (its moves may have begun), else the run's staging is removed. Never raises."""
    from transforms.incremental import manifest as state
    from transforms import storage

    try:
        if not state.recover(output):
            storage.remove_tree(staging_dir)
    except Exception:  # the next run finishes or clears it, under the lock
        pass


class RunFailed(Exception):
    """The run ended for a reason a person can act on, with its exit status; nothing new was published."""

    def __init__(self, line: str, status: int):
        super().__init__(line)
        self.status = status


_OS_ERROR = re.compile(r"\[Errno (\d+)\] ([^:'\n]+)(?:: '([^'\n]+)')?")
_OS_ADVICE = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}


def _failure_line(error: BaseException, output: str) -> Optional[Tuple[str, int]]:
    """One line for a failure a person can act on (a full, read-only or forbidden folder; a publish that
    found its staged files short), read from the error's text: runners re-raise a worker's exception as
    their own, with the original's message inside. None for anything else (a bug: its traceback helps)."""
    from transforms.outcomes import ending_in

    text = str(error)
    ending = ending_in(text)
    if ending is not None:
        return ending
    for match in _OS_ERROR.finditer(text):
        code, path = int(match.group(1)), match.group(3) or ""
        if code not in _OS_ADVICE:
            continue
        what = _OS_ADVICE[code]
        temp = tempfile.gettempdir()
        path = path or _full_folder(output, temp) or ""  # a failed write() names no file
        if _inside(path, output):
            where, hint = f"--output {output}", "free space there or choose another --output"
        elif _inside(path, temp):
            where, hint = f"the temporary folder {temp} (TMPDIR)", "free space there or set TMPDIR to a folder with room"
        else:
            where, hint = path or "a folder the run writes", "free space there or choose other folders"
        if code in (errno.EROFS, errno.EACCES):
            hint = "give a writable --output" if where.startswith("--output") else "set TMPDIR to a writable folder" if "TMPDIR" in where else "make it writable"
        return f"{what} in {where} (writing {path}): {hint}; nothing was published, the previous dataset is unchanged", 1
    return None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _full_folder(output: str, temp: str) -> Optional[str]:
    """Of the folders a local run writes (the output, the temporary folder), the one whose disk is full."""
    for folder in (output, temp):
        existing = folder
        while "://" not in existing and not os.path.exists(existing) and existing not in ("", "/"):
            existing = os.path.dirname(existing)
        try:
            disk = os.statvfs(existing)
        except (OSError, ValueError):
            continue
        if disk.f_bavail * disk.f_frsize < 4 * 1024 * 1024:
            return folder
    return None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def underscored(argv: List[str]) -> List[str]:
    """`--drop-duplicates` and `--temp-location=gs://...` as `--drop_duplicates`, `--temp_location=...`: the
    spelling most tools accept; this command's flags and Beam's are spelled with underscores."""
    spelled = []
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            name, equals, value = token[2:].partition("=")
            token = "--" + name.replace("-", "_") + equals + value
        spelled.append(token)
    return spelled


def _run_reader(args: argparse.Namespace) -> int:
    gc.enable()  # reading records allocates and frees all along
    if args.command == "inspect":
        from pipeline.inspect import run_inspect

        return run_inspect(args)
    from pipeline.verify import run_verify

    return run_verify(args)


def main(argv: Optional[List[str]] = None) -> int:
    # Start-up (imports, options, the graph) allocates what lives until exit, so the cyclic collector would
    # only walk the growing heap again and again, on the one core a run's start-up uses: without it the
    # first stage starts at 1.6 s instead of 2.4 s here (docs/performance.md). It is back on as the run
    # starts (_convert, _run_reader), and main leaves it as it found it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        (gc.enable if collecting else gc.disable)()


# Libraries Beam's connectors load wherever they are installed, for features a command never uses. Beam
# guards these imports without a word, so while it loads they count as not installed; afterwards they import
# as usual. Measured here, of every command's start-up: IPython 0.24 s and 20 MiB, Pub/Sub's client 0.12 s.
# Only for the command itself (main() reading sys.argv): Beam's Pub/Sub connector, loaded meanwhile, stays
# without its client, which a notebook that calls main(argv) and then reads Pub/Sub would miss.
# (MongoDB's client is left alone: Beam warns when it cannot import it.)
_UNUSED_BY_COMMANDS = (
    "IPython",  # notebook progress bars: Beam's BigQuery connector -> google-cloud-bigquery -> tqdm.notebook
    "google.cloud.pubsub",  # Beam's Pub/Sub connector (streaming)
)


@contextlib.contextmanager
def _unused_libraries_hidden(command_line: bool):
    """While Beam loads, _UNUSED_BY_COMMANDS count as not installed; a process that already has one keeps it."""
    hidden = [name for name in _UNUSED_BY_COMMANDS if command_line and name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # what `import name` then raises ImportError for
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _main(argv: Optional[List[str]]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A failing step is logged there with its traceback before the run raises it; the command says it in one
    # line (or shows the traceback of what it cannot explain).
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    try:
        with _unused_libraries_hidden(command_line=argv is None):
            parser = _build_parser()  # imports Beam
        args, extra = parser.parse_known_args(underscored(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            parser.print_help()
            return 2
        if args.command in ("inspect", "verify"):
            if extra:  # only convert passes unknown flags on (to Beam)
                raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `python -m pipeline {args.command} --help`)")
            return _run_reader(args)
        given = {key: value for key, value in vars(args).items() if key != "command"}
        return _convert(given, extra)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
