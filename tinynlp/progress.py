"""Progress of long work (training steps) for whoever listens: the log always gets it; a shell such
as the Prefect task adds a listener that mirrors it elsewhere (a progress artifact in the UI).
The core never knows who listens, so it imports neither Prefect nor DVC."""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

# (what, percent done 0-100, detail) -> None
Listener = Callable[[str, float, str], None]
_listeners: dict[int, list[Listener]] = {}  # by thread: stages running at once report apart


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send this thread's progress reports to `listener` while the block runs."""
    mine = _listeners.setdefault(threading.get_ident(), [])
    mine.append(listener)
    try:
        yield
    finally:
        mine.remove(listener)


def report(what: str, percent: float, detail: str = "") -> None:
    for listener in list(_listeners.get(threading.get_ident(), ())):
        try:
            listener(what, percent, detail)
        except Exception as exc:  # a display must never stop the work it shows
            log.warning("progress listener failed (%s: %s); training goes on", type(exc).__name__, exc)


def clock(seconds: float) -> str:
    """An ETA as people read it: 4m05s ('?' before there is a rate)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def track(items: Sequence[T], what: str) -> Iterator[T]:
    """Yield each item; after each, log `what i/n (pct), ETA` and report it, so a loop over a few
    slow steps (variants to score, candidates to calibrate) shows how far it is and how long is left."""
    started, total = time.monotonic(), len(items)
    for done, item in enumerate(items, 1):
        yield item
        elapsed = time.monotonic() - started
        eta = clock(elapsed / done * (total - done))
        log.info("%s %d/%d (%.0f%%), %s elapsed, ETA %s", what, done, total, 100 * done / total, clock(elapsed), eta)
        report(what, 100 * done / total, f"{done}/{total}, ETA {eta}")
