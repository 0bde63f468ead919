"""How many processes a local run forks (one per core for big local jobs, unless the user chose), its engine and
its options, and when the launcher collects garbage."""
from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import local_runner
from pipeline.local_runner import local_processes


def _images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"{index}.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


def test_big_local_jobs_get_a_process_per_core(tmp_path, monkeypatch):
    monkeypatch.setattr(local_runner, "PARALLEL_FROM_IMAGES", 3)
    small = _images(tmp_path / "small", 2)
    _images(tmp_path / "big" / "deep", 3)  # found below the folder given
    default = PipelineOptions([])
    assert local_processes(default, [small], cores=4) == 1
    assert local_processes(default, [small, str(tmp_path / "big")], cores=4) == 4
    assert local_processes(PipelineOptions(["--runner=DirectRunner"]), ["gs://bucket/images"], cores=4) == 4


def test_the_users_choice_other_runners_and_beams_own_workers_are_respected(tmp_path, monkeypatch):
    monkeypatch.setattr(local_runner, "PARALLEL_FROM_IMAGES", 1)
    images = [_images(tmp_path / "images", 2)]
    assert local_processes(PipelineOptions(["--local_processes=3"]), images, cores=8) == 3
    assert local_processes(PipelineOptions(["--local_processes", "1"]), images, cores=8) == 1
    assert local_processes(PipelineOptions(["--runner=DataflowRunner"]), images, cores=8) == 1
    assert local_processes(PipelineOptions(["--direct_running_mode=multi_processing"]), images, cores=8) == 1
    assert local_processes(PipelineOptions([]), images, cores=1) == 1


def test_a_local_run_names_the_fnapi_runner_so_nothing_is_downloaded():
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    from pipeline.local_runner import local_engine

    assert isinstance(local_engine(PipelineOptions([])), FnApiRunner)
    assert isinstance(local_engine(PipelineOptions(["--runner=DirectRunner"])), FnApiRunner)
    assert local_engine(PipelineOptions(["--runner=DataflowRunner"])) is None


def test_a_local_run_skips_construction_type_inference_unless_asked():
    from apache_beam.options.pipeline_options import TypeOptions

    from pipeline.local_runner import local_options

    assert local_options([]).view_as(TypeOptions).pipeline_type_check is False
    assert local_options(["--pipeline_type_check"]).view_as(TypeOptions).pipeline_type_check is True
    assert local_options(["--runner=DataflowRunner"]).view_as(TypeOptions).pipeline_type_check is True


def test_start_up_runs_without_the_cyclic_collector_and_the_run_with_it(tmp_path, monkeypatch):
    """Start-up allocates what lives until exit, so collecting then is wasted (pipeline/cli.py main); the run
    itself frees as it goes and needs the collector, and main() leaves it as it found it."""
    import gc

    import apache_beam as beam

    from pipeline import cli, graph
    from tests.small_datasets import voc_dataset

    annotations, images = voc_dataset(tmp_path, 3)
    seen, during_run = {}, tmp_path / "collector-during-run"
    build = graph.build_convert_pipeline

    def watched_build(p, *args, **kwargs):
        seen["building"] = gc.isenabled()
        # the step's function is pickled for the runner: it reports through a file, not this dict
        _ = p | "WatchCollector" >> beam.Create([str(during_run)]) | beam.Map(
            lambda path: open(path, "w").write(str(__import__("gc").isenabled())))
        return build(p, *args, **kwargs)

    monkeypatch.setattr(graph, "build_convert_pipeline", watched_build)
    assert gc.isenabled()
    status = cli.main(["convert", "--format", "voc", "--annotations", str(annotations), "--images", str(images),
                       "--output", str(tmp_path / "out")])
    assert status == 0
    seen["running"] = during_run.read_text() == "True"
    assert seen == {"building": False, "running": True}
    assert gc.isenabled()
    assert cli.main(["convert", "--images", "/no/such/folder"]) == 2  # an early exit restores it too
    assert gc.isenabled()



_START_UP_IMPORTS = """
import importlib.util, sys
case = sys.argv[1]
from pipeline import cli  # imports no more than the standard library
unused = cli._UNUSED_BY_COMMANDS
assert "IPython" in unused
installed = [name for name in unused if importlib.util.find_spec(name) is not None]
preloaded = {}
if case == "preloaded":
    for name in installed:
        preloaded[name] = importlib.import_module(name)
sys.argv = ["od-tfrecords"]  # the command, run with no arguments, prints its help
assert cli.main() == 2
assert "apache_beam" in sys.modules
from apache_beam.io.filesystems import FileSystems
assert type(FileSystems.get_filesystem("gs://bucket/x")).__name__ == "GCSFileSystem"  # gs:// still served
for name in installed:
    if case == "preloaded":
        assert sys.modules[name] is preloaded[name], name
    else:
        assert name not in sys.modules, name  # neither loaded nor left hidden
for name in installed:
    importlib.import_module(name)  # still there for whoever asks later
print(installed)
"""
_CALLED_WITH_ARGUMENTS = """
import importlib.util, sys
from pipeline import cli
assert cli.main([]) == 2
print([name for name in cli._UNUSED_BY_COMMANDS if name not in sys.modules and importlib.util.find_spec(name)])
"""


@pytest.mark.parametrize("case", ["fresh", "preloaded"])
def test_start_up_leaves_unused_libraries_unloaded_yet_importable_and_loaded_ones_alone(case):
    """Beam's connectors would load IPython and Pub/Sub's client (pipeline/cli.py)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", _START_UP_IMPORTS, case], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""  # not a warning about what was hidden


def test_main_called_with_arguments_hides_nothing():
    """A notebook that calls main(argv) keeps every Beam connector whole (pipeline/cli.py)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", _CALLED_WITH_ARGUMENTS], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"  # every one of them installed here was loaded


_WORKERS_CHOSEN = """
import sys, tempfile
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from transforms.beam.runtime import HandlingDoFn
from transforms.local.pool import grpc_threads_alive
from transforms.local.run import LocalRun

if sys.argv[1] == "grpc":  # Beam's DirectRunner tries Prism first, which starts gRPC's threads
    with TestPipeline() as p:
        _ = p | beam.Create([1]) | beam.Map(lambda x: x)
workers = LocalRun(tempfile.mkdtemp(), processes=2).workers(HandlingDoFn())
print(grpc_threads_alive(), type(workers).__name__)
workers.stop()
"""


@pytest.mark.parametrize("threads, expected", [("grpc", "True InProcess"), ("none", "False ForkedWorkers")])
def test_a_process_running_grpc_threads_handles_elements_in_place_rather_than_fork(threads, expected):
    """A fork while gRPC's threads run can hang the worker in gRPC's fork handler; the launcher of a local
    run starts none (it names the FnApiRunner), so it forks, but a process that has them must not."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", _WORKERS_CHOSEN, threads], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == expected
    if threads == "grpc":
        assert "runs in place, on one core" in done.stderr
