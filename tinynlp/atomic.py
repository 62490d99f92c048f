"""Atomic artifact writes: build next to the target, then rename, so a crash or a failed
stage never leaves a half-written artifact and never destroys the last good one.

In a multi-process training job (torchrun / accelerate launch) every rank runs the stage, but
only rank 0 writes: on the others `atomic_dir` hands out a throwaway directory outside the
workspace and `atomic_write_text` does nothing, so the job leaves exactly one set of artifacts."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tinynlp import distributed


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `target` in one rename."""
    if not distributed.is_main():
        discarded = Path(tempfile.mkdtemp(prefix=f"tinynlp-rank{distributed.rank()}-"))
        try:
            yield discarded
        finally:
            shutil.rmtree(discarded, ignore_errors=True)
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if target.exists():
        retired = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
    os.replace(staging, target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def recover(target: str | os.PathLike) -> bool:
    """A process killed between the two renames of `atomic_dir` leaves the target missing and the
    last good version aside as `.name.old-<pid>`: put it back (True when it did)."""
    target = Path(target)
    retired = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if target.exists() or not retired:
        return False
    os.replace(retired[-1], target)
    for leftover in retired[:-1]:
        shutil.rmtree(leftover, ignore_errors=True)
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    if not distributed.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")
