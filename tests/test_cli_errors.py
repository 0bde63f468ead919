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
    from transforms import spill

    def refused():
        raise PermissionError(13, "Permission denied", "/tmp/od-tfrecords-spill-x")

    monkeypatch.setattr(spill, "new_folder", refused)
    assert _convert(dataset, format="voc") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot make a spill folder in ") and "set TMPDIR" in lines[0]
