"""The stage table is the one declaration of the DAG: dvc.yaml is generated from it and the code's
imports, a stage cannot read a params key it does not declare, and the flow's dependencies are the
table's. Each check is shown to fail on a planted omission."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from tasks import dvc_yaml
from tasks.stages import STAGE_ORDER, STAGES, Stage, StageParams, resolve, run_stage, stage, upstream
from tinynlp.config import load_params
from tinynlp.errors import UndeclaredParamError


def committed() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def test_the_committed_dvc_yaml_is_generated_from_the_stage_table_and_the_imports():
    problems = dvc_yaml.stale(committed())
    assert not problems, "dvc.yaml is stale; run `python -m tasks.dvc_yaml`:\n" + "\n".join(problems)
    assert (ROOT / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml.render(), \
        "dvc.yaml differs from `python -m tasks.dvc_yaml` (formatting): regenerate it"


def test_check_command_passes_on_the_committed_file():
    result = subprocess.run([sys.executable, "-m", "tasks.dvc_yaml", "--check"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_a_planted_missing_code_dep_or_params_key_is_named_by_stage_and_file():
    planted = committed()
    planted["stages"]["augment"]["deps"].remove("tinynlp/readers.py")
    planted["stages"]["quantize"]["params"].remove("evaluate.batch_size")
    problems = dvc_yaml.stale(planted)
    assert "stage augment: dvc.yaml does not declare dep tinynlp/readers.py, which the stage imports" in problems
    assert "stage quantize: dvc.yaml does not declare params key evaluate.batch_size" in problems
    assert len(problems) == 2, problems


def test_every_stage_depends_on_every_project_module_it_imports_transitively():
    """The omissions the old hand-written lists had: augment imports the readers, the model loader
    and the tag helpers through the ingestion rules; pretrain reaches heads through the training set-up."""
    deps = {name: set(entry["deps"]) for name, entry in committed()["stages"].items()}
    for module in ("tinynlp/readers.py", "tinynlp/modeling.py", "tinynlp/tagging.py", "tinynlp/ingestion.py"):
        assert module in deps["augment"], module
    assert "tinynlp/heads.py" in deps["pretrain"]
    assert all(f"tasks/{name}.py" in deps[name] for name in STAGE_ORDER)
    assert all("tinynlp/config.py" in deps[name] for name in STAGE_ORDER)
    # nothing above the stages: no shell, no Prefect module, no stage table
    assert not any(d.startswith(("flows/", "cli/")) or d == "tasks/stages.py" for ds in deps.values() for d in ds)


def test_code_deps_follow_imports_inside_functions_and_from_package_imports(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "core").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text('"""only a docstring: not a dep"""\n')
    (tmp_path / "core" / "__init__.py").write_text("VERSION = 1  # code: a dep\n")
    (tmp_path / "tasks" / "step.py").write_text("from core import a\n\ndef run():\n    import core.b\n")
    (tmp_path / "core" / "a.py").write_text("from .c import helper\nimport json\n")
    (tmp_path / "core" / "b.py").write_text("")
    (tmp_path / "core" / "c.py").write_text("def helper(): ...\n")
    (tmp_path / "core" / "unused.py").write_text("")
    assert dvc_yaml.code_deps("tasks.step", tmp_path) == [
        "core/__init__.py", "core/a.py", "core/b.py", "core/c.py", "tasks/step.py"]


def test_a_stage_reading_an_undeclared_params_key_fails_naming_stage_and_key(tmp_path):
    params = load_params(ROOT / "params.yaml", check_files=False)
    view = StageParams(params, Stage("quantize", "", ("quantize", "evaluate.batch_size"), (), ()))
    assert view.quantize is params.quantize
    assert view.evaluate.batch_size == params.evaluate.batch_size
    assert view.paths is params.paths  # paths are deps and outs, declared as such
    with pytest.raises(UndeclaredParamError, match=r"stage quantize read params key 'evaluate\.threads'"):
        view.evaluate.threads
    with pytest.raises(UndeclaredParamError, match=r"stage quantize read params key 'finetune'.*tasks/stages\.py"):
        view.finetune


def test_run_stage_hands_the_stage_only_its_declared_params(monkeypatch):
    seen = {}

    def run_fake(params):
        seen["declared"] = params.ingest
        params.finetune  # not declared by ingest

    import tasks.ingest
    monkeypatch.setattr(tasks.ingest, "run_ingest", run_fake)
    params = load_params(ROOT / "params.yaml", check_files=False)
    with pytest.raises(UndeclaredParamError, match="stage ingest read params key 'finetune'"):
        run_stage("ingest", params)
    assert seen["declared"] is params.ingest


def test_the_flow_waits_for_what_each_stage_reads():
    params = load_params(ROOT / "params.yaml", check_files=False)
    assert upstream(params) == {"ingest": [], "augment": ["ingest"], "pretrain": ["ingest"],
                                "finetune": ["augment", "pretrain"], "prune": ["finetune"], "distill": ["finetune"],
                                "quantize": ["prune", "distill"], "evaluate": ["quantize"]}
    # an MLM corpus that ingest does not write: pretrain starts at once
    text_corpus = params.model_copy(update={"paths": params.paths.model_copy(update={"corpus": "corpus.txt"})})
    assert upstream(text_corpus)["pretrain"] == []


def test_table_order_is_a_topological_order_and_names_match_modules_and_sections():
    params = load_params(ROOT / "params.yaml", check_files=False)
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    for name, after in upstream(params).items():
        assert all(order[u] < order[name] for u in after), (name, after)
    for entry in STAGES:
        assert (ROOT / "tasks" / f"{entry.name}.py").is_file()
        assert entry.name in entry.params and hasattr(params, entry.name)  # stage name = params section
        assert entry.function.__name__ == f"run_{entry.name}"
        assert all(resolve(o.path, params).parts[0] in ("data", "models", "reports") for o in entry.outs)
    with pytest.raises(KeyError, match="unknown stage 'train'"):
        stage("train")
