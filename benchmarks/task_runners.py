"""The Prefect flow on each task runner, side by side: wall time of the stages after `finetune`
(prune and distill are independent and may run at once; quantize and evaluate follow), in one
scratch git + DVC workspace holding this project's DAG and the WNUT-17 data.

    python benchmarks/task_runners.py [--runners sequential,threads,dask] [--set prune.epochs=1]

Each runner gets the same work: a fresh `prune.seed` and `distill.seed` make exactly those two
stages and their descendants out of date. Compression stages train on `--rows` examples so a
round takes minutes.
"""
from __future__ import annotations

import argparse
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


def workspace(path: Path, overrides: dict) -> Path:
    """A clone-like git + DVC repo: the DAG, the code, the shipped data and params with overrides."""
    for item in ("dvc.yaml", "tasks", "tinynlp", "flows", "data/wnut17", "data/batches"):
        source, target = ROOT / item, path / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                    [sys.executable, "-m", "dvc", "config", "core.analytics", "false"]):
        subprocess.run(command, cwd=path, check=True)
    return path


def set_params(path: Path, **sections) -> None:
    params = yaml.safe_load((path / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_flow(path: Path, runner: str) -> float:
    env = {**os.environ, "PREFECT_HOME": str(path / ".prefect"), "PYTHONPATH": str(path)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.pipeline", "--task-runner", runner], cwd=path, env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runners", default="sequential,threads,dask")
    parser.add_argument("--rows", type=int, default=600, help="training rows of finetune, prune and distill")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. prune.epochs=1")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/task_runners.json"))
    args = parser.parse_args()
    overrides = {"finetune": {"max_train_samples": args.rows, "epochs": 1},
                 "prune": {"max_train_samples": args.rows, "epochs": 1},
                 "distill": {"max_train_samples": args.rows, "epochs": 2},
                 "quantize": {"inc_sources": []}, "evaluate": {"latency_samples": 50, "timing_rounds": 2}}
    for section, values in parse_sets(args.set).items():
        overrides.setdefault(section, {}).update(values)
    rows = []
    with tempfile.TemporaryDirectory(prefix="task-runners-") as scratch:
        path = workspace(Path(scratch), overrides)
        run_flow(path, "sequential")  # ingest .. evaluate once; every runner starts from here
        for round_number, runner in enumerate(args.runners.split(","), start=1):
            set_params(path, prune={"seed": 1000 + round_number}, distill={"seed": 1000 + round_number})
            seconds = run_flow(path, runner)
            rows.append({"runner": runner, "seconds": round(seconds, 1)})
    base = next((r["seconds"] for r in rows if r["runner"] == "sequential"), None)
    for row in rows:
        row["speedup_vs_sequential"] = round(base / row["seconds"], 2) if base else None
    print(markdown_table(rows, list(rows[0])))
    write_json(Path(args.out), {"cores": os.cpu_count(), "overrides": overrides, "rows": rows})


if __name__ == "__main__":
    main()
