"""Lineage records and the model registry, on real git repositories in a temp dir: the code state
ignores what a run rewrites (dvc.lock, reports) and says the rest in words; dvc.lock's raw inputs
and params are read as DVC wrote them; versions come from GTO tags and legacy plain tags alike;
`tinynlp lineage` prints the chain from git alone."""
from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tinynlp import lineage, registry
from tinynlp.config import PathsConfig

LOCK = {"schema": "2.0", "stages": {
    "ingest": {"cmd": "python -m tasks ingest",
               "deps": [{"path": "data/batches", "hash": "md5", "md5": "b" * 32 + ".dir", "size": 458, "nfiles": 1},
                        {"path": "data/raw/dev.conll", "hash": "md5", "md5": "d" * 32, "size": 10},
                        {"path": "data/raw/test.conll", "hash": "md5", "md5": "e" * 32, "size": 10},
                        {"path": "data/raw/train.conll", "hash": "md5", "md5": "f" * 32, "size": 10},
                        {"path": "tasks/ingest.py", "hash": "md5", "md5": "0" * 32, "size": 99}],
               "params": {"params.yaml": {"ingest": {"task": "ner", "format": "conll"}}},
               "outs": [{"path": "data/ingest", "hash": "md5", "md5": "1" * 32 + ".dir"}]},
    "finetune": {"params": {"params.yaml": {"finetune": {"epochs": 3, "seed": 0}, "pretrain.checkpoint": "tiny"}}},
    "evaluate": {"params": {"params.yaml": {"evaluate": {"batch_size": 64}}},
                 "outs": [{"path": "models/promoted", "hash": "md5", "md5": "a" * 32 + ".dir"}]}}}
VALIDATION = {"validation": {
    "train": {"source": "data/raw/train.conll", "rules": {"token_not_empty": {"success": True},
                                                          "label_in_set": {"success": True}}},
    "test": {"source": "data/raw/test.conll", "rules": {"token_not_empty": {"success": True},
                                                        "bio_transition": {"success": False}}}}}
GATE = {"chosen": "finetune_int8", "budget": {"max_drop": 0.02, "objective": "latency", "latency_budget_ms": 0},
        "decisions": [{"name": "finetune", "passed": True, "reasons": []},
                      {"name": "finetune_int8", "passed": True, "reasons": []},
                      {"name": "distill", "passed": False, "reasons": ["dev_score 0.40 is 0.10 below the reference"]}]}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A git repository with code, dvc.lock and reports committed; the working directory."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "repo"
    for name, text in (("code.py", "x = 1\n"), ("other.py", "y = 2\n"), ("dvc.lock", yaml.safe_dump(LOCK)),
                       ("reports/ingest/validation.json", json.dumps(VALIDATION)),
                       ("data/ingest/labels.json", "[]"), ("data/raw/train.conll", "a\tO\n")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "ci")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    monkeypatch.chdir(root)
    return root


def test_a_run_that_rewrites_dvc_lock_and_reports_is_clean(repo):
    head = git(repo, "rev-parse", "HEAD")
    (repo / "dvc.lock").write_text(yaml.safe_dump({**LOCK, "schema": "2.0 rewritten"}))
    (repo / "reports/ingest/validation.json").write_text("{}")
    state = lineage.code_state(ignore=["reports"])
    assert state == {"commit": head, "dirty": [], "repository": True}
    assert lineage.describe_code(state) == f"commit {head[:7]}, clean"


def test_changed_code_is_named_in_words(repo):
    (repo / "code.py").write_text("x = 2\n")
    git(repo, "mv", "other.py", "renamed.py")
    (repo / "reports/ingest/validation.json").write_text("{}")
    state = lineage.code_state(ignore=["reports/"])
    assert state["dirty"] == ["code.py", "renamed.py"]  # a rename names its new path once
    assert lineage.describe_code(state) == \
        f"commit {state['commit'][:7]} with uncommitted changes to code.py, renamed.py"
    assert lineage.code_state()["dirty"] == ["code.py", "renamed.py", "reports/ingest/validation.json"]


def test_ignored_paths_are_relative_to_the_workspace_inside_a_bigger_repository(repo, monkeypatch):
    (repo / "sub/reports").mkdir(parents=True)
    (repo / "sub/reports/r.json").write_text("1")
    (repo / "sub/dvc.lock").write_text("a")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sub")
    (repo / "sub/reports/r.json").write_text("2")
    (repo / "sub/dvc.lock").write_text("b")
    monkeypatch.chdir(repo / "sub")
    assert lineage.code_state(ignore=["reports"])["dirty"] == []


def test_describe_code_without_git_without_commits_and_with_many_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert lineage.describe_code(lineage.code_state(root=tmp_path)) == "not a git repository"
    git(tmp_path, "init", "-q")
    assert lineage.describe_code(lineage.code_state(root=tmp_path)) == "no commit yet, clean"
    many = {"commit": "0123456789abcdef", "dirty": [f"f{i}.py" for i in range(7)], "repository": True}
    assert lineage.describe_code(many) == \
        "commit 0123456 with uncommitted changes to f0.py, f1.py, f2.py, f3.py, f4.py (+2 more)"


