"""One pipeline run per workspace. The Prefect flow holds this lock for its whole run and each
stage command holds it while it works, so two runs started at once cannot interleave writes:
the second fails fast with a message saying why. The OS releases it if a run dies."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from tinynlp.errors import PipelineError

LOCK_FILE = ".pipeline.lock"
# locks this process holds for nested runs, by (path, thread): the retraining flow runs the pipeline
# flow inside its own lock; every other caller, even this thread without the holder's consent, is refused
_held: dict[tuple[Path, int], int] = {}


class WorkspaceBusyError(PipelineError):
    """Another pipeline run is active in this workspace."""


@contextlib.contextmanager
def workspace_lock(root: str | os.PathLike = ".", wait_seconds: float = 0.0,
                   nested_runs: bool = False) -> Iterator[None]:
    """Hold the workspace for one run. `nested_runs`: runs this thread starts inside (a flow calling
    the pipeline flow) share the lock instead of being refused."""
    path = (Path(root) / LOCK_FILE).resolve()
    key = (path, threading.get_ident())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise WorkspaceBusyError(
            f"another pipeline run is in progress in {Path(root).resolve()} (lock {path}); "
            "wait for it to finish, then run again") from None
    if nested_runs:
        _held[key] = 1
    try:
        yield
    finally:
        _held.pop(key, None)
        lock.release()
