"""Parsing ahead: a local run parses its annotation files while the launcher still builds the graph.

No image can be written before every annotation file is parsed: the label map, and so every class id,
needs them all. And no parse task can start before Beam has built and translated the graph and run the
listing stages, about a second at 10,000 images, on one core while the other waits. So a local run forks
its parse workers as soon as it holds OUTPUT's lock (pipeline/local_runner.py `parse_ahead`): they list
the images to size the shards, plan the parse tasks as the graph's PlanTasks step does, and parse them
into the ahead folder of the spill folder, while the launcher builds the graph.

The graph's parse step then claims each task it gets (`ClaimingWorkers`) when the task parsed ahead is
the one it would parse: the same settings (ParseSettings: format, context, class map, source, seed),
the same files in the same order (the task's packed payload, compared byte for byte) and the same shard
count. A claimed task's records are appended to the run's spill folder, its outputs (rejections, class
names) emitted and its tallies counted, as if the step had parsed it then. Anything else (a folder
that changed between the two listings, a worker that failed or was killed) the step parses itself, as
it would without this: parsing ahead can cost time, never change an output.

The ahead folder holds few files, since making a file costs more here than parsing a task's files
(50-800 us on this machine's ext4, against ~5 us to append to one): tasks-<source> (every task's
payload, as the plan packed it), and for each worker records-<pid> (its tasks' records batches, each
framed with its shard) and outputs-<pid> (its tasks' outputs, one pickle each). A task's result names
its byte regions in them. The folder goes once every task is taken, so the records' disk is held twice
only until the parse step ends (about 150 bytes an image).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import pickle
import shutil
import struct
import threading
from collections import Counter
from concurrent.futures import Future
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from transforms.beam.read import ParseAnnotationFiles, ParseSettings, image_chunks, parse_tasks, task_key
from transforms.beam.runtime import RECORDS, TASKS, Exchange, Runtime
from transforms.beam.write import auto_num_shards
from transforms.formats import AnnotationFormat
from transforms.local.pool import forked_pool, handle_to_spool, spooled_outputs
from transforms.local.progress import ProgressNotes
from transforms.local.spill import Spill
from transforms.model import pack
from transforms.splits import Splits

AHEAD = "ahead"  # the folder in the spill folder
AHEAD_NICENESS = 10

Region = Tuple[str, int, int]  # (file, start, end): bytes a worker wrote
_AHEAD: Dict[str, "ParseAhead"] = {}  # by the run's spill folder: what the graph's parse steps claim from


@dataclasses.dataclass(frozen=True)
class AheadSource:
    """One source of the run, as its parse step sees it: its settings and its annotation file patterns."""

    settings: ParseSettings
    patterns: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ShardSizing:
    """How the graph sizes the shards (pipeline/graph.py): the user's count, else from every source's images."""

    requested: int
    splits: Optional[Splits]
    images_roots: Tuple[str, ...]

    def num_shards(self) -> int:
        if self.requested:
            return self.requested
        images = image_bytes = 0
        for root in self.images_roots:
            for chunk in image_chunks(root):
                images += len(chunk)
                image_bytes += sum(size for _, size in chunk)
        return auto_num_shards(images, image_bytes, self.splits)


def _fingerprint(settings: ParseSettings) -> Optional[bytes]:
    """Settings as pickled, so the graph's copies compare equal: a source's format may wrap its functions
    (functools.partial, which compares by identity). None if they do not pickle: nothing is claimed."""
    try:
        return pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


def ahead_for(spill_dir: str) -> Optional["ParseAhead"]:
    """The run's parsing ahead, if it has one (in the launcher's process, where the graph's steps run)."""
    return _AHEAD.get(spill_dir)