def test_dvc_lock_raw_inputs_params_and_promoted_hash(tmp_path):
    assert [d["path"] for d in lineage.raw_inputs(LOCK, ["data/raw/train.conll", "./data/raw/dev.conll",
                                                         "data/raw/test.conll", "data/batches/"])] == \
        ["data/batches", "data/raw/dev.conll", "data/raw/test.conll", "data/raw/train.conll"]  # no code
    hashes = lineage.params_hashes(LOCK)
    assert set(hashes) == {"ingest", "finetune"}, "the promoting stage's own entry is stale while it runs"
    assert set(hashes["finetune"]) == {"finetune", "pretrain.checkpoint"}
    assert hashes["finetune"]["finetune"] == lineage.params_hash({"seed": 0, "epochs": 3})  # key order: same hash
    assert hashes["finetune"]["finetune"] != lineage.params_hash({"seed": 1, "epochs": 3})
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    assert lineage.locked_params(tmp_path / "dvc.lock")["finetune"] == {"finetune": {"epochs": 3, "seed": 0},
                                                                        "pretrain.checkpoint": "tiny"}
    assert lineage.locked_params(tmp_path / "missing.lock") == {}
    assert lineage.promoted_hash(LOCK, "models/promoted/") == "a" * 32 + ".dir"
    assert lineage.promoted_hash(LOCK, "models/other") is None


def test_validation_summary_names_failed_rules(repo):
    summary = lineage.validation_summary("reports/ingest/validation.json")
    assert summary["train"] == {"source": "data/raw/train.conll", "checked": 2, "passed": 2, "failed": []}
    assert summary["test"]["failed"] == ["bio_transition"] and summary["test"]["passed"] == 1
    assert lineage.validation_summary("missing.json") == {}


def _params() -> SimpleNamespace:
    return SimpleNamespace(paths=PathsConfig(train="data/raw/train.conll", dev="data/raw/dev.conll",
                                             test="data/raw/test.conll"))


def test_the_record_is_an_openlineage_run_event_with_every_fact(repo):
    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    record = lineage.build_lineage(_params(), variant="finetune_int8", scores={"test_score": 0.43, "dev_score": 0.55},
                                   gate=GATE, torch_source="models/finetune", now=now)
    assert {"eventType", "eventTime", "producer", "schemaURL", "run", "job", "inputs", "outputs"} <= set(record)
    assert record["eventTime"] == "2026-12-06T12:00:00+00:00" and uuid.UUID(record["run"]["runId"])
    assert record["job"] == {"namespace": "tinynlp", "name": "evaluate", "facets": {}}
    facets = record["run"]["facets"]
    assert all(f["_producer"] and f["_schemaURL"] for f in facets.values())
    assert facets["tinynlp_lineage"]["schema_version"] == lineage.SCHEMA_VERSION
    assert facets["tinynlp_code"]["description"].endswith(", clean")
    assert set(facets["tinynlp_params"]["stages"]) == {"ingest", "finetune"}
    assert facets["tinynlp_validation"]["splits"]["test"]["failed"] == ["bio_transition"]
    assert facets["tinynlp_gate"]["decision"] == GATE
    assert facets["tinynlp_gate"]["reason"] == (
        "the evaluate gate promoted finetune_int8, the best of 2 passing variant(s) (max_drop 0.02, objective "
        "latency); refused: distill (dev_score 0.40 is 0.10 below the reference)")
    inputs = {i["name"]: i["facets"] for i in record["inputs"]}
    assert set(inputs) == {"data/batches", "data/raw/dev.conll", "data/raw/test.conll", "data/raw/train.conll"}
    assert inputs["data/raw/train.conll"]["tinynlp_dvc"]["md5"] == "f" * 32
    assert inputs["data/raw/test.conll"]["dataQualityAssertions"]["assertions"] == [
        {"assertion": "token_not_empty", "success": True}, {"assertion": "bio_transition", "success": False}]
    assert "dataQualityAssertions" not in inputs["data/batches"]
    model = record["outputs"][0]["facets"]["tinynlp_model"]
    assert record["outputs"][0]["name"] == "models/promoted"
    assert model["variant"] == "finetune_int8" and model["torch_source"] == "models/finetune"
    assert model["data_version"] and model["scores"]["dev_score"] == 0.55
    json.dumps(record)  # plain JSON all the way down

    retrained = lineage.with_retraining(record, {"version": "v2.0.0", "parent": {"version": "v1.0.0"}, "batch": "b1",
                                                 "drift": {"reasons": ["embedding"]}, "decision": {"reasons": []}})
    assert "tinynlp_retraining" not in record["run"]["facets"], "the record passed in is left as it was"
    summary = lineage.summary(retrained)
    assert summary["retraining"]["parent"] == {"version": "v1.0.0"} and summary["variant"] == "finetune_int8"
    assert lineage.write_lineage(repo / "out", retrained) == repo / "out" / lineage.LINEAGE_FILE
    assert lineage.read_lineage(repo / "out") == retrained and lineage.read_lineage(repo / "none") is None


