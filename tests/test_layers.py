"""Rooms by role: imports point down (cli, flows -> tasks -> tinynlp), the core imports neither
Prefect nor DVC, error classes live in one module, a file-name constant is defined once, and
`tasks/` holds stages. Read from the source, so a contributor's stray import fails here."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from tasks.stages import STAGE_ORDER

PACKAGES = ("tinynlp", "tasks", "flows", "cli")
# what each package may import from the project: only the ones below it
ALLOWED = {"tinynlp": {"tinynlp"}, "tasks": {"tinynlp", "tasks"}, "flows": {"tinynlp", "tasks", "flows"},
           "cli": {"tinynlp", "tasks", "flows", "cli"}}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package):
    wrong = [f"{path.relative_to(ROOT)} imports {name}" for path in modules(package) for name in imports(path)
             if name.split(".")[0] in PACKAGES and name.split(".")[0] not in ALLOWED[package]]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", ["tinynlp", "tasks"])
def test_core_and_stages_import_neither_prefect_nor_dvc(package):
    wrong = [f"{path.relative_to(ROOT)} imports {name}" for path in modules(package) for name in imports(path)
             if name.split(".")[0] in ("prefect", "dvc", "prefect_dask", "prefect_ray")]
    assert not wrong, "\n".join(wrong)


def test_predict_serve_report_and_drift_commands_do_not_load_prefect():
    code = ("import sys, cli.main, cli.predict, cli.serve, cli.report, cli.drift, tinynlp.drift_check;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'dvc'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_error_classes_live_in_one_module():
    elsewhere = []
    for package in PACKAGES:
        for path in modules(package):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                        getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception"))
                        for base in node.bases):
                    elsewhere.append(f"{path.relative_to(ROOT)}: class {node.name}")
    assert elsewhere and all(e.startswith("tinynlp/errors.py") for e in elsewhere), "\n".join(elsewhere)


@pytest.mark.parametrize("name", ["pipeline.json", "model.onnx", "encoder.onnx", "card.json", "labels.json"])
def test_model_and_split_file_names_are_defined_once(name):
    places = [f"{path.relative_to(ROOT)}:{number}" for package in PACKAGES for path in modules(package)
              for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if f'"{name}"' in line]
    assert len(places) == 1, f"{name} is written as a literal in {places}: use the constant"


def test_tasks_holds_the_stages_and_their_table_only():
    expected = {"__init__", "__main__", "stages", "dvc_yaml", *STAGE_ORDER}
    assert {path.stem for path in modules("tasks")} == expected


def test_flows_hold_prefect_code_and_its_plumbing_only():
    # every flows module imports Prefect, or is the DVC / git plumbing the flows call
    plumbing = {"__init__", "dvc_sync", "versioning"}
    without = [path.name for path in modules("flows") if path.stem not in plumbing
               and not any(name.split(".")[0] == "prefect" for name in imports(path))]
    assert not without, f"flows/ modules that never touch Prefect: {without}"
