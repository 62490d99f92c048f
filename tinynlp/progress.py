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


class Meter:
    """Counts units of work done out of `total` and, each time another `every_percent` of it is
    done (0: after every unit; always at the end), logs `what done/total (pct), rate, ETA` and
    reports it to listeners: progress that reads well in a log file, where a progress bar is off."""

    def __init__(self, total: int, what: str, unit: str = "", every_percent: float = 10.0):
        self.total, self.what, self.unit, self.every = max(int(total), 0), what, unit, every_percent
        self.done, self._next, self._started = 0, every_percent, time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.done += count
        percent = 100.0 * self.done / self.total if self.total else 100.0
        if self.every > 0:
            if percent + 1e-9 < self._next and self.done < self.total:
                return
            self._next = (math.floor(percent / self.every + 1e-9) + 1) * self.every  # the next threshold past now
        elapsed = time.monotonic() - self._started
        eta = clock(elapsed / self.done * (self.total - self.done)) if self.done else "?"
        rate = f", {self.done / elapsed:.0f} {self.unit}/s" if self.unit and elapsed > 0 else ""
        log.info("%s %d/%d (%.0f%%), %s elapsed%s, ETA %s", self.what, self.done, self.total, percent,
                 clock(elapsed), rate, eta)
        report(self.what, percent, f"{self.done}/{self.total}, ETA {eta}")


def track(items: Sequence[T], what: str) -> Iterator[T]:
    """Yield each item, logging and reporting after each: a loop over a few slow steps (variants
    to score, candidates to calibrate) shows how far it is and how long is left."""
    meter = Meter(len(items), what, every_percent=0)
    for item in items:
        yield item
        meter.advance()
