"""examples/: the Airflow DAG and the Cloud Scheduler -> Flex Template launch run the incremental convert.

Apache Airflow is not a dependency of this project (it is large, with its own pins), so the DAG file is
executed here against a small stand-in for the three Airflow names it imports, which records the tasks,
their arguments and the `>>` dependencies. With Airflow and its Beam provider installed, the second test
also loads the file with Airflow's own DagBag and checks the real task graph.
"""
from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
import types

import pytest

from pipeline.options import add_convert_arguments
from tests.conftest import REPO

DAG_FILE = REPO / "examples" / "airflow" / "od_tfrecords_nightly.py"
LAUNCH = REPO / "examples" / "cloud_scheduler" / "launch_body.json"


class _Task:
    def __init__(self, task_id, **kwargs):
        self.task_id, self.kwargs, self.downstream = task_id, kwargs, []
        _DAG.current.tasks[task_id] = self

    def __rshift__(self, other):
        self.downstream.append(other.task_id)
        return other


class _DAG:
    current = None

    def __init__(self, dag_id, **kwargs):
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, {}

    def __enter__(self):
        _DAG.current = self
        return self

    def __exit__(self, *exc):
        return False


def _beam_options_to_args(options):
    """The Beam provider's rendering of pipeline_options: True -> --flag, False dropped, else --key=value."""
    args = []
    for key, value in options.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not False and value is not None:
            args.append(f"--{key}={value}")
    return args


def _load_dag(monkeypatch, runner=None):
    modules = {
        "airflow": types.SimpleNamespace(DAG=_DAG),
        "airflow.operators": types.ModuleType("airflow.operators"),
        "airflow.operators.bash": types.SimpleNamespace(BashOperator=_Task),
        "airflow.providers.standard": None,  # Airflow 2's layout: the DAG falls back to airflow.operators.bash
        "airflow.providers": types.ModuleType("airflow.providers"),
        "airflow.providers.apache": types.ModuleType("airflow.providers.apache"),
        "airflow.providers.apache.beam": types.ModuleType("airflow.providers.apache.beam"),
        "airflow.providers.apache.beam.operators": types.ModuleType("airflow.providers.apache.beam.operators"),
        "airflow.providers.apache.beam.operators.beam": types.SimpleNamespace(BeamRunPythonPipelineOperator=_Task),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    if runner:
        monkeypatch.setenv("OD_TFRECORDS_RUNNER", runner)
    else:
        monkeypatch.delenv("OD_TFRECORDS_RUNNER", raising=False)
    return runpy.run_path(str(DAG_FILE))["dag"]


def _convert_parser():
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    return parser


def test_dag_runs_the_incremental_convert_daily_then_verifies(monkeypatch):
    from flex_template.main import template_args

    dag = _load_dag(monkeypatch)
    assert dag.dag_id == "od_tfrecords_nightly"
    assert dag.kwargs["schedule"] == "@daily" and dag.kwargs["max_active_runs"] == 1 and dag.kwargs["catchup"] is False
    assert dag.kwargs["default_args"]["retries"] >= 1  # a retried run finishes what a killed one started
    assert set(dag.tasks) == {"convert_incremental", "verify_published"}
    assert dag.tasks["convert_incremental"].downstream == ["verify_published"]
    convert = dag.tasks["convert_incremental"].kwargs
    assert convert["runner"] == "DirectRunner" and convert["dataflow_config"] is None
    assert convert["py_file"].endswith("/flex_template/main.py")
    args = template_args(_beam_options_to_args(convert["pipeline_options"]))
    parsed, unknown = _convert_parser().parse_known_args(args)
    assert unknown == [] and parsed.incremental and parsed.update_changed and parsed.lock_timeout_hours == 20
    assert "pipeline verify" in dag.tasks["verify_published"].kwargs["bash_command"]

    production = _load_dag(monkeypatch, "DataflowRunner").tasks["convert_incremental"].kwargs
    assert production["runner"] == "DataflowRunner" and production["dataflow_config"]["wait_until_finished"]
    parsed, beam_args = _convert_parser().parse_known_args(template_args(_beam_options_to_args(production["pipeline_options"])))
    assert parsed.incremental and any(arg.startswith("--setup_file=") for arg in beam_args)
    assert any(arg.startswith("--temp_location=gs://") for arg in beam_args)


def test_dag_loads_in_real_airflow():
    pytest.importorskip("airflow.providers.apache.beam", reason="Airflow is not a dependency of this project")
    pytest.importorskip("airflow.providers.google", reason="the Beam operator needs the Google provider")
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors
    dag = bag.dags["od_tfrecords_nightly"]
    assert {task.task_id for task in dag.tasks} == {"convert_incremental", "verify_published"}
    assert dag.get_task("convert_incremental").downstream_task_ids == {"verify_published"}


def test_scheduler_launch_passes_the_template_valid_incremental_parameters():
    from flex_template.main import template_args

    body = json.loads(LAUNCH.read_text())["launchParameter"]
    metadata = json.loads((REPO / "flex_template" / "metadata.json").read_text())
    regexes = {parameter["name"]: parameter["regexes"] for parameter in metadata["parameters"]}
    own = {name: value for name, value in body["parameters"].items() if name in regexes}
    assert set(body["parameters"]) - set(own) == {"sdk_container_image"}  # a Dataflow option, passed on to Beam
    for name, value in own.items():
        assert all(re.fullmatch(pattern, value) for pattern in regexes[name]), (name, value)
    parsed, unknown = _convert_parser().parse_known_args(template_args([f"--{k}={v}" for k, v in own.items()]))
    assert unknown == [] and parsed.incremental and parsed.update_changed
    assert "flexTemplates:launch" in (REPO / "examples" / "cloud_scheduler" / "create_job.sh").read_text()
