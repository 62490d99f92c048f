"""The DAG as a Prefect flow. Its tasks and their dependencies come from the stage table
(tasks/stages.py), the one `dvc.yaml` is generated from: ingest -> augment, pretrain -> finetune ->
prune, distill -> quantize -> evaluate. Each task is a thin shell over the same stage function
`dvc repro` runs; DVC decides whether a stage is up to date.

    python -m flows.pipeline [--force]

The flow always reads params.yaml in the working directory: it is the file dvc.yaml tracks, so
DVC and Prefect judge "changed" from the same values.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

import flows  # noqa: F401  (Prefect home and loggers, before prefect is imported)
from prefect import flow, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows import artifacts, dvc_sync
from tasks.stages import STAGE_ORDER, run_stage, upstream
from tinynlp.config import ExecutionConfig, Params, load_params
from tinynlp.errors import ConfigError, DataValidationError, WorkspaceBusyError, exit_code
from tinynlp.fingerprints import digest
from tinynlp.logs import configure_logging
from tinynlp.workspace import workspace_lock

log = logging.getLogger(__name__)


PARAMS_FILE = "params.yaml"


def _run_stage(stage: str, force: bool = False):
    """Run one stage unless DVC says it is up to date; then record it in dvc.lock."""
    changes = {} if force else dvc_sync.stage_changes(stage)
    if not force and not changes:
        log.info("%s: up to date in dvc.lock, not run", stage)
        return Completed(name="Cached", message="up to date in dvc.lock", data=dvc_sync.stage_metrics(stage))
    log.info("%s: running (changed: %s)", stage, changes or "forced")
    with artifacts.progress_artifact(stage):
        metrics = run_stage(stage, load_params(PARAMS_FILE))
    dvc_sync.commit_stage(stage)
    return metrics


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


def task_runner(cfg: ExecutionConfig):
    """The Prefect task runner `execution.task_runner` names. 'sequential' is a one-thread pool:
    the same code path as the concurrent runners, one stage at a time."""
    if cfg.task_runner in ("sequential", "threads"):
        return ThreadPoolTaskRunner(max_workers=1 if cfg.task_runner == "sequential" else cfg.max_workers)
    try:
        if cfg.task_runner == "dask":
            from prefect_dask import DaskTaskRunner

            if cfg.address:
                return DaskTaskRunner(address=cfg.address)
            # one single-threaded worker process per stage: torch sets its own threads inside
            return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.max_workers, "threads_per_worker": 1,
                                                  "processes": True, "dashboard_address": None})
        from prefect_ray import RayTaskRunner

        return RayTaskRunner(address=cfg.address or None)
    except ImportError as exc:
        raise ConfigError(f"execution.task_runner: {cfg.task_runner} needs the package "
                          f"prefect-{cfg.task_runner} ({exc}); pip install prefect-{cfg.task_runner}") from None


def configured(params: Params):
    """The pipeline flow on the task runner that params name."""
    return pipeline.with_options(task_runner=task_runner(params.execution))


def data_version(params: Params) -> str:
    """The raw splits and accepted batches as they are now (what ingest reads)."""
    locations = [*params.paths.raw_splits().values(), params.paths.batches]
    return digest(locations, texts=locations, length=8)


def run_tags(params: Params) -> list[str]:
    """Flow run tags: the task, the dataset (its folder or `datasets` name), the data version and
    the checkpoint the models start from."""
    train = params.paths.train
    dataset = train[5:].split("#")[0] if train.startswith("hf://") else (
        Path(train).name if Path(train).is_dir() else Path(train).parent.name or Path(train).stem)
    checkpoint = params.pretrain.checkpoint.removeprefix("package:")
    model = Path(checkpoint).name if Path(checkpoint).exists() else checkpoint
    return [f"task:{params.ingest.task}", f"dataset:{dataset}", f"data:{data_version(params)}", f"model:{model}"]


def run_name() -> str:
    """`<task>-data-<data version>-params-<params.yaml digest>[-force]`: two runs with one name had
    the same data and settings. Never raises: bad params fail the flow with their own message."""
    from prefect.runtime import flow_run

    try:
        params = load_params(PARAMS_FILE)
        name = f"{params.ingest.task}-data-{data_version(params)}-params-{digest([PARAMS_FILE], length=8)}"
    except Exception:
        name = "pipeline"
    return name + ("-force" if flow_run.parameters.get("force") else "")


def submit_when_ready(stages: dict, after: dict[str, list[str]], force: bool) -> dict:
    """Submit each stage once the stages it reads from have finished, so the task runner runs what
    is ready at the same time (augment and pretrain; prune and distill). Each waits for its
    upstream's final *state*, not its future: Dask places a task whose inputs are futures on the
    worker that holds them, which queued prune behind distill on finetune's worker. The states
    still record the edges the Prefect UI draws, and a failed upstream still leaves its
    dependants NotReady."""
    futures, running, finished = {}, {}, set()
    waiting = dict(after)
    while waiting:
        for name in [name for name, needs in waiting.items() if set(needs) <= finished]:
            needs = waiting.pop(name)
            futures[name] = stages[name].submit(force, wait_for=[futures[u].state for u in needs])
            running[futures[name]] = name
        if waiting:
            done = next(as_completed(list(running)))
            done.wait()
            finished.add(running.pop(done))
    return futures


# no log_prints: stages log through logging, and Prefect's patched print() would defeat libraries that
# capture stdout (dill disassembles functions to hash them for datasets: the listing ended up in the logs)
@flow(name="pipeline", flow_run_name=run_name, task_runner=ThreadPoolTaskRunner(max_workers=1))
def pipeline(force: bool = False) -> dict:
    params = load_params(PARAMS_FILE)  # reject bad params before any stage starts
    retry = {"retries": params.execution.retries, "retry_delay_seconds": params.execution.retry_delay_seconds}
    stages = {name: stage_task.with_options(**retry) for name, stage_task in stage_tasks.items()}
    with workspace_lock():
        futures = submit_when_ready(stages, upstream(params), force)
        # in DAG order, so a failure surfaces as its own error (bad data: DataValidationError)
        reports = Path(params.paths.reports)
        try:
            futures["ingest"].result()
        except DataValidationError as exc:  # what failed, where, in the UI too
            create_markdown_artifact(markdown=artifacts.validation_failure(exc, reports), key="data-validation",
                                     description="the rules the data broke, by file and line")
            raise
        create_markdown_artifact(markdown=artifacts.validation_summary(reports), key="data-validation",
                                 description="Great Expectations rules checked on each split, with a link to the "
                                             "Data Docs")
        metrics = {name: future.result() for name, future in futures.items()}["evaluate"]
    create_markdown_artifact(markdown=artifacts.training_summary(reports), key="training-curves",
                             description="per-epoch losses and dev scores of pretrain, finetune, prune and distill; "
                                         "MLM perplexity before and after")
    create_markdown_artifact(markdown=(reports / "augment" / "report.md").read_text(encoding="utf-8"),
                             key="augment-report", description="rows each augmentation method added, with examples")
    table = (reports / "evaluate" / "metrics.md").read_text(encoding="utf-8")
    create_markdown_artifact(markdown=f"# Evaluation\n\n{table}\n", key="evaluate-metrics",
                             description="every variant's quality, latency and size, the gate's decision, and "
                                         "the fine-tuned model's scores in detail")
    artifacts.publish_error_analysis(reports)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="run every stage even if up to date")
    parser.add_argument("--task-runner", choices=("sequential", "threads", "dask", "ray"),
                        help="override execution.task_runner from params.yaml")
    args = parser.parse_args(argv)

    def start() -> State:
        params = load_params(PARAMS_FILE)
        if args.task_runner:
            params = params.model_copy(update={"execution": params.execution.model_copy(
                update={"task_runner": args.task_runner})})
        with tags(*run_tags(params)):
            return configured(params)(args.force, return_state=True)
    return run_from_cli(start)


def run_from_cli(start: Callable[[], State]) -> int:
    """A flow started from a command: params checked first (exit 2), then its final state's exit code."""
    configure_logging()
    try:
        load_params(PARAMS_FILE)
        state = start()
    except ConfigError as exc:
        log.error("%s", exc)
        return exit_code(exc)
    return state_exit_code(state)


def run_flow_printing_result(flow_function: Callable, *args) -> int:
    """`run_from_cli` for a flow whose result is a dict: printed as JSON when the run completes."""
    def start() -> State:
        state = flow_function(*args, return_state=True)
        if state.is_completed():
            print(json.dumps(state.result(), indent=2))
        return state

    return run_from_cli(start)


def state_exit_code(state: State) -> int:
    """What a finished flow run means to a script (the map in tinynlp.errors)."""
    if state.is_completed():
        return exit_code(None)
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 (the state's own error, mapped)
        return exit_code(exc)
    return exit_code(RuntimeError("flow run did not complete"))


if __name__ == "__main__":
    sys.exit(main())
