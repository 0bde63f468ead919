"""Every core of one machine for the heavy steps, when the DirectRunner runs the job in one process.

Beam's DirectRunner runs a job in one Python process by default, so the parse and write steps use
one core. Its multi_processing mode starts fresh worker interpreters that import Beam and talk to the
runner over gRPC; measured here, that costs more than the second core gives back (see docs/performance.md).
ForkedWorkers instead hand each element of a HandlingDoFn (transforms/beam/runtime.py) to a small pool
of processes forked from the running one: they start in milliseconds with everything already imported,
each handles whole elements (a batch of annotation files, a shard), and their outputs and counts come
back to the DoFn, which emits them as if it had done the work itself.

A local run with one process, and every other runner (they already run one worker per core), handle
elements in place and fork nothing.

The workers die with the process that forked them, even when it is killed outright (SIGKILL, the OOM
killer): left alive, they would go on burning a core and holding the run's spill folder (its flock,
transforms/local/spill.py), so the next run could not reclaim it. See `_started_in_child`.
"""
from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Dict, Iterator, Optional, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from transforms import storage
from transforms.local import spill

_WORKERS: Dict[int, "ForkedWorkers"] = {}  # what a forked worker finds in its copy of the parent's memory
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
SPOOL_PREFIX = "od-tfrecords-pool-"  # $TMPDIR folders where forked workers leave their outputs

# (pid, main thread's ident, read end, write end) of the process whose pools fork: its lifeline
_LIFELINE: Optional[Tuple[int, int, int, int]] = None


def _lifeline() -> Tuple[int, int, int, int]:
    """This process's lifeline: a pipe whose write end only this process keeps open, made once."""
    global _LIFELINE
    if _LIFELINE is None or _LIFELINE[0] != os.getpid():
        read, write = os.pipe()  # not inheritable: a program a process execs (Beam's workers) does not get them
        _LIFELINE = (os.getpid(), threading.main_thread().ident, read, write)
    return _LIFELINE


