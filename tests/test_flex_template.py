"""The Flex Template's metadata.json, launcher entry point and Dockerfile agree with the real CLI."""
from __future__ import annotations

import argparse
import json
import re

import pytest

from pipeline.options import add_convert_arguments
from tests.conftest import REPO

TEMPLATE = REPO / "flex_template"
METADATA = json.loads((TEMPLATE / "metadata.json").read_text())
PARAMETERS = {parameter["name"]: parameter for parameter in METADATA["parameters"]}
EXAMPLE = re.compile(r"\(Example: ([^()]+)\)$")


def _convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    return parser


def _convert_flags():
    return {action.dest for action in _convert_parser()._actions if action.dest != "help"}


def _example(parameter) -> str:
    match = EXAMPLE.search(parameter["helpText"])
    assert match, f"{parameter['name']}: helpText ends without (Example: ...)"
    return match.group(1)


def test_parameters_are_exactly_the_convert_flags():
    assert set(PARAMETERS) == _convert_flags()
    assert len(PARAMETERS) == len(METADATA["parameters"])  # no name twice


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_parameter_is_documented_and_its_regexes_accept_its_example(name):
    parameter = PARAMETERS[name]
    assert parameter["label"] and len(parameter["helpText"]) > 30
    assert isinstance(parameter["isOptional"], bool)
    assert parameter["regexes"], f"{name} has no regex"
    example = _example(parameter)
    for pattern in parameter["regexes"]:
        assert re.fullmatch(pattern, example), f"{name}: {pattern} rejects its own example {example!r}"
    required = {"annotations", "images", "output"}
    assert parameter["isOptional"] is (name not in required)


def test_path_parameters_refuse_local_paths():
    for name, parameter in PARAMETERS.items():
        if "gs://" in _example(parameter):
            assert not any(re.fullmatch(p, "/home/me/data") for p in parameter["regexes"]), name
            assert not any(re.fullmatch(p, "gs://") for p in parameter["regexes"]), name


def test_examples_parse_as_a_real_convert_command_line():
    from flex_template.main import template_args

    argv = [f"--{name}={_example(parameter)}" for name, parameter in PARAMETERS.items()]
    args = template_args(argv)
    parsed, unknown = _convert_parser().parse_known_args(args)
    assert unknown == []
    assert parsed.annotations == ["gs://my-data/voc/Annotations"] and parsed.seed == 0
    assert not hasattr(parsed, "drop_duplicates")  # =false: the switch is left off


def test_switches_given_as_true_become_bare_flags():
    from flex_template.main import template_args

    assert template_args(["--drop_duplicates=true", "--include_masks=false", "--runner=DataflowRunner"]) == [
        "--drop_duplicates", "--runner=DataflowRunner"]


@pytest.mark.parametrize("value", ["ture", "on", "2"])
def test_a_switch_with_any_other_value_is_one_error_line(value):
    from flex_template.main import template_args
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match=f"--incremental is a switch: true or false, not '{value}'"):
        template_args([f"--incremental={value}"])


def test_the_switches_are_the_convert_commands_on_off_flags():
    from flex_template.main import SWITCHES

    parser = _convert_parser()
    flags = {action.dest for action in parser._actions if action.const is True and action.nargs == 0}
    assert set(SWITCHES) == flags


def test_dockerfile_ships_both_packages_and_points_at_the_entry_point():
    dockerfile = (TEMPLATE / "Dockerfile").read_text()
    for line in ("COPY setup.py ./", "COPY pipeline ./pipeline", "COPY transforms ./transforms"):
        assert line in dockerfile
    (entry,) = re.findall(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/(\S+)$", dockerfile, re.M)
    assert (REPO / entry).is_file()
    beam = re.search(r"ARG BEAM_VERSION=(\S+)", dockerfile).group(1)
    import apache_beam

    assert beam == apache_beam.__version__  # the workers' SDK is the one the tests ran
