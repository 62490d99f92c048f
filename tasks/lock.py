"""One pipeline run per workspace. The Prefect flow holds this lock for its whole run and each
stage command holds it while it works, so two runs started at once cannot interleave writes:
the second fails fast with a message saying why. The OS releases it if a run dies."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from tinynlp.errors import PipelineError

LOCK_FILE = ".pipeline.lock"


class WorkspaceBusyError(PipelineError):
    """Another pipeline run is active in this workspace."""


@contextlib.contextmanager
def workspace_lock(root: str | os.PathLike = ".", wait_seconds: float = 0.0) -> Iterator[None]:
    path = Path(root) / LOCK_FILE
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise WorkspaceBusyError(
            f"another pipeline run is in progress in {Path(root).resolve()} (lock {path}); "
            "wait for it to finish, then run again") from None
    try:
        yield
    finally:
        lock.release()