def _started_in_child(parent: int, parent_main_thread: int, lifeline_read: int, lifeline_write: int,
                      niceness: int = 0) -> None:
    """A forked worker's first steps: die with its parent, drop what belongs to the parent, and yield the CPU
    to processes of normal priority when `niceness` asks for it.

    Two mechanisms, since neither covers every case alone:

    - The lifeline pipe, always: the worker closes its copy of the write end and a thread of its own
      waits on the read end; when the parent is gone, however it went, the kernel closes the parent's
      write end and the read returns end-of-file. That does not depend on which of the parent's
      threads forked (Beam's multi_threading mode runs bundles, and so forks, on its own worker
      threads, which may end while the run goes on), and works wherever there are pipes. It needs
      the worker's interpreter to run that thread, though: a long C call holding the GIL delays it.
      Every worker of every pool closes its copy of the write end first, and nothing else here forks
      without exec'ing (which closes it), so the parent's copy is the only one left.
    - PR_SET_PDEATHSIG on Linux, when the parent's main thread forked (the default local run): the
      kernel itself sends SIGKILL when the parent exits, whatever the worker is doing. The signal
      fires when the *thread* that forked exits, not the process, so it is not asked for when
      another thread forked: that thread may end while the run lives, killing healthy workers. The
      main thread of a Python process lives until the process exits.

    A parent that died before either was in place is caught too: the pipe's end-of-file comes at once,
    and the parent's pid no longer being this worker's parent's is checked after the prctl.
    """
    os.close(lifeline_write)  # only the parent holds it now: end-of-file exactly when the parent is gone
    # after a fork, the worker's one thread keeps the ident of the parent's thread that forked
    if sys.platform.startswith("linux") and threading.get_ident() == parent_main_thread:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # a libc without prctl: the pipe still holds
            pass
    threading.Thread(target=_die_when_closed, args=(lifeline_read,), name="lifeline", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the prctl above: no signal will come
        os.kill(os.getpid(), signal.SIGKILL)
    storage.forget_clients()  # a storage client's connections belong to the parent
    if niceness:
        os.nice(niceness)


GRPC_THREADS = ("event_engine", "grpc_global_tim")  # gRPC's own threads, by name (Linux truncates names to 15)


def grpc_threads_alive() -> bool:
    """Does this process run gRPC's event-engine threads? A process forked then runs gRPC's post-fork handler,
    which can wait forever on a lock one of those threads held: seen as a hung worker in a process where an
    earlier Beam pipeline had started gRPC (Beam's DirectRunner does when it tries Prism). A local run's
    launcher names the FnApiRunner and starts none. Read from /proc; elsewhere: False."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as handle:
                if handle.read().strip() in GRPC_THREADS:
                    return True
        except OSError:  # the thread ended meanwhile
            continue
    return False


def _die_when_closed(lifeline_read: int) -> None:
    while os.read(lifeline_read, 1):  # nothing is ever written: this returns b"" when the parent is gone
        pass
    os.kill(os.getpid(), signal.SIGKILL)  # as the parent went: no cleanup that could hang or write half a file


def _handle_in_child(dofn_id: int, element, side_inputs):
    """Handles one element; returns (the file its outputs were written to, one pickle each; its counts).

    The outputs go through a file, not back through the pool's pipe as one list: an element may have
    millions of them (a batch of label files full of bad lines rejects every line), and the parent then
    reads them back one at a time.
    """
    workers = _WORKERS[dofn_id]
    descriptor, path = tempfile.mkstemp(prefix="outputs-", dir=workers.spool_dir)
    with open(descriptor, "wb") as spool:
        counts = handle_to_spool(workers.dofn, element, side_inputs, spool)
    return path, counts


def handle_to_spool(dofn, element, side_inputs, spool) -> collections.Counter:
    """Handles one element with a set-up HandlingDoFn, its outputs pickled one after the other to the binary
    file `spool`; returns its counts."""
    dofn.start_bundle()  # this element's counts only, not whatever the parent had counted when it forked
    for output in dofn.handle(element, *side_inputs):
        pickle.dump(output, spool, protocol=pickle.HIGHEST_PROTOCOL)
    dofn.flush_notes()
    return dofn.counts


def spooled_outputs(spool, end: Optional[int] = None) -> Iterator:
    """The outputs `handle_to_spool` wrote, one at a time, from the binary file `spool`'s position to `end`
    (default: the file's end)."""
    while end is None or spool.tell() < end:
        try:
            yield pickle.load(spool)
        except EOFError:
            return


def forked_pool(processes: int, niceness: int = 0) -> ProcessPoolExecutor:
    """A pool of `processes` workers forked from this process, which die with it (`_started_in_child`), at
    `niceness` below this process's priority. Call its first `submit` from the main thread: that is where
    the pool forks all its workers."""
    return ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("fork"), initializer=_started_in_child,
        initargs=(*_lifeline(), niceness),
    )


class ForkedWorkers:
    """A HandlingDoFn's elements handed to `processes` workers forked from this process (the runtime's
    `workers` on a local run); their outputs and counts come back to the DoFn, which emits them as if it
    had done the work itself."""

    def __init__(self, dofn, processes: int):
        self.dofn = dofn
        # a run killed outright leaves the folder; the next run removes it (nobody holds it then)
        self.spool_dir, self._spool_hold = spill.new_held_folder(SPOOL_PREFIX)
        _WORKERS[id(dofn)] = self
        self._processes = processes
        self._pool = forked_pool(processes)
        self._pending: collections.deque = collections.deque()

    def process(self, element, side_inputs) -> Iterator:
        self._pending.append(self._pool.submit(_handle_in_child, id(self.dofn), self.dofn.portable(element), side_inputs))
        while len(self._pending) > 2 * self._processes:  # bounded: finished work does not pile up in memory
            yield from self._collect(self._pending.popleft())

    def _collect(self, future: Future):
        path, counts = future.result()
        self.dofn.counts.update(counts)
        try:
            with open(path, "rb") as spool:
                yield from spooled_outputs(spool)
        finally:
            os.remove(path)

    def finish(self) -> Iterator:
        """What is still pending, as windowed values: finish_bundle's outputs carry their window."""
        window = GlobalWindow()
        while self._pending:
            for output in self._collect(self._pending.popleft()):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, window.max_timestamp(), [window]))
                else:
                    yield WindowedValue(output, window.max_timestamp(), [window])

    def stop(self) -> None:
        self._pool.shutdown()
        _WORKERS.pop(id(self.dofn), None)
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        os.close(self._spool_hold)
