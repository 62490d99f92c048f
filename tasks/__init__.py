"""Pipeline stages: one `run_<stage>(params) -> metrics` function per step. Each reads its declared
inputs, calls the core (`tinynlp`), writes its declared outputs atomically and returns small
metrics. Both shells, the DVC command (`python -m tasks <stage>`) and the Prefect task
(`flows.pipeline`), call these functions and nothing else."""
from __future__ import annotations

import importlib
from typing import Callable

STAGE_ORDER = ("ingest", "augment", "pretrain", "finetune", "prune", "distill", "quantize", "evaluate")


def stage_function(name: str) -> Callable:
    """`tasks.<name>.run_<name>`, imported on demand (so `--help` stays fast)."""
    if name not in STAGE_ORDER:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_ORDER)}")
    return getattr(importlib.import_module(f"tasks.{name}"), f"run_{name}")
