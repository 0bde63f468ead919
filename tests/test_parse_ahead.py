"""Parsing ahead (transforms/local/ahead.py): the parse step takes a task parsed ahead only when it is the
task it would parse, and then gets exactly what parsing it in place gives; anything else it parses itself."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.local_runner import parse_ahead
from pipeline.options import resolve_convert
from tests import image_factory as make
from tests.conftest import REPO
from tests.small_datasets import VOC, digest, voc_dataset
from tests.test_launcher_death import _alive
from transforms.beam.read import ParseAnnotationFiles, _PlanParsing
from transforms.beam.runtime import RECORDS
from transforms.formats import FORMATS, NO_CONTEXT
from transforms.local.ahead import AHEAD, AHEAD_NICENESS, AheadSource, ParseAhead, ShardSizing, ahead_for
from transforms.local.pool import handle_to_spool, spooled_outputs
from transforms.local.run import LocalRun
from transforms.local.spill import Spill

FILES = 200  # four parse tasks: 64, 64, 64 and 8 files
SHARDS = 3


@pytest.fixture
def voc(tmp_path):
    annotations, images = voc_dataset(tmp_path / "data", FILES)
    # a rejected file and a second class: every kind of output is compared
    (annotations / "img0.xml").write_text("<annotation><filename>img0.jpg</filename>")
    (annotations / "img1.xml").write_text(VOC.format(name="img1.jpg", label="dog"))
    return annotations, images


def _dofn(spill_dir):
    return ParseAnnotationFiles(FORMATS["voc"], NO_CONTEXT, {}, 0, 7, LocalRun(str(spill_dir)))


def _start(spill_dir, annotations, images, processes=1) -> ParseAhead:
    source = AheadSource(_dofn(spill_dir).settings, (f"{annotations}/*.xml",))
    return ParseAhead(str(spill_dir), None, [source], ShardSizing(SHARDS, None, (str(images),)), processes)


def _start_on_two_workers(spill_dir, annotations, images):
    """A ParseAhead on two workers, and its workers' processes (forked as it starts)."""
    before = set(multiprocessing.active_children())
    ahead = _start(spill_dir, annotations, images, processes=2)
    return ahead, set(multiprocessing.active_children()) - before


def _planned(spill_dir, annotations):
    """The task elements the graph's PlanTasks step emits, their payloads spilled in spill_dir."""
    return list(_PlanParsing(FORMATS["voc"], 0, Spill(str(spill_dir))).process([f"{annotations}/*.xml"]))


def _in_place(spill_dir, element, num_shards=SHARDS):
    """(outputs, counts) of the graph's parse step handling `element` itself, its records spilled in spill_dir."""
    dofn = _dofn(spill_dir)
    dofn.setup()
    with tempfile.TemporaryFile() as spool:
        counts = handle_to_spool(dofn, element, (num_shards,), spool)
        spool.seek(0)
        return _comparable(spooled_outputs(spool)), dict(counts)


def _comparable(outputs):
    return [(getattr(output, "tag", None), getattr(output, "value", output)) for output in outputs]


def _records(spill_dir):
    """{shard: every (tag, packed records) batch spilled for it}, whatever file each is in."""
    folder = os.path.join(spill_dir, RECORDS)
    return {shard: sorted(Spill(str(spill_dir)).read(RECORDS, shard)) for shard in sorted(os.listdir(folder))}


def _parse_all(ahead, spill_dir, elements, num_shards=SHARDS):
    """What the graph's parse step emits and counts for `elements`: claimed where it can, else parsed in place."""
    results = []
    for element in elements:
        claimed = ahead.claim(element, num_shards)
        if claimed is None:
            results.append(_in_place(spill_dir, element, num_shards))
        else:
            outputs, counts = claimed
            results.append((_comparable(outputs), dict(counts)))
    return results


def _run_without_ahead(spill_dir, annotations, num_shards=SHARDS):
    spill_dir.mkdir()
    return [_in_place(spill_dir, element, num_shards) for element in _planned(spill_dir, annotations)]


def test_every_task_parsed_ahead_is_claimed_and_gives_what_parsing_it_in_place_gives(voc, tmp_path):
    annotations, images = voc
    (run := tmp_path / "run").mkdir()
    ahead = _start(run, annotations, images, processes=2)
    try:
        elements = _planned(run, annotations)
        results = _parse_all(ahead, run, elements)
        assert not os.path.exists(os.path.join(run, AHEAD))  # every task taken: its files are gone
    finally:
        ahead.stop()
    assert (len(elements), ahead.claimed) == (4, 4)
    assert results == _run_without_ahead(tmp_path / "own", annotations)
    tags = {tag for outputs, _ in results for tag, _ in outputs}
    assert {"rejected", "labels"} <= tags
    assert _records(run) == _records(tmp_path / "own")  # appended to the run's spill folder


