"""The local runner's set-up: its engine, its options, how many cores it uses, its LocalRun, and the parse
tasks it parses ahead while the graph is built (`parse_ahead`, transforms/local/ahead.py).

Beam's DirectRunner runs a job in one process by default, which leaves all but one core idle. Its
multi_processing mode starts fresh worker interpreters that import Beam and exchange every element
with the runner over gRPC. A local run of 10,000 images or more instead hands the parse and write
steps' elements to worker processes forked from the launcher (transforms/local/pool.py), one per core;
the user can set the number with --local_processes. Other runners already run one worker per core: 1.

Kept only where it wins by a quarter or more. Measured here (2 cores; 640x480 JPEGs; medians of 3-4
paired runs, wall seconds), forked workers / in one process / Beam's multi_processing with 2 workers:
3.52 / 3.89 / 7.15 s at 3,000 images (one process is within 10%, so below PARALLEL_FROM_IMAGES nothing
is forked); 4.60 / 5.96 / 7.22 s at 10,000 (the others take x1.25 and x1.63 as long, paired); 20.5 /
32.7 / 26.2 s at 50,000 (x1.61, x1.31). The same shard bytes in every mode.

A local run also names its engine: Beam's FnApiRunner, which the DirectRunner itself uses, but without
the DirectRunner's first try of Prism, which it downloads from GitHub when it can. That try is a
network call on every run and, where it succeeds, a different engine on a user's laptop than in CI;
where it fails, as here, it costs 0.1 s (a 100-element pipeline: 0.18 s through the DirectRunner,
0.08 s through the FnApiRunner named). Kept for the engine, not the speed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from typing import Iterator, Optional, Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipeline.errors import UsageError
from transforms import storage
from transforms.beam.read import IMAGE_EXTENSIONS, ParseSettings
from transforms.local import spill
from transforms.local.ahead import AheadSource, ParseAhead, ShardSizing
from transforms.local.pool import grpc_threads_alive
from transforms.local.run import LocalRun

PARALLEL_FROM_IMAGES = 10_000  # where forked workers win by a quarter or more (see above)
_DIRECT_RUNNERS = (None, "DirectRunner", "direct")


class LocalOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--local_processes",
            type=int,
            default=None,
            help="processes that parse and write on this machine with the DirectRunner "
            f"(default: one per core for {PARALLEL_FROM_IMAGES}+ images, else 1)",
        )


def is_local_runner(runner) -> bool:
    """The DirectRunner: the job runs in this process (and the processes it forks), with a spill folder."""
    return runner in _DIRECT_RUNNERS


def runs_on_this_host(runner) -> bool:
    """Does the runner run every worker on this machine whatever its options? The DirectRunner, and the
    runners Beam lists as local (the FnApiRunner, Prism, ...) however they are spelled: by name, in lower
    case, without `Runner`, or as the class's dotted path. Any other runner may spread its workers over
    several hosts, so a local path would name a different disk on each."""
    if is_local_runner(runner):
        return True
    name = str(runner).rsplit(".", 1)[-1].lower()
    return any(name in (local.lower(), local.lower()[: -len("runner")]) for local in StandardOptions.LOCAL_RUNNERS)


class _OptionsViewedOnce(PipelineOptions):
    """Pipeline options whose views are each made once.

    Beam makes a new view, a fresh parse of every registered option, each time a step being applied asks
    for one: about 250 times while this graph is built, 0.1-0.2 s of a local run's start-up here. A view
    keeps no value of its own (every view reads and writes its source's one dictionary of values), so the
    first view of each kind serves every later request.
    """

    def view_as(self, cls):
        views = self.__dict__.setdefault("_views", {})  # not an option: past PipelineOptions.__setattr__
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]


def local_options(beam_args: Sequence[str]) -> PipelineOptions:
    """The run's options; a local run skips Beam's construction-time type inference unless asked for, and
    views its options once each.

    That inference decompiles every DoFn's bytecode (about 0.7 s a run here) and checks nothing in this
    pipeline, whose steps declare no types; distributed runners keep it, since it can choose coders.
    """
    options = PipelineOptions(list(beam_args))
    if not is_local_runner(options.view_as(StandardOptions).runner):
        return options
    given = any(arg.split("=")[0] in ("--pipeline_type_check", "--no_pipeline_type_check") for arg in beam_args)
    return _OptionsViewedOnce([*beam_args] if given else [*beam_args, "--no_pipeline_type_check"])


def local_engine(options: PipelineOptions):
    """The runner object for a local run (the FnApiRunner, set up as the DirectRunner sets it up), else None."""
    if not is_local_runner(options.view_as(StandardOptions).runner):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)


def _at_least(images_roots: Sequence[str], count: int) -> bool:
    """Are there at least `count` image files under the roots? Stops counting once there are."""
    found = 0
    for root in images_roots:
        if not storage.is_local(root):
            return True  # listing a bucket costs time of its own; a dataset kept there is rarely small
        for path, _ in storage.matching_files([os.path.join(root, "**")]):  # streamed: stops at `count`
            found += os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
            if found >= count:
                return True
    return False


def local_processes(options: PipelineOptions, images_roots: Sequence[str], cores: Optional[int] = None) -> int:
    """The processes the parse and write steps fork: the user's number, else one per core for big local jobs."""
    chosen = options.view_as(LocalOptions).local_processes
    if chosen is not None:
        if chosen < 1:
            raise UsageError(f"--local_processes must be at least 1, not {chosen}")
        return chosen
    cores = cores or os.cpu_count() or 1
    one_process = options.view_as(DirectOptions).direct_running_mode in (None, "in_memory")
    if not is_local_runner(options.view_as(StandardOptions).runner) or not one_process or cores < 2:
        return 1
    return cores if _at_least(images_roots, PARALLEL_FROM_IMAGES) else 1


@contextlib.contextmanager
def local_run(runner, processes: int) -> Iterator[Optional[LocalRun]]:
    """The LocalRun (transforms/local/run.py) when the workers run on this machine, else None.

    The progress line (every few seconds) reads the workers' notes in its progress folder; the per-image
    metadata waits for its shard in its spill folder (transforms/local/spill.py), removed when the run
    ends, however it ends. A remote job's progress is in its runner's UI, and its metadata in its shuffle.
    """
    from pipeline.progress import ProgressLine

    if not is_local_runner(runner):
        yield None
        return
    try:
        spill_dir = spill.new_folder()
    except OSError as error:
        raise UsageError(f"cannot make a spill folder in {tempfile.gettempdir()} ({error}): set TMPDIR to a writable folder") from None
    try:
        with ProgressLine() as line:
            yield LocalRun(spill_dir, line.folder, processes)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


@contextlib.contextmanager
def parse_ahead(job, options: PipelineOptions, local: Optional[LocalRun], cores: Optional[int] = None) -> Iterator[None]:
    """The run's annotation files parsed while the graph is built (transforms/local/ahead.py), on the processes
    the parse step forks, or on one when it forks none but the machine has a core to spare.

    Not for remote runs, nor for Beam's multi-process local modes (the steps run in other interpreters, which
    could claim nothing), nor for gs:// sources (their listing costs time of its own), nor for incremental
    runs (their shard count may come from the published dataset), nor where gRPC runs threads (see
    LocalRun.workers).
    """
    processes = _processes_ahead(job, options, local, cores)
    ahead = None
    if processes:
        sources = [
            AheadSource(ParseSettings(source.format, source.context, dict(job.class_map), index, job.seed),
                        tuple(source.patterns))
            for index, source in enumerate(job.sources)
        ]
        sizing = ShardSizing(job.num_shards, job.splits, tuple(source.images for source in job.sources))
        try:
            ahead = ParseAhead(local.spill_dir, local.progress_dir, sources, sizing, processes)
        except Exception as error:  # it only saves time: a run that cannot fork for it runs without it
            logging.getLogger(__name__).debug("not parsing ahead: %s", error)
    try:
        yield
    finally:
        if ahead is not None:
            ahead.stop()


def _processes_ahead(job, options: PipelineOptions, local: Optional[LocalRun], cores: Optional[int]) -> int:
    if local is None or job.incremental or grpc_threads_alive():
        return 0
    if options.view_as(DirectOptions).direct_running_mode not in (None, "in_memory"):  # claims happen in this process
        return 0
    if not all(storage.is_local(path) for source in job.sources for path in (*source.patterns, source.images)):
        return 0
    if local.processes > 1:
        return local.processes
    chosen = options.view_as(LocalOptions).local_processes
    return 1 if chosen is None and (cores or os.cpu_count() or 1) >= 2 else 0