class ParseAhead:
    """The run's sources' parse tasks, planned and parsed on `processes` forked workers from now on."""

    def __init__(self, spill_dir: str, progress_dir: Optional[str], sources: Sequence[AheadSource],
                 sizing: ShardSizing, processes: int):
        self._spill_dir = spill_dir
        self._progress_dir = progress_dir
        self._folder = os.path.join(spill_dir, AHEAD)
        os.makedirs(self._folder)
        self._settings = {source.settings.source_index: _fingerprint(source.settings) for source in sources}
        self._tasks: Dict[str, Future] = {}  # by task key: (outputs, counts, records) of the task parsed ahead
        self._payloads: Dict[str, Region] = {}  # by task key: its packed files, as the plan wrote them
        self.claimed = 0  # tasks the graph's parse steps took as they were parsed ahead
        self._num_shards: Optional[int] = None
        self._planned = threading.Event()
        # below the launcher's priority: its graph building is the run's critical path, which work ahead may
        # only speed up with a core the launcher leaves idle (docs/performance.md)
        self._pool = forked_pool(processes, niceness=AHEAD_NICENESS)
        try:
            # submitted from this, the main, thread: the pool forks its workers here
            shards = self._pool.submit(sizing.num_shards)
            plans = [(source, self._pool.submit(_plan, source, self._folder)) for source in sources]
            self._feeder = threading.Thread(target=self._feed, args=(shards, plans), name="parse-ahead", daemon=True)
            self._feeder.start()
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        _AHEAD[spill_dir] = self

    def _feed(self, shards: Future, plans: List[Tuple[AheadSource, Future]]) -> None:
        try:
            num_shards = shards.result()
            for source, plan in plans:
                for key, payload in plan.result():
                    self._payloads[key] = payload
                    self._tasks[key] = self._pool.submit(
                        _parse, source.settings, key, payload, self._folder, num_shards, self._progress_dir)
            self._num_shards = num_shards
        except Exception as error:  # the graph's steps do it all, as without parsing ahead
            logging.getLogger(__name__).debug("parsing ahead stopped: %s", error)
        finally:
            self._planned.set()

    def parses(self, dofn) -> bool:
        """Is `dofn` a parse step whose tasks this may have parsed?"""
        if not isinstance(dofn, ParseAnnotationFiles):
            return False
        ahead = self._settings.get(dofn.settings.source_index)
        return ahead is not None and ahead == _fingerprint(dofn.settings)

    def claim(self, element, num_shards: int) -> Optional[Tuple[Iterator, Counter]]:
        """(its outputs, its counts) of the parse task `element` (its key and marker), its records appended to
        the run's spill folder, if it was parsed ahead exactly as the step would parse it; else None."""
        self._planned.wait()
        future = self._tasks.pop(element[0], None)
        try:
            return self._claimed(element, future, num_shards) if future else None
        finally:
            if not self._tasks:  # every task is taken: the workers exit, their files go (a claimed task's
                self._pool.shutdown(wait=False)  # outputs file is open already), while the run writes
                shutil.rmtree(self._folder, ignore_errors=True)

    def _claimed(self, element, future: Future, num_shards: int) -> Optional[Tuple[Iterator, Counter]]:
        run_spill = Spill(self._spill_dir)
        same_task = run_spill.one_payload(TASKS, element) == _read(self._payloads[element[0]])
        if num_shards != self._num_shards or not same_task:
            future.cancel()
            return None
        try:
            outputs, counts, records = future.result()
        except Exception:  # a worker that failed or died: the step parses the task itself
            return None
        for shard, tag, payload in _frames(_read(records)):
            run_spill.append(RECORDS, shard, tag, payload)
        self.claimed += 1
        return _outputs(outputs), counts

    def stop(self) -> None:
        logging.getLogger(__name__).debug("%d parse tasks claimed as parsed ahead, %d left", self.claimed, len(self._tasks))
        _AHEAD.pop(self._spill_dir, None)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._feeder.join()
        shutil.rmtree(self._folder, ignore_errors=True)


def _outputs(region: Region) -> Iterator:
    """A task's outputs, one at a time, from its region of a worker's outputs file, opened now."""
    path, start, end = region
    spool = open(path, "rb")
    spool.seek(start)

    def outputs():
        with spool:
            yield from spooled_outputs(spool, end)

    return outputs()


class ClaimingWorkers:
    """A parse step's workers on a run that parses ahead: each task claimed from the ParseAhead, else handed
    to the workers the step would have had (`fallback`, made at the first task not claimed)."""

    def __init__(self, dofn, ahead: ParseAhead, fallback: Callable):
        self._dofn = dofn
        self._ahead = ahead
        self._make_fallback = fallback
        self._fallback = None

    def process(self, element, side_inputs):
        claimed = self._ahead.claim(element, *side_inputs)
        if claimed is None:
            if self._fallback is None:
                self._fallback = self._make_fallback()
            yield from self._fallback.process(element, side_inputs)
            return
        outputs, counts = claimed
        self._dofn.counts.update(counts)
        yield from outputs

    def finish(self):
        return self._fallback.finish() if self._fallback else iter(())

    def stop(self) -> None:
        if self._fallback:
            self._fallback.stop()