def test_a_folder_that_changed_after_the_tasks_were_parsed_ahead_is_parsed_as_it_is_now(voc, tmp_path):
    annotations, images = voc
    (run := tmp_path / "run").mkdir()
    ahead = _start(run, annotations, images)
    try:
        ahead._planned.wait(30)
        for future in list(ahead._tasks.values()):
            future.result(timeout=30)
        # after the listing ahead, before the graph's: one file more, one file rewritten to another size
        (annotations / "added.xml").write_text(VOC.format(name="img2.jpg", label="bird"))
        (annotations / "img3.xml").write_text(VOC.format(name="img3.jpg", label="a much longer class name"))
        elements = _planned(run, annotations)
        results = _parse_all(ahead, run, elements)
    finally:
        ahead.stop()
    assert 0 < ahead.claimed < len(elements)  # the tasks whose files are as they were are still claimed
    assert results == _run_without_ahead(tmp_path / "own", annotations)
    assert _records(run) == _records(tmp_path / "own")  # what was parsed ahead and not claimed never reaches it


def test_another_shard_count_claims_nothing(voc, tmp_path):
    annotations, images = voc
    (run := tmp_path / "run").mkdir()
    ahead = _start(run, annotations, images)
    try:
        results = _parse_all(ahead, run, _planned(run, annotations), num_shards=SHARDS + 1)
    finally:
        ahead.stop()
    assert ahead.claimed == 0
    assert results == _run_without_ahead(tmp_path / "own", annotations, num_shards=SHARDS + 1)
    assert _records(run) == _records(tmp_path / "own")


def test_killed_workers_leave_their_tasks_to_the_parse_step(voc, tmp_path):
    annotations, images = voc
    (run := tmp_path / "run").mkdir()
    ahead, workers = _start_on_two_workers(run, annotations, images)
    try:
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        results = _parse_all(ahead, run, _planned(run, annotations))
    finally:
        ahead.stop()
    assert results == _run_without_ahead(tmp_path / "own", annotations)
    assert _records(run) == _records(tmp_path / "own")


def _job(data, *flags, **given):
    annotations, images = data
    return resolve_convert({"annotations": [str(annotations)], "images": [str(images)], "output": "/tmp/unused",
                            "format": "voc", **given}, list(flags))


@pytest.mark.parametrize("flags, processes, cores, parses_ahead", [
    ((), 1, 2, True),  # the spare core of a run in one process
    ((), 2, 2, True),  # the processes the parse step forks
    ((), 1, 1, False),  # no core to spare
    (("--local_processes", "1"), 1, 8, False),  # one process, as asked
    (("--direct_running_mode", "multi_processing"), 1, 8, False),  # the steps run in other interpreters
])
def test_which_local_runs_parse_ahead(voc, tmp_path, flags, processes, cores, parses_ahead):
    job = _job(voc, *flags)
    local = LocalRun(str(tmp_path / "spill"), None, processes)
    os.mkdir(local.spill_dir)
    with parse_ahead(job, PipelineOptions(list(flags)), local, cores=cores):
        assert (ahead_for(local.spill_dir) is not None) == parses_ahead
    assert ahead_for(local.spill_dir) is None


def test_remote_and_incremental_runs_do_not_parse_ahead(voc, tmp_path):
    with parse_ahead(_job(voc), PipelineOptions([]), None, cores=8):
        pass  # nothing to claim from: no spill folder
    local = LocalRun(str(tmp_path / "spill"))
    os.mkdir(local.spill_dir)
    with parse_ahead(_job(voc, incremental=True), PipelineOptions([]), local, cores=8):
        assert ahead_for(local.spill_dir) is None


def _coco_naming_its_images_folder(tmp_path):
    """A COCO file whose names repeat --images' own folder (`val2017/x.jpg`): the source's format resolves
    its keys (transforms/source_splits.py), so a format known only by its name would parse it otherwise."""
    images = tmp_path / "data" / "val2017"
    images.mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    for index in range(3):
        (images / f"{index:012d}.jpg").write_bytes(make.encode(make.gradient(64 + index, 48), "JPEG"))
        coco["images"].append({"id": index + 1, "file_name": f"val2017/{index:012d}.jpg", "width": 64 + index,
                               "height": 48})
        coco["annotations"].append({"id": index + 1, "image_id": index + 1, "category_id": 1, "bbox": [2, 2, 20, 20],
                                    "area": 400, "iscrowd": 0})
    annotations = tmp_path / "data" / "instances_val2017.json"
    annotations.write_text(json.dumps(coco))
    return ["--format", "coco", "--annotations", str(annotations), "--images", str(images)], 1


