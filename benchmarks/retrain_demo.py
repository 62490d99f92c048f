"""Drift and retraining on real data, end to end: train on WNUT-17 train (tweets), then feed the
Reddit and StackExchange test sentences as a new batch. The retraining flow validates it, tests it
for drift, adds it as a new data version, retrains through the DAG and compares champion and
challenger on the old test set (the Twitter test sentences) and on the batch's held-out part.

    python benchmarks/retrain_demo.py [--set finetune.epochs=3] [--keep DIR]

Runs in a scratch git + DVC workspace made from this repo's tracked files (the repo itself is not
touched). The compression stages are off to keep it short (about 15 min on 2 cores); the test
split is the Twitter part of WNUT-17 test, because the other parts become training data.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

SOURCES = ROOT / "data/wnut17/by_source"
DEMO = {"paths": {"test": "data/wnut17/by_source/test_twitter.conll"},
        "quantize": {"sources": ["finetune"], "inc_sources": [], "methods": ["ort_dynamic"]},
        "distill": {"enabled": False}}


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def scratch_workspace(target: Path, overrides: dict) -> Path:
    """This repo's tracked files (uncommitted edits included) in a fresh git + DVC repo."""
    for name in sh(["git", "ls-files"], ROOT).splitlines():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["prune"]["unstructured"]["enabled"] = params["prune"]["structured"]["enabled"] = False
    for section, values in overrides.items():
        for key, value in values.items():
            params[section][key] = value
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "demo@example.com"],
                ["git", "config", "user.name", "demo"]):
        sh(cmd, target)
    shutil.rmtree(target / ".dvc" / "cache", ignore_errors=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], help="override, e.g. finetune.epochs=1")
    parser.add_argument("--keep", help="keep the workspace in this directory (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/retrain_demo.json"))
    args = parser.parse_args()
    overrides = {k: dict(v) for k, v in DEMO.items()}
    for section, values in parse_sets(args.set).items():
        overrides.setdefault(section, {}).update(values)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="retrain-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    workspace = scratch_workspace(root, overrides)
    times = {}
    start = time.perf_counter()
    sh([sys.executable, "-m", "dvc", "repro"], workspace)
    times["champion_dag_s"] = round(time.perf_counter() - start, 1)
    sh(["git", "add", "-A"], workspace)
    sh(["git", "commit", "-qm", "champion: WNUT-17 train (tweets)"], workspace)
    for name in ("test_reddit.conll", "test_stackexchange.conll"):
        shutil.copy(SOURCES / name, workspace / "data/incoming" / name)
    start = time.perf_counter()
    sh([sys.executable, "-m", "flows.retrain"], workspace)
    times["retrain_flow_s"] = round(time.perf_counter() - start, 1)
    decision = json.loads((workspace / "reports/retrain/decision.json").read_text())
    drift = json.loads((workspace / "reports/drift/report.json").read_text())
    metric = decision["metric"]
    rows = [{"model": role, f"old test (Twitter) {metric}": decision[role]["old"],
             f"new held-out (Reddit + StackExchange) {metric}": decision[role]["new"]}
            for role in ("champion", "challenger")]
    signals = [{"signal": s["name"], "statistic": s["statistic"], "p_value": s["p_value"], "flagged": s["drifted"]}
               for s in drift["verdict"]["signals"]]
    write_json(Path(args.out), {"overrides": overrides, "decision": decision, "drift": drift["verdict"], **times})
    print(markdown_table(signals, list(signals[0])))
    print(markdown_table(rows, list(rows[0])))
    print(f"decision: {'promoted ' + decision.get('tag', '') if decision['promote'] else 'rejected'}; "
          + "; ".join(decision["reasons"]))
    print(f"champion DAG {times['champion_dag_s']} s, retraining flow {times['retrain_flow_s']} s; workspace {workspace}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
