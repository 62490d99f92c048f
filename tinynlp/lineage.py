"""Lineage records: what a promoted model was made from (commit, raw inputs and params as dvc.lock
records them, the Great Expectations results) and why it was promoted, as an OpenLineage run event
written beside the model card. The schema is in docs/lineage.md. No DVC here: dvc.lock is plain YAML."""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

from tinynlp.atomic import atomic_write_json

SCHEMA_VERSION = 1
LINEAGE_FILE = "lineage.json"
DECISION_FILE = "decision.json"   # reports/retrain/: champion against challenger (flows/retrain.py)
LOCK_FILE = "dvc.lock"
INGEST_STAGE = "ingest"        # the stage whose deps are the raw inputs (tasks/stages.py)
PROMOTING_STAGE = "evaluate"   # the stage that writes the record: its own dvc.lock entry is written after it returns
NAMESPACE = "tinynlp"          # OpenLineage namespace of the job and of the datasets (paths relative to the workspace)
OPENLINEAGE_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
QUALITY_FACET_SCHEMA = ("https://openlineage.io/spec/facets/1-0-1/DataQualityAssertionsDatasetFacet.json"
                        "#/$defs/DataQualityAssertionsDatasetFacet")
PRODUCER = "urn:tinynlp-pipeline"
MAX_NAMED = 5                  # dirty files named in words before "+N more"


def _facet(name: str, body: dict) -> dict:
    """A custom OpenLineage facet: the body with the producer and a schema URL naming this schema."""
    return {"_producer": PRODUCER, "_schemaURL": f"urn:tinynlp:lineage:{SCHEMA_VERSION}#/{name}", **body}


