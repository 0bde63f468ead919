"""The wheel Dataflow workers install (--setup_file ./setup.py) holds all of the pipeline's code."""
from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy, so the checkout gets no build/ or egg-info of this test's making.
    source = tmp_path_factory.mktemp("src")
    shutil.copy(REPO / "setup.py", source / "setup.py")
    for package in ("pipeline", "transforms"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (path,) = dist.glob("od_tfrecords-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_module_of_both_packages(wheel):
    names = set(wheel.namelist())
    for package in ("pipeline", "transforms"):
        expected = {
            path.relative_to(REPO).as_posix()
            for path in (REPO / package).rglob("*.py")
            if "__pycache__" not in path.parts
        }
        assert expected, package
        missing = expected - names
        assert not missing, f"not packaged: {sorted(missing)}"
    assert "transforms/formats/__init__.py" in names
    assert not any(name.startswith("tests/") for name in names)


def test_wheel_dependencies_all_have_ranges(wheel):
    (metadata_name,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(wheel.read(metadata_name))
    requirements = metadata.get_all("Requires-Dist")
    runtime = [r for r in requirements if "extra ==" not in r]
    assert any(r.startswith("apache-beam[gcp]") for r in runtime)
    for requirement in requirements:
        spec = requirement.split(";")[0]
        assert ">=" in spec and "<" in spec.replace("<=", ""), f"no pinned range: {requirement}"


def test_console_script_is_declared(wheel):
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    assert "od-tfrecords = pipeline.cli:main" in wheel.read(entry_points).decode()
