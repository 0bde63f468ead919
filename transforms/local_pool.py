"""Every core of one machine for the heavy steps, when the DirectRunner runs the job in one process.

Beam's DirectRunner runs a job in one Python process by default, so the parse and write steps use
one core. Its multi_processing mode starts fresh worker interpreters that import Beam and talk to the
runner over gRPC; measured here, that costs more than the second core gives back (see the README's
performance section). A PooledDoFn instead hands each element to a small pool of processes forked
from the running one: they start in milliseconds with everything already imported, each handles
whole elements (a batch of annotation files, a shard), and their outputs and counts come back to the
DoFn, which emits them as if it had done the work itself.

With `processes` <= 1 (the default, and what Dataflow and other distributed runners get: they already
run one worker per core) the work runs inline and nothing is forked.
"""
from __future__ import annotations

import collections
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Dict, Iterator, Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from transforms import storage
from transforms.progress import ProgressNotes
from transforms.tally import CountingDoFn

_DOFNS: Dict[int, "PooledDoFn"] = {}  # what a forked worker finds in its copy of the parent's memory


def _started_in_child() -> None:
    storage.forget_clients()  # a storage client's connections belong to the parent


def _handle_in_child(dofn_id: int, element, side_inputs):
    dofn = _DOFNS[dofn_id]
    dofn.start_bundle()  # this element's counts only, not whatever the parent had counted when it forked
    outputs = list(dofn.handle(element, *side_inputs))
    dofn._progress.flush()
    return outputs, dofn._counts


class PooledDoFn(CountingDoFn):
    """A CountingDoFn whose elements `processes` forked workers may handle; subclasses implement `handle`.

    `handle(element, *side_inputs)` yields outputs as `process` would, and may note progress a person
    watches with `self.note(kind, n)` (written to `progress_dir`, see transforms.progress). Elements
    should be coarse (a shard, a batch of files): each costs a round trip to a worker and back.
    """

    def __init__(self, processes: int = 1, progress_dir: Optional[str] = None):
        self._processes = processes
        self._progress_dir = progress_dir

    def handle(self, element, *side_inputs) -> Iterator[Any]:
        raise NotImplementedError

    def portable(self, element):
        """The element as plain Python values a worker can be sent (e.g. a GroupByKey's lazy iterables as lists)."""
        return element

    def note(self, kind: str, n: int = 1) -> None:
        self._progress.add(kind, n)

    def setup(self):
        super().setup()
        self._progress = ProgressNotes(self._progress_dir)
        self._pool = None
        if self._processes > 1:
            _DOFNS[id(self)] = self
            self._pool = ProcessPoolExecutor(
                self._processes, mp_context=multiprocessing.get_context("fork"), initializer=_started_in_child
            )

    def start_bundle(self):
        super().start_bundle()
        self._pending: collections.deque = collections.deque()

    def process(self, element, *side_inputs):
        if self._pool is None:
            yield from self.handle(element, *side_inputs)
            return
        self._pending.append(self._pool.submit(_handle_in_child, id(self), self.portable(element), side_inputs))
        while len(self._pending) > 2 * self._processes:  # bounded: finished work does not pile up in memory
            yield from self._collect(self._pending.popleft())

    def _collect(self, future: Future):
        outputs, counts = future.result()
        self._counts.update(counts)
        yield from outputs

    def finish_bundle(self):
        window = GlobalWindow()
        while self._pending:
            for output in self._collect(self._pending.popleft()):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, window.max_timestamp(), [window]))
                else:
                    yield WindowedValue(output, window.max_timestamp(), [window])
        yield from super().finish_bundle()
        self._progress.flush()

    def teardown(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
            _DOFNS.pop(id(self), None)

