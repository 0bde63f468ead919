"""Parsing ahead: a local run parses its annotation files while the launcher still builds the graph.

No image can be written before every annotation file is parsed: the label map, and so every class id,
needs them all. And no parse task can start before Beam has built and translated the graph and run the
listing stages, about a second at 10,000 images, on one core while the other waits. So a local run forks
its parse workers as soon as it holds OUTPUT's lock (pipeline/local_runner.py `parse_ahead`): they list
the images to size the shards, plan the parse tasks as the graph's PlanTasks step does, and parse them,
each task into files of its own under the spill folder, while the launcher builds the graph.

The graph's parse step then claims each task it gets (`ClaimingWorkers`) when the task parsed ahead is
the one it would parse: the same settings (ParseSettings: format, context, class map, source, seed),
the same files in the same order (the task's packed payload, compared byte for byte) and the same shard
count. A claimed task's spilled records move into the run's spill folder, its outputs (rejections, class
names) are emitted and its tallies counted as if the step had parsed it then. Anything else (a folder
that changed between the two listings, a worker that failed or was killed) the step parses itself, as
it would without this: parsing ahead can cost time, never change an output.

Layout under <spill folder>/ahead: tasks/<key>/<key> (each task's payload), records/<shard>/<key>
(each task's records for a shard), outputs-* (each task's outputs, one pickle each).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from concurrent.futures import Future
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from transforms.beam.read import ParseAnnotationFiles, ParseSettings, image_chunks, parse_tasks, task_key
from transforms.beam.runtime import RECORDS, TASKS, Runtime
from transforms.beam.write import auto_num_shards
from transforms.formats import FORMATS, AnnotationFormat
from transforms.local.pool import forked_pool, handle_to_spool, spooled_outputs
from transforms.local.progress import ProgressNotes
from transforms.local.spill import Spill
from transforms.model import pack
from transforms.splits import Splits

AHEAD = "ahead"  # the folder in the spill folder
CLAIMED_PREFIX = "ahead-"  # a claimed task's records file in the run's spill folder: ahead-<key>

_AHEAD: Dict[str, "ParseAhead"] = {}  # by the run's spill folder: what the graph's parse steps claim from


@dataclasses.dataclass(frozen=True)
class AheadSource:
    """One source of the run, as its parse step and its image listing see it."""

    settings: ParseSettings
    patterns: Tuple[str, ...]
    images_root: str


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
        self._sources = {source.settings.source_index: source for source in sources}
        self._tasks: Dict[str, Future] = {}
        self.claimed = 0  # tasks the graph's parse steps took as they were parsed ahead
        self._num_shards: Optional[int] = None
        self._planned = threading.Event()
        self._pool = forked_pool(processes)
        # submitted from this, the main, thread: the pool forks its workers here
        shards = self._pool.submit(sizing.num_shards)
        plans = [(source, self._pool.submit(_plan, source, self._folder)) for source in sources]
        self._feeder = threading.Thread(target=self._feed, args=(shards, plans), name="parse-ahead", daemon=True)
        self._feeder.start()
        _AHEAD[spill_dir] = self

    def _feed(self, shards: Future, plans: List[Tuple[AheadSource, Future]]) -> None:
        try:
            num_shards = shards.result()
            for source, plan in plans:
                for key in plan.result():
                    self._tasks[key] = self._pool.submit(
                        _parse, source.settings, key, self._folder, num_shards, self._progress_dir)
            self._num_shards = num_shards
        except Exception as error:  # the graph's steps do it all, as without parsing ahead
            logging.getLogger(__name__).debug("parsing ahead stopped: %s", error)
        finally:
            self._planned.set()

    def parses(self, dofn) -> bool:
        """Is `dofn` a parse step whose tasks this may have parsed?"""
        if not isinstance(dofn, ParseAnnotationFiles):
            return False
        source = self._sources.get(dofn.settings.source_index)
        return source is not None and source.settings == dofn.settings

    def claim(self, element, num_shards: int) -> Optional[Tuple[str, dict]]:
        """(outputs file, counts) of the parse task `element` (its key and marker), its records moved into
        the run's spill folder, if it was parsed ahead exactly as the step would parse it; else None."""
        self._planned.wait()
        key = element[0]
        future = self._tasks.pop(key, None)
        if not self._tasks:  # the workers' last task is taken: they exit, and hold no memory while the run writes
            self._pool.shutdown(wait=False)
        if future is None:
            return None
        same_task = Spill(self._spill_dir).one_payload(TASKS, element) == Spill(self._folder).one_payload(TASKS, element)
        if num_shards != self._num_shards or not same_task:
            future.cancel()
            return None
        try:
            outputs, counts, shards = future.result()
        except Exception:  # a worker that failed or died: the step parses the task itself
            return None
        for shard in shards:
            destination = os.path.join(self._spill_dir, RECORDS, str(shard))
            os.makedirs(destination, exist_ok=True)
            os.rename(os.path.join(self._folder, RECORDS, str(shard), key), os.path.join(destination, CLAIMED_PREFIX + key))
        self.claimed += 1
        return outputs, counts

    def stop(self) -> None:
        logging.getLogger(__name__).debug("%d parse tasks claimed as parsed ahead, %d left", self.claimed, len(self._tasks))
        _AHEAD.pop(self._spill_dir, None)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._feeder.join()


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
        yield from spooled_outputs(outputs)

    def finish(self):
        return self._fallback.finish() if self._fallback else iter(())

    def stop(self) -> None:
        if self._fallback:
            self._fallback.stop()


