"""Pipeline stages: one `run_<stage>(params) -> metrics` function per step. Each reads its declared
inputs, calls the core (`tinynlp`), writes its declared outputs atomically and returns small
metrics. Both shells, the DVC command (`python -m tasks <stage>`) and the Prefect task
(`flows.pipeline`), call these functions and nothing else."""
from __future__ import annotations

from typing import Callable

STAGE_ORDER = ("ingest", "pretrain", "finetune", "evaluate")


def stage_function(name: str) -> Callable:
    """The stage function by name, imported on demand (so `--help` stays fast)."""
    if name == "ingest":
        from tasks.ingest import run_ingest
        return run_ingest
    if name == "pretrain":
        from tasks.pretrain import run_pretrain
        return run_pretrain
    if name == "finetune":
        from tasks.finetune import run_finetune
        return run_finetune
    if name == "evaluate":
        from tasks.evaluate import run_evaluate
        return run_evaluate
    raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_ORDER)}")
