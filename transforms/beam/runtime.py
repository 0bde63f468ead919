"""What the Beam steps leave to the runner they run on, behind two small interfaces.

- An `Exchange` carries the packed metadata batches a step emits for a key (a parse task, a listing
  chunk, a shard, a duplicate-search group) to the step that reads that key. Here: as elements, through
  the runner's shuffle. A local run spills them to disk instead (transforms/local/spill.py), so the
  local runner's memory does not grow with the number of images.
- `workers(dofn)` runs a `HandlingDoFn`'s `handle` on each element. Here: in the worker's own process.
  A local run may hand elements to processes forked on every core (transforms/local/pool.py), and
  note progress a person watches (transforms/local/progress.py).

The steps take one `Runtime`: `REMOTE` (this module's defaults, what Dataflow, Flink, Spark and the
portable runner get), or the `LocalRun` that pipeline/cli.py builds for the local runner.
"""
from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Tuple

from transforms.beam.tally import CountingDoFn

# the kinds of batches an exchange carries, each by its own key
TASKS = "tasks"  # packed annotation file names, by parse task
LISTING = "listing"  # packed image file names and sizes, by listing chunk
RECORDS = "records"  # packed records, by shard
IMAGES = "images"  # packed image file names and sizes, by shard

Batch = Tuple[int, Optional[bytes]]  # (tag, packed payload); None: a marker, the payload waits elsewhere


class Exchange:
    """Batches as elements: `send` returns the (key, batch) elements to emit, `gather` takes them back."""

    spilled = False  # True: only markers cross the shuffle, so a reader of a key may get no element of its own

    def send(self, kind: str, key, batches: Iterable[Tuple[int, bytes]], marker: bool = False) -> List:
        """The elements a step emits for a key's (tag, payload) batches; `marker`: the key must reach its
        reader even when its batches travel another way."""
        return [(key, batch) for batch in batches]

    def gather(self, kind: str, key, batches: Iterable[Batch]) -> List[Tuple[int, bytes]]:
        """A key's (tag, payload) batches, from the elements its reader got (markers left out)."""
        return [(tag, payload) for tag, payload in batches if payload is not None]

    def shard_inputs(self, shard: int, grouped) -> Tuple[list, list]:
        """A shard's (source index, packed) batches of records and of image files."""
        return self.gather(RECORDS, shard, grouped[RECORDS]), self.gather(IMAGES, shard, grouped[IMAGES])

    def one_payload(self, kind: str, element) -> bytes:
        """The payload of a (key, (tag, payload)) element whose key has one batch: a task's, a listing chunk's."""
        key, batch = element
        ((_, payload),) = self.gather(kind, key, [batch])
        return payload


class InProcess:
    """A HandlingDoFn's elements handled where the DoFn runs."""

    def __init__(self, dofn: "HandlingDoFn"):
        self._dofn = dofn

    def process(self, element, side_inputs) -> Iterator:
        return self._dofn.handle(element, *side_inputs)

    def finish(self) -> Iterator:
        return iter(())

    def stop(self) -> None:
        pass


class _NoNotes:
    def add(self, kind: str, n: int = 1) -> None:
        pass

    def flush(self) -> None:
        pass


class Runtime:
    """A remote runner's: batches through its shuffle, elements handled in its workers, progress in its UI."""

    exchange = Exchange()

    def workers(self, dofn: "HandlingDoFn"):
        return InProcess(dofn)

    def notes(self):
        return _NoNotes()


REMOTE = Runtime()


class HandlingDoFn(CountingDoFn):
    """A CountingDoFn whose subclasses implement `handle(element, *side_inputs)`, yielding what `process`
    would; the runtime decides where it runs. Elements should be coarse (a shard, a batch of files).
    `note(kind, n)` counts progress a person watches on a local run."""

    def __init__(self, runtime: Runtime = REMOTE):
        self._runtime = runtime

    def handle(self, element, *side_inputs) -> Iterator:
        raise NotImplementedError

    def portable(self, element):
        """The element as plain Python values another process can be sent (e.g. a GroupByKey's lazy iterables as lists)."""
        return element

    def note(self, kind: str, n: int = 1) -> None:
        self._notes.add(kind, n)

    def flush_notes(self) -> None:
        self._notes.flush()

    @property
    def counts(self):
        """This bundle's counts so far (the tallies `finish_bundle` emits)."""
        return self._counts

    def setup(self):
        super().setup()
        self._notes = self._runtime.notes()
        self._workers = self._runtime.workers(self)

    def process(self, element, *side_inputs):
        yield from self._workers.process(element, side_inputs)

    def finish_bundle(self):
        yield from self._workers.finish()
        yield from super().finish_bundle()
        self._notes.flush()

    def teardown(self):
        workers = getattr(self, "_workers", None)
        if workers is not None:
            workers.stop()
