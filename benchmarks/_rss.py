"""Peak RSS of a command's process tree: the largest single process and the largest sum over the tree.

    from _rss import run_measured
    measured = run_measured(command, log_path, cwd=folder, env=environment)

The command's process and all its descendants are sampled every SAMPLE_SECONDS, with psutil when it is
installed and from /proc otherwise (Linux). RSS sums count shared pages once per process. The kernel's
ru_maxrss from wait4 (the top process and the descendants it waited for) is reported beside them.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

try:
    import psutil
except ImportError:  # read /proc instead
    psutil = None

SAMPLE_SECONDS = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_tree(root: int) -> List[int]:
    """root and its descendants, from every process's parent id in /proc/<pid>/stat."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # exited meanwhile
            continue
        fields = stat.rpartition(b")")[2].split()  # after the command name, which may hold spaces and ')'
        children.setdefault(int(fields[1]), []).append(int(name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, ()))
    return tree


def _proc_rss(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _proc_command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return " ".join(part.decode(errors="replace") for part in handle.read().split(b"\0")[:3]).strip()[:120]
    except OSError:
        return str(pid)


def tree_rss(root: int) -> Iterable[Tuple[int, int]]:
    """(pid, RSS bytes) of root and each of its living descendants."""
    if psutil is None:
        for pid in _proc_tree(root):
            rss = _proc_rss(pid)
            if rss is not None:
                yield pid, rss
        return
    try:
        top = psutil.Process(root)
        processes = [top] + top.children(recursive=True)
    except psutil.Error:  # the top process has exited
        return
    for process in processes:
        try:
            yield process.pid, process.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            continue


def command_of(pid: int) -> str:
    if psutil is None:
        return _proc_command(pid)
    try:
        return " ".join(psutil.Process(pid).cmdline()[:3])[:120]
    except psutil.Error:
        return str(pid)


class ProcessTreeSampler(threading.Thread):
    """Samples the RSS of a process and all its descendants every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS):
        super().__init__(daemon=True)
        self.root = pid
        self.interval = interval
        self.stopping = threading.Event()
        self.max_process_rss = 0
        self.max_process_name = ""
        self.max_tree_rss = 0
        self.max_processes = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def sample(self) -> None:
        tree, processes, largest = 0, 0, None
        for pid, rss in tree_rss(self.root):
            tree += rss
            processes += 1
            if rss > self.max_process_rss:
                self.max_process_rss, largest = rss, pid
        if largest is not None:
            self.max_process_name = command_of(largest)
        self.max_tree_rss = max(self.max_tree_rss, tree)
        self.max_processes = max(self.max_processes, processes)
        self.samples += 1


class FirstRecordWatcher(threading.Thread):
    """Seconds from `started` until a file whose name holds `.tfrecord` first has bytes anywhere under
    `folder` (hidden folders included: the project stages its files in OUTPUT/.staging), polled every
    `interval` seconds; None if none had bytes before it was stopped."""

    def __init__(self, folder: Path, started: float, interval: float = 0.01):
        super().__init__(daemon=True)
        self.folder, self.started, self.interval = str(folder), started, interval
        self.stopping = threading.Event()
        self.seconds: Optional[float] = None

    def run(self) -> None:
        while self.seconds is None and not self.stopping.is_set():
            if self._found():
                self.seconds = time.perf_counter() - self.started
            else:
                self.stopping.wait(self.interval)

    def _found(self) -> bool:
        for path, _, names in os.walk(self.folder):
            for name in names:
                if ".tfrecord" in name:
                    try:
                        if os.path.getsize(os.path.join(path, name)) > 0:
                            return True
                    except OSError:  # moved meanwhile (published)
                        continue
        return False


def run_measured(command: List[str], log: Path, cwd: Optional[Path] = None, env: Optional[dict] = None,
                 interval: float = SAMPLE_SECONDS, output_folder: Optional[Path] = None) -> dict:
    """Runs command to completion, its output in log; exit code, wall seconds, peak RSS (MiB) of its tree, and
    CPU seconds (user and system) of its tree from wait4: the top process and every descendant it or its
    descendants waited for (a descendant never waited for is not counted). `machine_busy_s`: CPU seconds
    all cores were busy meanwhile, from /proc/stat, so that busy minus the tree's CPU is other load.
    With `output_folder`: `first_record_s`, the seconds from the start until the first TFRecord bytes
    reached a file there (FirstRecordWatcher)."""
    busy_before = _machine_busy_seconds()
    with open(log, "w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        sampler = ProcessTreeSampler(process.pid, interval)
        sampler.start()
        watcher = FirstRecordWatcher(output_folder, started) if output_folder else None
        if watcher:
            watcher.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stopping.set()
        sampler.join()
        if watcher:
            watcher.stopping.set()
            watcher.join()
    busy = _machine_busy_seconds() - busy_before
    mib = 1 / 2**20
    first_record = {"first_record_s": round(watcher.seconds, 2) if watcher.seconds is not None else None} if watcher else {}
    return {"exit_code": process.returncode,
            "seconds": round(seconds, 2),
            **first_record,
            "rss_max_process_mib": round(sampler.max_process_rss * mib, 1),
            "rss_max_process_command": sampler.max_process_name,
            "rss_max_tree_sum_mib": round(sampler.max_tree_rss * mib, 1),
            "max_processes_in_tree": sampler.max_processes,
            "rss_samples": sampler.samples,
            "ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_user_s": round(usage.ru_utime, 2),
            "cpu_sys_s": round(usage.ru_stime, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "machine_busy_s": round(busy, 2),
            "log": str(log)}


def _machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy since boot (every /proc/stat field but idle and iowait)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    ticks = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return ticks / os.sysconf("SC_CLK_TCK")
