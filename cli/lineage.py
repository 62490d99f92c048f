"""`tinynlp lineage [VERSION]`: the chain data versions -> model versions, read from git alone: for
each registered version (GTO tags, and legacy plain tags), its revision, date, data version,
variant, scores and why it was promoted, from the git-tracked reports/evaluate/lineage.json and
reports/retrain/decision.json at that revision."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tinynlp import lineage, registry
from tinynlp.config import load_params
from tinynlp.errors import EXIT_CONFIG, EXIT_OK, ConfigError, exit_code

REPORTED = (("lineage", ("evaluate", lineage.LINEAGE_FILE)), ("decision", ("retrain", lineage.DECISION_FILE)),
            ("scores", ("evaluate", "scores.json")))   # scores.json: the legacy versions' figures


def _json(text: str | None) -> dict | None:
    return json.loads(text) if text else None


def _retrained_because(batch: str, drift: list[str], reasons: list[str]) -> str:
    deciding = [r for r in drift if not r.startswith("(reported only)")]  # the rest is in the drift report
    return (f"retrained on batch {batch} (drift: {'; '.join(deciding) or 'none'}); "
            f"champion against challenger: {'; '.join(reasons)}")


def describe(version: registry.ModelVersion | None, files: dict[str, dict | None]) -> dict:
    """One version's facts from its reports: the lineage record when it has one, else (a legacy
    version) the evaluate stage's scores.json and the retraining decision."""
    record, decision, scores = files.get("lineage"), files.get("decision"), files.get("scores")
    if decision and version and decision.get("tag") != version.tag:
        decision = None  # a decision left over from an earlier retraining at this revision
    facts = lineage.summary(record) if record else {"variant": None, "scores": {}, "retraining": None}
    if not record and scores:
        facts["variant"] = scores.get("promoted")
        row = next((r for r in scores.get("variants", []) if r.get("name") == facts["variant"]), {})
        facts["scores"] = {k: row[k] for k in ("test_score", "dev_score") if k in row}
    why = [facts["gate"]] if facts.get("gate") else []
    retraining = facts.get("retraining")
    if retraining:
        why.append(_retrained_because(retraining["batch"], retraining["drift"]["reasons"],
                                      retraining["decision"]["reasons"]))
    elif decision:
        facts["variant"] = facts["variant"] or decision.get("challenger_variant")
        facts["data_version"] = facts.get("data_version") or decision.get("data_version")
        why.append(_retrained_because(decision["batch"], decision.get("drift") or [], decision.get("reasons") or []))
    parent = ((retraining or {}).get("parent") or {}).get("version") or (decision or {}).get("parent")
    return {**facts, "version": version.version if version else None, "tag": version.tag if version else None,
            "legacy": version.legacy if version else False, "stages": list(version.stages) if version else [],
            "commit": version.commit if version else facts.get("code_commit"),
            "date": version.created if version else facts.get("created"), "parent": parent, "why": why}


def version_facts(version: registry.ModelVersion, reports: Path) -> dict:
    files = {key: _json(registry.show_file(version.commit, reports.joinpath(*parts))) for key, parts in REPORTED}
    return describe(version, files)


def _scores(entry: dict) -> str:
    scores = entry.get("scores") or {}
    shown = ", ".join(f"{split} {scores[f'{split}_score']}" for split in ("test", "dev") if f"{split}_score" in scores)
    return f"{entry.get('variant') or 'unknown variant'}" + (f": {shown}" if shown else "")


def _head(entry: dict) -> str:
    name = entry["version"] or "workspace (unregistered)"
    marks = [*(f"#{s}" for s in entry["stages"]), *(["legacy tag"] if entry["legacy"] else [])]
    data = entry.get("data_version") or "unknown"
    when = (entry.get("date") or "")[:10]
    commit = (entry.get("commit") or "")[:7]
    parent = f", parent {entry['parent']}" if entry.get("parent") else ""
    return (f"data {data} -> {name}" + (f" [{', '.join(marks)}]" if marks else "")
            + f"  {when}  commit {commit or '-'}{parent}")


def chain(entries: list[dict]) -> str:
    lines = []
    for entry in entries:
        lines += [_head(entry), f"    {_scores(entry)}", *(f"    why: {w}" for w in entry["why"] or ["not recorded"])]
    return "\n".join(lines)


def detail(entry: dict, model_name: str) -> str:
    lines = [_head(entry), f"  model:  {_scores(entry)}" + (f" (from {entry['torch_source']})"
                                                            if entry.get("torch_source") else ""),
             f"  code:   {entry.get('code') or 'not recorded'}"]
    lines += [f"  why:    {w}" for w in entry["why"] or ["not recorded"]]
    for item in entry.get("inputs") or []:
        lines.append(f"  input:  {item['path']}  md5 {item.get('md5', '?')}")
    for split, result in (entry.get("validation") or {}).items():
        failed = f", failed {', '.join(result['failed'])}" if result["failed"] else ""
        lines.append(f"  rules:  {split}: {result['passed']}/{result['checked']} Great Expectations rules passed{failed}")
    for stage, sections in (entry.get("params") or {}).items():
        lines.append(f"  params: {stage}: " + ", ".join(f"{k} {h[:12]}" for k, h in sections.items()))
    retraining = entry.get("retraining") or {}
    if retraining.get("drift"):
        lines.append(f"  drift:  {retraining['drift']['report']} (sha256 {retraining['drift']['sha256'][:12]})")
    if entry["version"] and not entry["legacy"]:
        lines.append(f"  fetch:  dvc artifacts get . {model_name} --rev {entry['version']}")
    elif entry["legacy"]:
        lines.append(f"  fetch:  git checkout {entry['tag']} && dvc checkout")
    return "\n".join(lines)


def main(args) -> int:
    try:
        params = load_params(args.params, check_files=False)
    except ConfigError as exc:
        print(f"tinynlp lineage: {exc}", file=sys.stderr)
        return exit_code(exc)
    name, reports = params.retrain.model_name, Path(params.paths.reports)
    found = registry.versions(name, params.retrain.tag_prefix)
    if not found:
        record = lineage.read_lineage(reports / "evaluate")
        if record is None:
            print(f"tinynlp lineage: no version of {name} is registered and {reports / 'evaluate'} has no "
                  f"{lineage.LINEAGE_FILE}: run the pipeline first (dvc repro)", file=sys.stderr)
            return EXIT_CONFIG
        entry = describe(None, {"lineage": record})
        print(json.dumps(entry, indent=2) if args.json else
              f"No version of {name} is registered yet (the retraining flow registers one on each promotion).\n"
              f"The workspace's lineage ({reports / 'evaluate' / lineage.LINEAGE_FILE}):\n\n{detail(entry, name)}")
        return EXIT_OK
    if args.version:
        version = registry.find(found, args.version)
        if version is None:
            print(f"tinynlp lineage: no version {args.version!r} of {name}; registered: "
                  f"{', '.join(v.version for v in found)}", file=sys.stderr)
            return EXIT_CONFIG
        entry = version_facts(version, reports)
        print(json.dumps(entry, indent=2) if args.json else detail(entry, name))
        return EXIT_OK
    entries = [version_facts(v, reports) for v in found]
    print(json.dumps(entries, indent=2) if args.json else
          f"{name}: {len(entries)} version(s), oldest first (data version -> model version)\n\n{chain(entries)}")
    return EXIT_OK