def _promote(repo: Path, version_tag: str | None, variant: str, legacy_tag: str | None = None) -> None:
    """A commit holding a promoted model's lineage record (and its dvc.lock hash), tagged."""
    from gto import api as gto

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    lock["stages"]["evaluate"]["outs"][0]["md5"] = uuid.uuid4().hex + ".dir"
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    record = lineage.build_lineage(_params(), variant=variant, scores={"test_score": 0.5, "dev_score": 0.6}, gate=GATE)
    lineage.write_lineage(repo / "reports/evaluate", record)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"promote {variant}")
    if legacy_tag:
        git(repo, "tag", "-a", legacy_tag, "-m", variant)
    if version_tag:
        gto.register(".", "tinynlp-model", "HEAD", version=version_tag, message=variant)
        gto.assign(".", "tinynlp-model", "prod", version=version_tag, message=variant)


def test_versions_from_gto_and_legacy_tags_in_one_numbering(repo):
    assert registry.versions("tinynlp-model", "model-v") == []
    assert registry.next_version([]) == "v1.0.0"
    _promote(repo, None, "finetune", legacy_tag="model-v1")
    _promote(repo, "v2.0.0", "finetune_int8")
    found = registry.versions("tinynlp-model", "model-v")
    assert [(v.version, v.tag, v.legacy, v.stages) for v in found] == [
        ("model-v1", "model-v1", True, ()), ("v2.0.0", "tinynlp-model@v2.0.0", False, ("prod",))]
    assert found[1].commit == git(repo, "rev-parse", "HEAD") and found[0].commit == git(repo, "rev-parse", "HEAD~1")
    assert registry.next_version(found) == "v3.0.0"
    assert registry.find(found, "v2") is found[1] and registry.find(found, "tinynlp-model@v2.0.0") is found[1]
    assert registry.find(found, "1") is found[0] and registry.find(found, "v9") is None
    assert registry.holding(found, "models/promoted", "HEAD") is found[1]
    assert registry.holding(found, "models/promoted", "HEAD~1") is found[0]


def test_the_lineage_command_prints_the_chain_and_one_version(repo, capsys):
    from cli.main import main

    (repo / "params.yaml").write_text(yaml.safe_dump({"paths": {"train": "data/raw/train.conll",
                                                                "dev": "data/raw/dev.conll",
                                                                "test": "data/raw/test.conll"}}))
    assert main(["lineage"]) == 2 and "run the pipeline first" in capsys.readouterr().err
    _promote(repo, None, "finetune", legacy_tag="model-v1")
    (repo / "reports/evaluate/lineage.json").unlink()  # a legacy version: its figures from scores.json
    (repo / "reports/evaluate/scores.json").write_text(json.dumps(
        {"promoted": "finetune", "variants": [{"name": "finetune", "test_score": 0.41, "dev_score": 0.52}]}))
    (repo / "reports/retrain").mkdir()
    (repo / "reports/retrain/decision.json").write_text(json.dumps(
        {"tag": "model-v1", "batch": "b1", "drift": ["embedding: p 0.001"], "reasons": ["old test f1: fine"],
         "data_version": "abc123"}))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "legacy reports")
    git(repo, "tag", "-f", "-a", "model-v1", "-m", "moved")
    _promote(repo, "v2.0.0", "finetune_int8")

    assert main(["lineage"]) == 0
    out = capsys.readouterr().out
    assert "tinynlp-model: 2 version(s)" in out
    assert "data abc123 -> model-v1 [legacy tag]" in out and "finetune: test 0.41, dev 0.52" in out
    assert "retrained on batch b1 (drift: embedding: p 0.001)" in out
    assert "-> v2.0.0 [#prod]" in out and "the evaluate gate promoted finetune_int8" in out

    assert main(["lineage", "v2", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["version"] == "v2.0.0" and entry["commit"] == git(repo, "rev-parse", "HEAD")
    assert entry["inputs"][0]["path"] == "data/batches" and entry["validation"]["test"]["failed"] == ["bio_transition"]
    assert main(["lineage", "v2"]) == 0
    assert "fetch:  dvc artifacts get . tinynlp-model --rev v2.0.0" in capsys.readouterr().out
    assert main(["lineage", "v7"]) == 2 and "registered: model-v1, v2.0.0" in capsys.readouterr().err


def test_without_registered_versions_the_workspace_lineage_is_shown(repo, capsys):
    from cli.main import main

    (repo / "params.yaml").write_text(yaml.safe_dump({"paths": {"train": "data/raw/train.conll",
                                                                "dev": "data/raw/dev.conll",
                                                                "test": "data/raw/test.conll"}}))
    record = lineage.build_lineage(_params(), variant="distill", scores={"test_score": 0.3}, gate=GATE)
    lineage.write_lineage(repo / "reports/evaluate", record)
    assert main(["lineage"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No version of tinynlp-model is registered yet")
    assert "workspace (unregistered)" in out and "distill: test 0.3" in out