# --- in the forked workers -------------------------------------------------------------------------------

def _plan(source: AheadSource, folder: str) -> List[str]:
    """Writes each of the source's parse tasks to the folder, as the graph's PlanTasks step writes them to
    the spill folder; returns their keys."""
    fmt: AnnotationFormat = FORMATS[source.settings.format_name]
    keys = []
    for number, task in enumerate(parse_tasks(fmt, source.patterns)):
        key = task_key(source.settings.source_index, number)
        Spill(folder, writer=key).send(TASKS, key, [(0, pack(task))])
        keys.append(key)
    return keys


_NOTES: Dict[Optional[str], ProgressNotes] = {}  # one per worker process and folder: progress a person watches


class _TaskSpill(Spill):
    """A task's own files in the ahead folder (named after it), and the shards it sent records to."""

    def __init__(self, folder: str, key: str):
        super().__init__(folder, writer=key)
        self.shards = set()

    def append(self, kind: str, key, tag: int, payload: bytes) -> None:
        super().append(kind, key, tag, payload)
        if kind == RECORDS:
            self.shards.add(key)


class _TaskRun(Runtime):
    """The runtime of one task parsed ahead: its exchange is the task's own files, its progress the worker's."""

    def __init__(self, exchange: _TaskSpill, progress_dir: Optional[str]):
        self.exchange = exchange
        self.progress_dir = progress_dir

    def notes(self) -> ProgressNotes:
        if self.progress_dir not in _NOTES:
            _NOTES[self.progress_dir] = ProgressNotes(self.progress_dir)
        return _NOTES[self.progress_dir]


def _parse(settings: ParseSettings, key: str, folder: str, num_shards: int, progress_dir: Optional[str]):
    """Parses one task as the graph's parse step would; returns (outputs file, counts, shards it sent records to)."""
    exchange = _TaskSpill(folder, key)
    dofn = ParseAnnotationFiles(FORMATS[settings.format_name], settings.context, settings.class_map,
                                settings.source_index, settings.seed, _TaskRun(exchange, progress_dir))
    dofn.setup()
    outputs, counts = handle_to_spool(dofn, (key, (0, None)), (num_shards,), folder)
    return outputs, counts, sorted(exchange.shards)
