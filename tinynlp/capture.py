"""Served traffic kept for the drift check and for labelling: `serve.capture` writes each served text
with the model's prediction and confidence to rotating, size-bounded JSON-lines files, and the
readers here turn a capture folder, a plain text file (one text per line) or an NER file with only
a token column into unlabelled rows.

Capture never holds a request up: records go to a bounded queue that one writer thread drains
(redacting personal data there, off the request path). A full queue or a failing disk drops
records, with a warning and a count, never requests."""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from tinynlp.errors import DataValidationError
from tinynlp.readers import read_text, text_lines

log = logging.getLogger(__name__)

CAPTURE_GLOB = "capture-*.jsonl"
WARN_EVERY_S = 60.0   # a full disk would otherwise log once per request


@dataclass(frozen=True)
class Served:
    """One served text and what the model said of it. NER keeps the words and their tags (the
    labelling queue's pre-annotation); `confidence` is the class probability, or for NER the mean
    of the words' tag probabilities, and `least` the least sure word's (for classification the same)."""

    text: str
    prediction: str | list[str]     # the class, or one BIO tag per word
    confidence: float
    least: float
    words: list[str] | None = None

    def record(self, model: dict) -> dict:
        row = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "model": model,
               "text": self.text, "confidence": round(self.confidence, 4), "least": round(self.least, 4)}
        if self.words is None:
            return {**row, "label": self.prediction}
        return {**row, "words": self.words, "tags": self.prediction}


@dataclass
class CaptureWriter:
    """Appends records to `folder`/capture-<UTC time>-<pid>-<n>.jsonl; a file that reaches
    `max_file_bytes` is closed and the next one opened; beyond `max_files` the oldest are deleted.
    `redact` (a text -> text function, or a words -> words one for NER) runs on the writer thread."""

    folder: Path
    max_file_bytes: int
    max_files: int
    queue_size: int
    redact_text: Callable[[str], str] | None = None
    redact_words: Callable[[list[str]], list[str]] | None = None
    on_drop: Callable[[str, int], None] = lambda reason, count: None
    written: int = 0
    _queue: queue.Queue = field(init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _file = None
    _file_bytes: int = field(default=0, init=False)
    _sequence: int = field(default=0, init=False)
    _warned_at: dict = field(default_factory=dict, init=False)

    def __post_init__(self):
        self.folder = Path(self.folder)
        self._queue = queue.Queue(self.queue_size)

    def start(self) -> "CaptureWriter":
        self._thread = threading.Thread(target=self._drain, name="capture-writer", daemon=True)
        self._thread.start()
        return self

    def offer(self, records: Iterable[dict]) -> None:
        """Queue records without waiting; those that do not fit are dropped and counted."""
        if self._thread is None:
            self.start()
        dropped = 0
        for record in records:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                dropped += 1
        if dropped:
            self._dropped("queue_full", dropped, f"capture queue full ({self._queue.maxsize} records, "
                                                 "serve.capture.queue_size): records dropped, requests unaffected")

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (up to `timeout_s`), then close the file."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None
        self._close_file()

    def _drain(self) -> None:
        while (record := self._queue.get()) is not None:
            try:
                self._write(self._redacted(record))
            except OSError as exc:  # a full or read-only disk: the record is lost, serving goes on
                self._close_file()
                self._dropped("write_failed", 1, f"capture to {self.folder} failed ({exc.strerror or exc}); "
                                                  "records dropped, requests unaffected")
            except Exception as exc:  # noqa: BLE001 - capture must never take the writer down
                self._dropped("failed", 1, f"capture record dropped ({type(exc).__name__})")

    def _redacted(self, record: dict) -> dict:
        if self.redact_text is not None:
            record = {**record, "text": self.redact_text(record["text"])}
        if self.redact_words is not None and "words" in record:
            record = {**record, "words": self.redact_words(record["words"])}
        return record

    def _write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if self._file is None or self._file_bytes + len(line) > self.max_file_bytes and self._file_bytes:
            self._rotate()
        self._file.write(line)
        self._file.flush()
        self._file_bytes += len(line)
        self.written += 1

    def _rotate(self) -> None:
        self._close_file()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self._file = open(self.folder / f"capture-{stamp}-{os.getpid()}-{self._sequence:04d}.jsonl", "ab")
        self._file_bytes = 0
        for old in sorted(self.folder.glob(CAPTURE_GLOB))[:-self.max_files]:  # names sort by time
            old.unlink(missing_ok=True)

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _dropped(self, reason: str, count: int, message: str) -> None:
        self.on_drop(reason, count)
        now = time.monotonic()
        if now - self._warned_at.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[reason] = now
            log.warning(message)


@dataclass(frozen=True)
class Unlabelled:
    """Rows without labels: each row's words, its text, and where it came from (file, line)."""

    words: list[list[str]]
    texts: list[str]
    origins: list[tuple[str, int]]
    kind: str                        # capture | text | conll
    records: list[dict] = field(default_factory=list)   # capture only: what was served


def read_capture(folder: str | Path, split_words: Callable[[str], list[str]]) -> Unlabelled:
    """Every record of a capture folder, oldest file first. A corrupt or half-written line (a
    writer killed mid-line) ends that file's reading with a warning naming file and line."""
    folder = Path(folder)
    files = sorted(folder.glob(CAPTURE_GLOB))
    if not files:
        raise DataValidationError.single(str(folder), "capture_files", f"no {CAPTURE_GLOB} files: nothing was "
                                         "captured (serve.capture.enabled) or the folder is wrong")
    words, texts, origins, records = [], [], [], []
    for path in files:
        for number, line in enumerate(text_lines(read_text(path)), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                text = record["text"]
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s line %d: corrupt or half-written capture record (%s); read the %d record(s) before "
                            "it, skipped the rest of this file", path, number, type(exc).__name__, number - 1)
                break
            row_words = record.get("words")
            words.append(list(row_words) if isinstance(row_words, list) else split_words(text))
            texts.append(text)
            origins.append((str(path), number))
            records.append(record)
    return _non_empty(Unlabelled(words, texts, origins, "capture", records), folder)


def read_plain_text(path: str | Path, split_words: Callable[[str], list[str]]) -> Unlabelled:
    """One text per line; blank lines are skipped."""
    rows = [(number, line.strip()) for number, line in enumerate(text_lines(read_text(path)), start=1) if line.strip()]
    return _non_empty(Unlabelled([split_words(t) for _, t in rows], [t for _, t in rows],
                                 [(str(path), n) for n, _ in rows], "text"), path)


def read_tokens_only(path: str | Path) -> Unlabelled:
    """A CoNLL-style file without tags: the token is the first column (a token-only file has no
    other); blank lines and -DOCSTART- end a sentence."""
    words, origins, current, start = [], [], [], 0
    for number, line in enumerate([*text_lines(read_text(path)), ""], start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            if current:
                words.append(current)
                origins.append((str(path), start))
            current = []
            continue
        start = start if current else number
        current.append(stripped.split("\t")[0].strip() if "\t" in stripped else stripped.split()[0])
    return _non_empty(Unlabelled(words, [" ".join(w) for w in words], origins, "conll"), path)


def _non_empty(rows: Unlabelled, where: str | Path) -> Unlabelled:
    if not rows.texts:
        raise DataValidationError.single(str(where), "not_empty", "no texts to test for drift")
    return rows
