"""The import rules between the layers of transforms/ (docs/design.md, "Where things live").

- The pure layers (the root's pure modules, formats/, records/, images/, and the checks and drawings of
  reports/) load neither Beam nor TensorFlow, even indirectly: they are unit-tested, and reused, alone.
- Only the runner set-up (pipeline/local_runner.py, and the progress line it shows) reaches
  transforms/local/; the Beam steps get a Runtime (transforms/beam/runtime.py) and never know which.
- transforms/ never imports pipeline/; the pure layers import no other layer of transforms/ than
  themselves and the pure root.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

from tests.conftest import REPO

PURE_ROOT = ["model", "boxes", "class_map", "label_map", "splits", "source_splits", "guards", "outcomes", "paths", "join"]
PURE_PACKAGES = ["formats", "records", "images"]
PURE_REPORTS = ["reports.inspect_report", "reports.verify_checks"]
LOCAL_RUNNER_SET_UP = {"pipeline/local_runner.py", "pipeline/progress.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> Dict[str, Set[str]]:
    """{file relative to the repository: every module it imports, at its top or inside a function}."""
    found = {}
    for path in sorted([*REPO.glob("transforms/**/*.py"), *REPO.glob("pipeline/*.py")]):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(REPO))] = modules
    return found


def _pure_modules():
    modules = [f"transforms.{name}" for name in PURE_ROOT + PURE_REPORTS]
    for package in PURE_PACKAGES:
        modules += [_module_name(path) for path in sorted((REPO / "transforms" / package).glob("*.py"))]
    return modules


def test_the_pure_layers_load_neither_beam_nor_tensorflow():
    code = (
        "import importlib, sys\n"
        f"for name in {_pure_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'apache_beam', 'tensorflow', 'pipeline'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_only_the_runner_set_up_reaches_the_local_runner_machinery():
    reaching = sorted(path for path, modules in _imports().items()
                      if not path.startswith("transforms/local/") and any(m.startswith("transforms.local") for m in modules))
    assert reaching == sorted(LOCAL_RUNNER_SET_UP)


def test_transforms_never_imports_pipeline_and_pure_layers_import_only_pure_code():
    pure = set(_pure_modules()) | {"transforms"} | {f"transforms.{package}" for package in PURE_PACKAGES}
    # `from transforms.records.example import bytes_feature` names a module and a name in it: either may be pure
    is_pure = lambda name: name in pure or name.rsplit(".", 1)[0] in pure
    for path, modules in _imports().items():
        if not path.startswith("transforms/"):
            continue
        assert not any(name.startswith("pipeline") for name in modules), path
        if _module_name(REPO / path) in pure:
            reached = sorted(name for name in modules if name.startswith("transforms") and not is_pure(name))
            assert not reached, f"{path} imports {reached}"
