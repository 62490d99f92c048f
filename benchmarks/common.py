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


def params_for(workdir: Path, overrides: dict | None = None, base: Path = ROOT / "params.yaml") -> Params:
    """The repo's params with every output path moved under `workdir` and `overrides` merged in
    (nested dicts: {"finetune": {"epochs": 3}})."""
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
    os.chdir(ROOT)  # raw paths in params.yaml are relative to the repo
    try:
        return parse_params(raw)
    finally:
        os.chdir(cwd)


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = round(time.perf_counter() - start, 1)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
