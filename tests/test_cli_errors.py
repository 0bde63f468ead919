"""Unusable arguments: exit 2 with one line on stderr that says what to do, never a traceback."""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from tests.conftest import run_cli


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    return tmp_path


def _convert(dataset, *extra, **overrides):
    settings = {"--annotations": dataset / "annotations", "--images": dataset / "images", "--output": dataset / "out"}
    settings.update({f"--{key}": value for key, value in overrides.items()})
    argv = ["convert"] + [str(part) for flag, value in settings.items() if value is not None for part in (flag, value)]
    return main(argv + list(extra))


@pytest.mark.parametrize(
    "extra, overrides, message",
    [
        ((), {"images": "/no/such/folder"}, "--images /no/such/folder: no such folder"),
        ((), {"annotations": "/no/such/annotations"}, "--annotations /no/such/annotations: no such file"),
        ((), {"format": "pascal"}, "unknown --format 'pascal'; choose one of voc, coco"),
        ((), {"format": "coco"}, "no coco annotation files at"),
        ((), {"splits": "train=0.8,val=0.3"}, "split fractions add up to 1.1, not 1"),
        ((), {"splits": "train"}, "is not NAME=FRACTION"),
        ((), {"seed": "x"}, "argument --seed: invalid int value: 'x'"),
        ((), {"num_shards": "-1"}, "--num_shards must be at least 0"),
        ((), {"name": "my-data"}, "--name 'my-data': use letters, digits and _ only"),
        ((), {"images": None}, "--images is required"),
        (("--no_such_option", "1"), {}, "unknown option --no_such_option"),
        (("--direct_num_workers", "x"), {}, "argument --direct_num_workers: invalid int value: 'x'"),
        (("--local_processes", "0"), {}, "--local_processes must be at least 1, not 0"),
        ((), {"label_map": "/no/such/map.pbtxt"}, "cannot read --label_map /no/such/map.pbtxt"),
        ((), {"config": "/no/such/config.yaml"}, "cannot read config /no/such/config.yaml"),
        (("--incremental",), {"output": "s3://bucket/out"}, "--output must be a local folder or a gs:// prefix"),
        ((), {"output": "s3://bucket/out"}, "--output must be a local folder or a gs:// prefix"),
        ((), {"output": "/proc/version/out"}, "cannot take the lock in /proc/version/out"),
        (("--incremental",), {"output": "/proc/version/out"}, "cannot take the lock in /proc/version/out"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line(dataset, capsys, extra, overrides, message):
    assert _convert(dataset, *extra, **overrides) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert message in captured.err
    assert not (dataset / "out").exists()


def test_bad_config_values(dataset, capsys):
    config = dataset / "bad.yaml"
    config.write_text("splits: [1, 2\n")
    assert _convert(dataset, config=config) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    config.write_text("frobnicate: 3\n")
    assert _convert(dataset, config=config) == 2
    assert "unknown option --frobnicate" in capsys.readouterr().err


def test_hyphenated_flags_are_accepted_and_a_typo_gets_a_suggestion(dataset, capsys):
    # the fixture's one image is cut short: refused (exit 3), which reads the flags first
    assert _convert(dataset, "--drop-duplicates", "--num-shards", "1", "--max-rejected=1", format="voc") == 3
    summary = json.loads((dataset / "out" / ".refused" / "summary.json").read_text())
    assert summary["config"]["drop_duplicates"] is True and summary["config"]["num_shards"] == 1
    assert summary["config"]["max_rejected"] == 1.0
    capsys.readouterr()
    assert _convert(dataset, "--drop_dupilcates", format="voc") == 2
    assert "unknown option --drop_dupilcates; did you mean --drop_duplicates?" in capsys.readouterr().err
    assert _convert(dataset, "--temp-locaton=/tmp", format="voc") == 2
    assert "did you mean --temp_location?" in capsys.readouterr().err


def test_bad_label_map(dataset, capsys):
    (dataset / "map.pbtxt").write_text("item { id: 0 name: 'x' }")
    assert _convert(dataset, label_map=dataset / "map.pbtxt") == 2
    assert "ids start at 1" in capsys.readouterr().err


def test_ambiguous_format_names_the_candidates(dataset, capsys):
    (dataset / "annotations" / "instances.json").write_text('{"images": [], "annotations": []}')
    assert _convert(dataset) == 2
    assert "could be any of voc, coco; pass --format" in capsys.readouterr().err


def test_help_lists_every_format_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "voc       Pascal VOC XML" in out and "--format coco --annotations" in out


@pytest.mark.slow
def test_real_process_prints_no_traceback(tmp_path):
    result = run_cli("convert", "--annotations", tmp_path, "--images", tmp_path / "nope", "--output", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --images {tmp_path}/nope: no such folder (or it is empty)"]


def test_a_beam_switch_set_false_in_a_config_is_passed_on_or_refused(tmp_path):
    from pipeline.config import beam_flags
    from pipeline.errors import UsageError
    from pipeline.options import _checked_beam_args

    assert beam_flags({"use_public_ips": False, "save_main_session": True}) == ["--no_use_public_ips", "--save_main_session"]
    assert _checked_beam_args(["--no_use_public_ips"]) == ["--no_use_public_ips"]
    with pytest.raises(UsageError, match="`update: false`: Beam's --update is off unless given"):
        _checked_beam_args(beam_flags({"update": False}))


def test_a_spill_folder_that_cannot_be_made_is_one_line(dataset, capsys, monkeypatch):
    from transforms.local import spill

    def refused():
        raise PermissionError(13, "Permission denied", "/tmp/od-tfrecords-spill-x")

    monkeypatch.setattr(spill, "new_folder", refused)
    assert _convert(dataset, format="voc") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot make a spill folder in ") and "set TMPDIR" in lines[0]


@pytest.mark.parametrize("runner", ["PortableRunner", "FlinkRunner", "SparkRunner", "DataflowRunner"])
def test_local_paths_with_a_runner_of_many_hosts_are_refused_up_front(dataset, capsys, runner):
    assert _convert(dataset, "--runner", runner, format="voc") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--output {dataset}/out is a local path, but --runner {runner} runs the job on its own workers" in err
    assert "each would read and write its own disk" in err and "--allow_local_paths" in err
    assert not (dataset / "out").exists()  # refused before the lock is taken
    assert _convert(dataset, "--runner", runner, format="voc", output="gs://bucket/out") == 2
    assert f"--annotations {dataset}/annotations is a local path" in capsys.readouterr().err


def test_local_paths_are_accepted_with_allow_local_paths_or_a_runner_of_this_host(dataset):
    from pipeline.options import resolve_convert

    given = {"annotations": [str(dataset / "annotations")], "images": [str(dataset / "images")],
             "output": str(dataset / "out"), "format": "voc"}
    job = resolve_convert({**given, "allow_local_paths": True}, ["--runner", "FlinkRunner"])
    assert job.output == str(dataset / "out") and job.settings["allow_local_paths"] is True
    for runner in ("DirectRunner", "FnApiRunner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner", "PrismRunner"):
        assert resolve_convert(given, ["--runner", runner]).settings["allow_local_paths"] is False


def test_options_of_the_runner_named_are_passed_to_beam():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import _checked_beam_args

    flags = ["--runner", "FlinkRunner", "--flink_master", "localhost:8081", "--spark_master_url", "spark://h:7077",
             "--environment_type", "EXTERNAL", "--environment_config", "localhost:50000"]
    assert _checked_beam_args(flags) == flags
    options = PipelineOptions(flags).get_all_options()
    assert options["flink_master"] == "localhost:8081" and options["spark_master_url"] == "spark://h:7077"


_DASK_FLAGS = ["--runner", "apache_beam.runners.dask.dask_runner.DaskRunner", "--dask_client_address", "127.0.0.1:8786"]
_CHECK = ("import json, sys\nfrom pipeline.options import _checked_beam_args\nfrom pipeline.errors import UsageError\n"
          "from apache_beam.options.pipeline_options import PipelineOptions\n"
          f"flags = {_DASK_FLAGS!r}\n"
          "try:\n    print(json.dumps([_checked_beam_args(flags), PipelineOptions(flags).get_all_options()['address']]))\n"
          "except UsageError as error:\n    print(json.dumps(str(error)))\n")


def _check_in_a_new_process(prelude: str, pythonpath: str):
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run([sys.executable, "-c", prelude + _CHECK], capture_output=True, text=True, cwd=REPO,
                            env={**__import__("os").environ, "PYTHONPATH": pythonpath}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dask_runner_options_are_known_once_its_module_is_imported(tmp_path):
    # Beam defines DaskOptions in the runner's module, which needs dask: a stand-in dask with the names that
    # module uses at import, so Beam's real DaskOptions registers (this machine has no dask)
    from tests.conftest import REPO

    stub = tmp_path / "dask"
    stub.mkdir()
    (stub / "__init__.py").write_text("")
    (stub / "bag.py").write_text("class Bag:\n    pass\n")
    (stub / "distributed.py").write_text("class Client:\n    pass\nclass Future:\n    pass\ndef as_completed(*a, **k):\n    return []\n")
    accepted, address = _check_in_a_new_process("", f"{tmp_path}:{REPO}")
    assert accepted == _DASK_FLAGS and address == "127.0.0.1:8786"


def test_an_option_of_a_runner_that_is_not_installed_says_what_to_install():
    from tests.conftest import REPO

    message = _check_in_a_new_process("import sys\nsys.modules['dask'] = None  # not installed\n", str(REPO))
    assert message.startswith("--dask_client_address is an option of Beam's DaskRunner, which is not installed here")
    assert message.endswith("pip install 'apache-beam[dask]'")
