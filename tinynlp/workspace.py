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

from tinynlp import distributed
from tinynlp.errors import WorkspaceBusyError

LOCK_FILE = ".pipeline.lock"
# locks this process holds for nested runs, by (path, thread): the retraining flow runs the pipeline
# flow inside its own lock; every other caller, even this thread without the holder's consent, is refused
_held: dict[tuple[Path, int], int] = {}


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


@contextlib.contextmanager
def job_lock(root: str | os.PathLike = ".") -> Iterator[None]:
    """The workspace lock for a stage command that may be one of the N processes of a torchrun /
    accelerate job (inside `distributed.process_group`): rank 0 takes the lock for the whole job
    and tells the other ranks whether it got it, so all of them stop when the workspace is busy
    and none runs the stage unless the job holds the lock; rank 0 lets go only after every rank
    has finished. In a single process this is `workspace_lock`."""
    if not distributed.is_distributed():
        with workspace_lock(root):
            yield
        return
    with contextlib.ExitStack() as held:
        refused = None
        if distributed.is_main():
            try:
                held.enter_context(workspace_lock(root))
            except WorkspaceBusyError as exc:
                refused = exc
        if not distributed.broadcast_flag(refused is None):
            raise refused or WorkspaceBusyError(
                f"rank 0 of this job found another pipeline run in progress in {Path(root).resolve()}; "
                "wait for it to finish, then run again")
        yield
        distributed.barrier()  # rank 0 holds the lock until the last rank is done
