"""The DAG as a Prefect flow: ingest -> augment, pretrain -> finetune -> prune -> distill -> quantize -> evaluate.
Each task is a thin shell over the
same stage function `dvc repro` runs; DVC decides whether a stage is up to date.

    python -m flows.pipeline [--force]

The flow always reads params.yaml in the working directory: it is the file dvc.yaml tracks, so
DVC and Prefect judge "changed" from the same values.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

import flows  # noqa: F401  (Prefect home and loggers, before prefect is imported)
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from flows import dvc_sync
from tasks import STAGE_ORDER, stage_function
from tasks.lock import WorkspaceBusyError, workspace_lock
from tinynlp.config import load_params
from tinynlp.errors import DataValidationError, ConfigError
from tinynlp.logs import configure_logging

log = logging.getLogger(__name__)


PARAMS_FILE = "params.yaml"


def _run_stage(stage: str, force: bool = False):
    """Run one stage unless DVC says it is up to date; then record it in dvc.lock."""
    changes = {} if force else dvc_sync.stage_changes(stage)
    if not force and not changes:
        log.info("%s: up to date in dvc.lock, not run", stage)
        return Completed(name="Cached", message="up to date in dvc.lock", data=dvc_sync.stage_metrics(stage))
    log.info("%s: running (changed: %s)", stage, changes or "forced")
    metrics = stage_function(stage)(load_params(PARAMS_FILE))
    dvc_sync.commit_stage(stage)
    return metrics


def _value(returned):
    """A task that was skipped returns its Cached state; one that ran returns its metrics."""
    return returned.result() if isinstance(returned, State) else returned


def _no_retry_on_bad_input(task, task_run, state) -> bool:
    """Retries are for transient failures; bad config or data fail the same way every time."""
    try:
        state.result()
    except (DataValidationError, ConfigError, WorkspaceBusyError):
        return False
    except Exception:
        return True
    return False


def _stage_task(stage: str):
    def run(force: bool = False):
        return _run_stage(stage, force)

    run.__name__ = run.__qualname__ = stage
    return task(run, name=stage, task_run_name=stage, cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
                retry_condition_fn=_no_retry_on_bad_input)


stage_tasks = {stage: _stage_task(stage) for stage in STAGE_ORDER}


@flow(name="pipeline", log_prints=True)
def pipeline(force: bool = False) -> dict:
    load_params(PARAMS_FILE)  # reject bad params before any stage starts
    with workspace_lock():
        ingest = stage_tasks["ingest"](force)
        augment = stage_tasks["augment"](force, wait_for=[ingest])
        pretrain = stage_tasks["pretrain"](force, wait_for=[ingest])
        finetune = stage_tasks["finetune"](force, wait_for=[augment, pretrain])
        prune = stage_tasks["prune"](force, wait_for=[finetune])
        distill = stage_tasks["distill"](force, wait_for=[finetune])
        quantize = stage_tasks["quantize"](force, wait_for=[prune, distill])
        metrics = _value(stage_tasks["evaluate"](force, wait_for=[quantize]))
    reports = Path(load_params(PARAMS_FILE).paths.reports)
    create_markdown_artifact(markdown=(reports / "augment" / "report.md").read_text(encoding="utf-8"),
                             key="augment-report", description="rows each augmentation method added, with examples")
    table = (reports / "evaluate" / "metrics.md").read_text(encoding="utf-8")
    create_markdown_artifact(markdown=f"# Evaluation\n\n{table}\n", key="evaluate-metrics",
                             description="every variant's quality, latency and size, the gate's decision, and "
                                         "the fine-tuned model's scores in detail")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="run every stage even if up to date")
    args = parser.parse_args(argv)
    return run_from_cli(lambda: pipeline(args.force, return_state=True))


def run_from_cli(start: Callable[[], State]) -> int:
    """A flow started from a command: params checked first (exit 2), then its final state's exit code."""
    configure_logging()
    try:
        load_params(PARAMS_FILE)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return exit_code(start())


def exit_code(state: State) -> int:
    """What a finished flow run means to a script: 0 ok, 3 invalid data, 4 workspace busy, 1 other."""
    if state.is_completed():
        return 0
    try:
        state.result()
    except DataValidationError:
        return 3
    except WorkspaceBusyError:
        return 4
    except Exception:
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