def _voc_of_four_tasks(tmp_path):
    annotations, images = voc_dataset(tmp_path / "data", FILES)
    (annotations / "img0.xml").write_text("<annotation><filename>img0.jpg</filename>")  # a rejection too
    return ["--format", "voc", "--annotations", str(annotations), "--images", str(images)], 4


@pytest.mark.slow
@pytest.mark.parametrize("dataset, processes", [
    (_voc_of_four_tasks, "1"), (_voc_of_four_tasks, "2"), (_coco_naming_its_images_folder, "1")])
def test_a_run_that_parses_ahead_writes_the_bytes_of_one_that_does_not(tmp_path, dataset, processes):
    """The command itself, parsing ahead on the spare core or on the forked processes, against one run in one
    process (which does not parse ahead); the launcher's log says how many tasks it claimed."""
    source, tasks = dataset(tmp_path)
    common = ["convert", *source, "--num_shards", "2"]
    show_claims = ("import logging, sys; logging.getLogger('transforms.local.ahead').setLevel(logging.DEBUG); "
                   "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))")
    runs = {}
    for name, extra in (("ahead", [] if processes == "1" else ["--local_processes", "2"]),
                        ("in_place", ["--local_processes", "1"])):
        result = subprocess.run([sys.executable, "-c", show_claims, *common, "--output", str(tmp_path / name), *extra],
                                cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = result.stderr
    assert f"{tasks} parse tasks claimed as parsed ahead, 0 left" in runs["ahead"]
    assert "claimed" not in runs["in_place"]
    for name in runs:  # the folder's own name, in the files that name it, and the run's durations aside
        for path in (tmp_path / name).glob("*.json"):
            document = json.loads(path.read_text().replace(str(tmp_path / name), "OUTPUT"))
            document.pop("durations", None)
            path.write_text(json.dumps(document, sort_keys=True))
        readme = tmp_path / name / "README.md"
        readme.write_text(readme.read_text().replace(str(tmp_path / name), "OUTPUT"))
    assert digest(tmp_path / "ahead") == digest(tmp_path / "in_place")


def test_the_workers_ahead_yield_the_cpu_to_the_launcher(voc, tmp_path):
    """They run below the launcher's priority: its graph building is the run's critical path."""
    annotations, images = voc
    (run := tmp_path / "run").mkdir()
    ahead, workers = _start_on_two_workers(run, annotations, images)
    try:
        ahead._planned.wait(30)  # the workers ran their first steps
        assert len(workers) == 2
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, worker.pid) for worker in workers} == {min(own + AHEAD_NICENESS, 19)}
    finally:
        ahead.stop()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_workers_ahead_die_with_a_launcher_killed_outright(tmp_path):
    """Killed while a worker parses a COCO file that takes it seconds: it dies at once, not when it is done."""
    images = tmp_path / "images"
    images.mkdir()
    count = 150_000
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in range(count)],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
                        for i in range(count)],
        "categories": [{"id": 1, "name": "cat"}]}))
    (run := tmp_path / "run").mkdir()
    code = (
        "import multiprocessing, time\n"
        "from transforms.beam.read import ParseSettings\n"
        "from transforms.formats import FORMATS, NO_CONTEXT\n"
        "from transforms.local.ahead import AheadSource, ParseAhead, ShardSizing\n"
        f"source = AheadSource(ParseSettings(FORMATS['coco'], NO_CONTEXT, {{}}, 0, 7), ({str(annotations)!r},))\n"
        f"ahead = ParseAhead({str(run)!r}, None, [source], ShardSizing(3, None, ({str(images)!r},)), 2)\n"
        "ahead._planned.wait()\n"
        "print(*[worker.pid for worker in multiprocessing.active_children()], flush=True)\n"
        "time.sleep(60)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in launcher.stdout.readline().split()]
        assert len(workers) == 2 and all(map(_alive, workers))
        time.sleep(0.3)  # one of them parses the file
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 1.0  # parsing the file takes several
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "workers ahead outlived their launcher"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        launcher.stdout.close()
