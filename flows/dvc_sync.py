"""The one notion of "inputs changed": DVC's. A Prefect stage task asks DVC whether its stage is
up to date (deps, params and outs as recorded in dvc.lock); after running the stage function it
records the result in dvc.lock with `dvc commit`, exactly as `dvc repro` would. So a Prefect run
leaves `dvc status` clean, and a `dvc repro` run makes the Prefect flow report every task Cached."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _repo(root: str | Path = "."):
    from dvc.repo import Repo

    # Importing dvc installs its own console handlers at INFO: every commit would print "Updating
    # lock file" once on stdout and again through the root logger. The flow reports each stage
    # itself; DVC keeps its warnings, printed once by its own handler.
    dvc_logger = logging.getLogger("dvc")
    dvc_logger.setLevel(logging.WARNING)
    dvc_logger.propagate = False
    return Repo(str(root))


# How long a stage task waits for DVC's repo lock. The flow holds the workspace lock, so whoever
# else holds DVC's (a `dvc repro` between two stages, whose next stage command is refused) lets go
# within seconds; a lock held for longer is a real conflict and is reported.
DVC_LOCK_WAIT_SECONDS = 60.0


def _dvc_locked(func):
    """One DVC call at a time from this flow's concurrent stage tasks (threads or Dask worker
    processes: DVC's own repo lock refuses, rather than waits for, a second caller); DVC's lock
    held by someone else for longer than DVC_LOCK_WAIT_SECONDS surfaces as the workspace being busy."""
    import functools

    @functools.wraps(func)
    def wrapper(stage: str, root: str | Path = "."):
        from dvc.lock import LockError
        from filelock import FileLock

        from tinynlp.errors import WorkspaceBusyError
        deadline, waited = time.monotonic() + DVC_LOCK_WAIT_SECONDS, False
        with FileLock(str(Path(root) / ".dvc" / "tmp" / "tinynlp-sync.lock")):
            while True:
                try:
                    return func(stage, root)
                except LockError as exc:
                    if time.monotonic() > deadline:
                        raise WorkspaceBusyError(f"DVC is busy in this workspace (a `dvc repro` is running?): "
                                                 f"{exc}") from None
                    if not waited:
                        log.info("%s: DVC's lock is held by another process; waiting", stage)
                    waited = True
                    time.sleep(0.5)
    return wrapper


@_dvc_locked
def stage_changes(stage: str, root: str | Path = ".") -> dict:
    """What DVC sees changed for this stage alone (empty: up to date)."""
    with _repo(root) as repo:
        status = repo.status(targets=[stage])
    return {name: changes for name, changes in status.items() if name.split(":")[-1] == stage}


@_dvc_locked
def commit_stage(stage: str, root: str | Path = ".") -> None:
    """Record deps, params and outs of a stage that just ran in dvc.lock, and cache its outs."""
    with _repo(root) as repo:
        repo.commit(stage, force=True)


@_dvc_locked
def stage_metrics(stage: str, root: str | Path = ".") -> dict:
    """The metrics files a stage declares in dvc.yaml, read back (what a cached run returns)."""
    with _repo(root) as repo:
        stages = repo.stage.collect(stage)
        files = [out.fs_path for s in stages for out in s.outs if out.metric]
    merged: dict = {}
    for path in files:
        merged.update(json.loads(Path(path).read_text(encoding="utf-8")))
    return merged
