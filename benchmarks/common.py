"""Shared set-up for benchmarks: a scratch workspace whose params are the repo's params.yaml with
overrides, the validated data prepared once by the real ingest stage, and wall-clock timing."""
from __future__ import annotations

import copy
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from tinynlp.config import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def params_for(workdir: Path, overrides: dict | None = None, base: Path = ROOT / "params.yaml",
               workspace: Path = ROOT) -> Params:
    """The params of `base` (the repo's params.yaml by default) with every output path moved under
    `workdir` and `overrides` merged in (nested dicts: {"finetune": {"epochs": 3}}). Relative
    input paths in it are read from `workspace` (the repo: profiles in examples/params/ are written
    for it)."""
    raw = yaml.safe_load(base.read_text())
    for key in ("ingested", "augmented", "tokenizer", "pretrained", "model", "pruned", "distilled", "quantized",
                "promoted", "checkpoints", "reports"):
        raw["paths"][key] = str(workdir / raw["paths"][key])
    raw["paths"]["allow_outside"] = [*raw["paths"].get("allow_outside", []), str(workdir)]
    if raw["paths"]["corpus"] == "data/ingest":
        raw["paths"]["corpus"] = raw["paths"]["ingested"]
    for section, values in (overrides or {}).items():
        merged = copy.deepcopy(raw.get(section, {}))
        merged.update(values)
        raw[section] = merged
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        return parse_params(raw)
    finally:
        os.chdir(cwd)


def base_params(parser_args, default: Path) -> dict:
    """`base` and `workspace` for params_for from a script's `--params`: a user's own params file
    reads its relative paths from its own folder; the default and the repo's profiles read them
    from the repo."""
    if parser_args.params is None:
        return {"base": default, "workspace": ROOT}
    folder = parser_args.params.resolve().parent
    # the profiles in examples/params/ are written for the repo (copied over params.yaml)
    return {"base": parser_args.params, "workspace": ROOT if folder == ROOT / "examples/params" else folder}


def prepare_data(params: Params) -> dict:
    """The validated splits and the training split that finetune reads (the augment stage's output,
    a byte copy of the validated split when augmentation is off), made by the real stages."""
    from tasks.augment import run_augment
    from tasks.ingest import run_ingest

    ingested = run_ingest(params)
    run_augment(params)
    return ingested


def ensure_venv(venv: Path, requirements: list[str], probe_module: str) -> Path:
    """The python of a benchmark-only virtualenv (a tool whose pins clash with ours); built with
    `python -m venv` + pip unless it already imports `probe_module`."""
    import subprocess
    import sys

    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", f"import {probe_module}"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"building {venv}: pip install {' '.join(requirements)}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *requirements], check=True)
    return python


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = round(time.perf_counter() - start, 1)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
