"""Progress of long work (training steps) for whoever listens: the log always gets it; a shell such
as the Prefect task adds a listener that mirrors it elsewhere (a progress artifact in the UI).
The core never knows who listens, so it imports neither Prefect nor DVC."""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

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
