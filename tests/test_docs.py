"""The documentation: the site builds with `mkdocs build --strict`, the params reference is what the
typed config renders, every config key has a description, and the README stays a five-minute read."""
from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from tinynlp import config

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "docs" / "gen_params_reference.py"
README_MAX_LINES = 200


def _generator():
    spec = importlib.util.spec_from_file_location("gen_params_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fields(model: type[BaseModel], prefix: str = ""):
    """(dotted params key, model class, field name, FieldInfo) for every key below `model`."""
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}", model, name, field
        if inspect.isclass(field.annotation) and issubclass(field.annotation, BaseModel):
            yield from _fields(field.annotation, f"{prefix}{name}.")


def test_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner, not a build problem
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "reference" / "params" / "index.html").is_file()


def test_params_reference_is_current():
    committed = (ROOT / "docs" / "reference" / "params.md").read_text(encoding="utf-8")
    assert committed == _generator().render(), \
        "docs/reference/params.md differs from tinynlp/config.py: run python docs/gen_params_reference.py"


def test_every_config_key_has_a_description():
    reached = list(_fields(config.Params))
    missing = [key for key, _, _, field in reached if not (field.description or "").strip()]
    # a model outside Params' tree (neither a section nor the base of one) is named by class and field
    seen = {model for _, model, _, _ in reached}
    others = [obj for obj in vars(config).values() if inspect.isclass(obj) and issubclass(obj, BaseModel)
              and obj.__module__ == config.__name__ and not any(issubclass(model, obj) for model in seen)]
    missing += [f"{model.__name__}.{name}" for model in others for name, field in model.model_fields.items()
                if not (field.description or "").strip()]
    assert not missing, f"params key(s) without a description= in tinynlp/config.py: {', '.join(missing)}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, \
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the detail into docs/"


def test_each_stage_page_lists_the_params_its_stage_table_entry_declares():
    """The stage pages copy each stage's params from tasks/stages.py: the copy is checked here."""
    import re

    from tasks.stages import STAGES

    for stage in STAGES:
        page = (ROOT / "docs" / "stages" / f"{stage.name}.md").read_text(encoding="utf-8")
        row = next((line for line in page.splitlines() if line.startswith("| params |")), "")
        listed = re.findall(r"`([a-z_.]+)`", row.split("(")[0] if "[reference]" not in row else
                            row.split("[reference]")[0])
        assert listed and set(listed) == set(stage.params), \
            f"docs/stages/{stage.name}.md lists params {listed}; tasks/stages.py declares {list(stage.params)}"