# --- in the forked workers -------------------------------------------------------------------------------

# Every task's payload, records and outputs go to a few files each worker appends to, as byte regions:
# a file made for each task (or each task and shard) costs more here than parsing the task's files.
_FRAME = struct.Struct(">IIQ")  # a task's records batch in a worker's records file: shard, tag, payload length


def _read(region: Region) -> bytes:
    path, start, end = region
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


def _frames(data: bytes) -> Iterator[Tuple[int, int, bytes]]:
    position = 0
    while position < len(data):
        shard, tag, length = _FRAME.unpack_from(data, position)
        position += _FRAME.size
        yield shard, tag, data[position : position + length]
        position += length


def _plan(source: AheadSource, folder: str) -> List[Tuple[str, Region]]:
    """Writes the source's parse tasks, packed as the graph's PlanTasks step packs them, to one file; returns
    each task's key and region."""
    fmt: AnnotationFormat = source.settings.format
    path = os.path.join(folder, f"tasks-{source.settings.source_index}")
    regions = []
    with open(path, "wb") as handle:
        for number, task in enumerate(parse_tasks(fmt, source.patterns)):
            payload = pack(task)
            start = handle.tell()
            handle.write(payload)
            regions.append((task_key(source.settings.source_index, number), (path, start, start + len(payload))))
    return regions


class _TaskExchange(Exchange):
    """One task parsed ahead: its payload given, its records appended to the worker's records file."""

    spilled = True

    def __init__(self, payload: bytes, records):
        self._payload = payload
        self._records = records

    def gather(self, kind: str, key, batches) -> List[Tuple[int, bytes]]:
        if kind != TASKS:
            raise ValueError(f"a task parsed ahead reads its task, not {kind}")
        return [(0, self._payload)]

    def send(self, kind: str, key, batches, marker: bool = False) -> List:
        if kind != RECORDS or marker:
            raise ValueError(f"a task parsed ahead sends records, not {kind}")
        for tag, payload in batches:
            self._records.write(_FRAME.pack(key, tag, len(payload)))
            self._records.write(payload)
        return []


class _TaskRun(Runtime):
    """The runtime of one task parsed ahead: its exchange is the task's, its progress notes the worker's."""

    def __init__(self, exchange: _TaskExchange, notes: ProgressNotes):
        self.exchange = exchange
        self._notes = notes

    def notes(self) -> ProgressNotes:
        return self._notes


@dataclasses.dataclass
class _WorkerState:
    records: BinaryIO
    outputs: BinaryIO
    notes: ProgressNotes


_WORKER: Dict[Tuple[int, str], _WorkerState] = {}  # by process and ahead folder


def _worker_state(folder: str, progress_dir: Optional[str]) -> _WorkerState:
    if (os.getpid(), folder) not in _WORKER:
        # forked while the launcher keeps its collector off (pipeline/cli.py main): what was inherited is
        # kept out of its sight, as the launcher keeps it once the graph is built, and the tasks' garbage collected
        gc.freeze()
        gc.enable()
        _WORKER[os.getpid(), folder] = _WorkerState(
            open(os.path.join(folder, f"records-{os.getpid()}"), "wb"),
            open(os.path.join(folder, f"outputs-{os.getpid()}"), "wb"),
            ProgressNotes(progress_dir),
        )
    return _WORKER[os.getpid(), folder]


def _parse(settings: ParseSettings, key: str, payload: Region, folder: str, num_shards: int,
           progress_dir: Optional[str]) -> Tuple[Region, Counter, Region]:
    """Parses one task as the graph's parse step would; returns (the region of its outputs, its counts, the
    region of its records)."""
    state = _worker_state(folder, progress_dir)
    exchange = _TaskExchange(_read(payload), state.records)
    dofn = ParseAnnotationFiles(*settings, runtime=_TaskRun(exchange, state.notes))
    dofn.setup()
    records_start, outputs_start = state.records.tell(), state.outputs.tell()
    counts = handle_to_spool(dofn, (key, (0, None)), (num_shards,), state.outputs)
    state.records.flush()
    state.outputs.flush()
    return ((state.outputs.name, outputs_start, state.outputs.tell()), counts,
            (state.records.name, records_start, state.records.tell()))