def _git(root: str | Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except OSError:  # no git on this machine
        return None


def _changed_paths(porcelain: str) -> list[str]:
    """Paths from `git status --porcelain=v1 -z`: a rename or copy is followed by its old path."""
    entries, paths = porcelain.split("\0"), []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC" or entry[1] in "RC":
            index += 1  # the old path: not a change of its own
    return paths


def _under(path: str, folders: Sequence[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def code_state(ignore: Sequence[str] = (), root: str | Path = ".") -> dict:
    """The commit a run started from and the tracked files it differs from that commit in, less
    dvc.lock and `ignore` (folders or files relative to `root`, e.g. the reports folder): what a
    run itself rewrites is not a change to the code it ran."""
    prefix = _git(root, "rev-parse", "--show-prefix")
    if prefix is None or prefix.returncode != 0:
        return {"commit": None, "dirty": [], "repository": False}
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=no")
    top = (_git(root, "rev-parse", "--show-toplevel").stdout or "").strip()
    skipped = []
    for item in ignore:
        path = Path(item)
        relative = os.path.relpath(path, top) if path.is_absolute() else prefix.stdout.strip() + str(item)
        skipped.append(posixpath.normpath(Path(relative).as_posix()))
    dirty = [p for p in _changed_paths(status.stdout if status and status.returncode == 0 else "")
             if posixpath.basename(p) != LOCK_FILE and not _under(p, skipped)]
    return {"commit": (head.stdout.strip() or None) if head else None, "dirty": sorted(dirty), "repository": True}


def describe_code(state: dict) -> str:
    """The code state in words: "commit abc1234, clean", or the uncommitted changes named."""
    if not state.get("repository", state.get("commit") is not None):
        return "not a git repository"
    commit = f"commit {state['commit'][:7]}" if state.get("commit") else "no commit yet"
    dirty = state.get("dirty") or []
    if not dirty:
        return f"{commit}, clean"
    named = ", ".join(dirty[:MAX_NAMED]) + (f" (+{len(dirty) - MAX_NAMED} more)" if len(dirty) > MAX_NAMED else "")
    return f"{commit} with uncommitted changes to {named}"


def read_lock(lock_file: str | Path = LOCK_FILE) -> dict:
    """dvc.lock as YAML; an empty lock when there is none (nothing has run yet)."""
    path = Path(lock_file)
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def locked_params(lock_file: str | Path = LOCK_FILE) -> dict[str, dict[str, Any]]:
    """For each stage, the params values DVC recorded when it last ran: {stage: {section or key: value}}."""
    stages = read_lock(lock_file).get("stages") or {}
    return {name: {key: value for values in (entry.get("params") or {}).values() for key, value in values.items()}
            for name, entry in stages.items()}


def params_hash(value: Any) -> str:
    """sha256 of the value as canonical JSON (sorted keys, no spaces): equal params, equal hash."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def params_hashes(lock: dict, skip: Sequence[str] = (PROMOTING_STAGE,)) -> dict[str, dict[str, str]]:
    """The hash of every params section (or key) each stage recorded in dvc.lock, by stage."""
    stages = lock.get("stages") or {}
    return {name: {key: params_hash(value) for values in (entry.get("params") or {}).values()
                   for key, value in sorted(values.items())}
            for name, entry in stages.items() if name not in skip}


def raw_inputs(lock: dict, raw_paths: Sequence[str]) -> list[dict]:
    """The ingest stage's data deps (the raw splits and the batches folder) with the hashes DVC
    recorded for them; code deps are left out."""
    wanted = {posixpath.normpath(Path(p).as_posix()) for p in raw_paths}
    deps = ((lock.get("stages") or {}).get(INGEST_STAGE) or {}).get("deps") or []
    return [dict(dep) for dep in deps if posixpath.normpath(dep["path"]) in wanted]


def promoted_hash(lock: dict, promoted: str) -> str | None:
    """The hash dvc.lock records for the promoted model folder (None: never recorded)."""
    target = posixpath.normpath(Path(promoted).as_posix())
    for entry in (lock.get("stages") or {}).values():
        for out in entry.get("outs") or []:
            if posixpath.normpath(out["path"]) == target:
                return out.get("md5") or out.get("etag") or out.get("checksum")
    return None


def validation_summary(validation_file: str | Path) -> dict[str, dict]:
    """Per split, the Great Expectations rules checked, passed and the names of those that failed."""
    path = Path(validation_file)
    if not path.is_file():
        return {}
    splits = json.loads(path.read_text(encoding="utf-8")).get("validation") or {}
    summary = {}
    for split, result in splits.items():
        rules = result.get("rules") or {}
        failed = sorted(name for name, rule in rules.items() if not rule.get("success"))
        summary[split] = {"source": result.get("source"), "checked": len(rules), "passed": len(rules) - len(failed),
                          "failed": failed}
    return summary


def _input_dataset(dep: dict, validation: dict[str, dict], assertions: dict[str, list[dict]]) -> dict:
    facets = {"tinynlp_dvc": _facet("tinynlp_dvc", {k: v for k, v in dep.items() if k != "path"})}
    splits = [split for split, result in validation.items()
              if result.get("source") and posixpath.normpath(result["source"]) == posixpath.normpath(dep["path"])]
    if splits:  # OpenLineage's own facet for data-quality results, so lineage tools show them
        facets["dataQualityAssertions"] = {"_producer": PRODUCER, "_schemaURL": QUALITY_FACET_SCHEMA,
                                           "assertions": [a for s in splits for a in assertions[s]]}
    return {"namespace": NAMESPACE, "name": dep["path"], "facets": facets}


def _assertions(validation_file: Path) -> dict[str, list[dict]]:
    if not validation_file.is_file():
        return {}
    splits = json.loads(validation_file.read_text(encoding="utf-8")).get("validation") or {}
    return {split: [{"assertion": name, "success": bool(rule.get("success"))}
                    for name, rule in (result.get("rules") or {}).items()] for split, result in splits.items()}


def promotion_reason(gate: dict) -> str:
    """The evaluate gate's decision in one sentence: the pick, the rule and what was refused."""
    chosen = gate.get("chosen")
    decisions = gate.get("decisions") or []
    budget = gate.get("budget") or {}
    passing = [d["name"] for d in decisions if d.get("passed")]
    refused = [f"{d['name']} ({'; '.join(d.get('reasons') or [])})" for d in decisions if not d.get("passed")]
    rule = ", ".join(f"{key} {value}" for key, value in budget.items() if value not in (0, 0.0, None, ""))
    text = f"the evaluate gate promoted {chosen}" if chosen else "the evaluate gate promoted nothing"
    text += f", the best of {len(passing)} passing variant(s)" if chosen and decisions else ""
    text += f" ({rule})" if rule else ""
    return text + (f"; refused: {', '.join(refused)}" if refused else "")


def build_lineage(params, *, variant: str, scores: dict, gate: dict, torch_source: str = "",
                  lock_file: str | Path = LOCK_FILE, now: datetime | None = None) -> dict:
    """The lineage record of a promotion by the evaluate stage, an OpenLineage RunEvent. Reads only
    `params.paths` (so a stage's params view is enough), dvc.lock and the ingest validation report.
    The promoting stage's own dvc.lock entry is left out: DVC writes it after the stage returns."""
    from tinynlp.fingerprints import validated_data_version  # pandas: only when a record is built

    paths = params.paths
    lock = read_lock(lock_file)
    state = code_state(ignore=[paths.reports])
    validation_file = Path(paths.reports) / INGEST_STAGE / "validation.json"
    validation = validation_summary(validation_file)
    assertions = _assertions(validation_file)
    raw = [*paths.raw_splits().values(), paths.batches]
    data_version = validated_data_version(paths.ingested) if Path(paths.ingested).is_dir() else None
    model = {"path": paths.promoted, "variant": variant, "torch_source": torch_source, "scores": scores,
             "data_version": data_version}
    return {
        "eventType": "COMPLETE",
        "eventTime": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "producer": PRODUCER,
        "schemaURL": OPENLINEAGE_SCHEMA,
        "run": {"runId": str(uuid.uuid4()), "facets": {
            "tinynlp_lineage": _facet("tinynlp_lineage", {"schema_version": SCHEMA_VERSION, "docs": "docs/lineage.md"}),
            "tinynlp_code": _facet("tinynlp_code", {**state, "description": describe_code(state)}),
            "tinynlp_params": _facet("tinynlp_params", {"source": str(lock_file), "hash": "sha256 of canonical JSON",
                                                        "stages": params_hashes(lock)}),
            "tinynlp_validation": _facet("tinynlp_validation", {"splits": validation}),
            "tinynlp_gate": _facet("tinynlp_gate", {"decision": gate, "reason": promotion_reason(gate)}),
        }},
        "job": {"namespace": NAMESPACE, "name": PROMOTING_STAGE, "facets": {}},
        "inputs": [_input_dataset(dep, validation, assertions) for dep in raw_inputs(lock, raw)],
        "outputs": [{"namespace": NAMESPACE, "name": paths.promoted,
                     "facets": {"tinynlp_model": _facet("tinynlp_model", model)}}],
    }


def with_retraining(record: dict, block: dict) -> dict:
    """The record of a retrained model with the retraining facet: its version, its parent, the
    drift report that triggered it and the champion/challenger decision (docs/lineage.md)."""
    facets = {**record["run"]["facets"], "tinynlp_retraining": _facet("tinynlp_retraining", block)}
    return {**record, "run": {**record["run"], "facets": facets}}


def write_lineage(directory: str | Path, record: dict) -> Path:
    path = Path(directory) / LINEAGE_FILE
    atomic_write_json(path, record)
    return path


def read_lineage(directory: str | Path) -> dict | None:
    path = Path(directory) / LINEAGE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def summary(record: dict) -> dict:
    """The facts a reader wants from a record, flat: model, scores, data, code, why promoted."""
    facets = record.get("run", {}).get("facets", {})
    model = next((o["facets"].get("tinynlp_model", {}) for o in record.get("outputs", [])), {})
    code = facets.get("tinynlp_code", {})
    return {"created": record.get("eventTime"), "variant": model.get("variant"), "scores": model.get("scores") or {},
            "torch_source": model.get("torch_source"), "data_version": model.get("data_version"),
            "code": code.get("description"), "code_commit": code.get("commit"),
            "gate": facets.get("tinynlp_gate", {}).get("reason"),
            "inputs": [{"path": i["name"], **{k: v for k, v in i["facets"].get("tinynlp_dvc", {}).items()
                                               if not k.startswith("_")}} for i in record.get("inputs", [])],
            "validation": facets.get("tinynlp_validation", {}).get("splits", {}),
            "params": facets.get("tinynlp_params", {}).get("stages", {}),
            "retraining": {k: v for k, v in facets.get("tinynlp_retraining", {}).items() if not k.startswith("_")}
            or None}
