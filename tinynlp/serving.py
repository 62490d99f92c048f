"""What `tinynlp serve` needs besides a web framework: request limits checked in one place, a
micro-batcher that runs the texts of concurrent requests as one ONNX batch, and the service's
Prometheus metrics. No FastAPI here: cli/serve.py wires these into the app."""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

from tinynlp.errors import RequestRefused

log = logging.getLogger(__name__)


MAX_JSON_DEPTH = 32  # a {"texts": [...]} body is 2 deep; json.loads would recurse into anything


class Parsed(NamedTuple):
    texts: list[str]
    truncated: list[int]     # indices of the texts cut to max_chars (too_long: truncate)
    document: bool           # the texts are the sentences of one document, in order


def parse_texts(body: bytes, cfg) -> Parsed:
    """The texts of a /predict body ({"texts": [...], "document": false}), within `cfg`
    (ServeConfig). Every refusal names the limit and the params key."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRefused(422, f"the body is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise RequestRefused(422, f"the body nests deeper than {MAX_JSON_DEPTH} levels; send {{\"texts\": [\"...\"]}}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RequestRefused(422, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    texts = data.get("texts") if isinstance(data, dict) else None
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestRefused(422, 'send {"texts": ["...", ...]}: a non-empty list of strings')
    document = data.get("document", False)
    if not isinstance(document, bool):
        raise RequestRefused(422, '"document" is true (the texts are one document, in order) or false')
    if len(texts) > cfg.max_texts:
        raise RequestRefused(413, f"{len(texts)} texts: at most {cfg.max_texts} per request (serve.max_texts); "
                           "use `tinynlp predict --file` for more")
    too_long = [i for i, t in enumerate(texts) if len(t) > cfg.max_chars]
    if too_long and cfg.too_long == "refuse":
        raise RequestRefused(413, f"text {too_long[0]} has {len(texts[too_long[0]])} characters: at most {cfg.max_chars} "
                           "(serve.max_chars; serve.too_long: truncate cuts instead)")
    return Parsed([t[: cfg.max_chars] for t in texts], too_long, document)


def _depth(text: str) -> int:
    """The deepest bracket nesting outside strings, in one pass (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def freeze_heap() -> int:
    """Move every object alive now (the libraries, the tokenizer, the loaded model) out of the
    cyclic garbage collector's sight, so a full collection walks only what requests create. Without
    it a full collection walked the whole heap, about 150 ms with every request waiting, every ten
    seconds or so under load: the cause of the p99 latency. Objects frozen before are unfrozen and
    collected first, so a model replaced by a reload is not kept. Returns the frozen count."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def wait_until_ready(port: int, process=None, timeout_s: float = 60.0, host: str = "127.0.0.1") -> None:
    """Block until the server on `port` answers /health/ready with 200 (the model is loaded), for
    whoever starts `tinynlp serve` as a process (a benchmark, a test, a supervisor's script). Raises
    RuntimeError naming the port when `process` (a Popen) exits first or `timeout_s` passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(f"http://{host}:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server on port {port} was not ready after {timeout_s:.0f} s")


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    document: bool = False


@dataclass
class MicroBatcher:
    """Texts of requests that arrive within `window_s` of the first one run together, up to
    `max_batch` texts (a bigger request runs alone), on worker threads, at most `workers` batches
    at a time: the model is called once for many small requests instead of once each. A batch is
    formed when a worker is free, so requests that queued while all were busy start the next one at
    once, without the window. The window is waited only while another batch runs: an idle model
    takes a lone request at once, as there is no load to gather. `run` gets the texts and, per
    text, its request's index where that request's texts form one document (else None)."""

    run: Callable[[list[str], list[int | None]], list]
    window_s: float
    max_batch: int
    on_batch: Callable[[int], None] = lambda size: None
    workers: int = 1
    _queue: asyncio.Queue | None = field(default=None, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _running: set = field(default_factory=set, init=False)  # batch tasks, referenced until done

    async def submit(self, texts: list[str], document: bool = False) -> list:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the queue and its worker belong to the loop serving (a test client's
            self._queue, self._task, self._loop = asyncio.Queue(), loop.create_task(self._work()), loop  # may change)
        future = loop.create_future()
        await self._queue.put(_Pending(texts, future, document))
        return await future

    async def close(self) -> None:
        for task in (self._task, *self._running):
            if task is not None:
                task.cancel()

    async def _work(self) -> None:
        free = asyncio.Semaphore(self.workers)
        carry = None
        while True:
            await free.acquire()  # the batch is formed once a worker can take it: the queue gathers meanwhile
            first = carry or await self._queue.get()
            backlog = carry is not None or not self._queue.empty()
            carry, batch, size = None, [first], len(first.texts)
            if self.window_s > 0:
                if not backlog and self._running:  # busy elsewhere: wait the window for others; a
                    await asyncio.sleep(self.window_s)  # backlog has waited a batch already, an idle model need not
                while size < self.max_batch and not self._queue.empty():
                    pending = self._queue.get_nowait()
                    if size + len(pending.texts) > self.max_batch:
                        carry = pending  # it opens the next batch
                        break
                    batch.append(pending)
                    size += len(pending.texts)
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(lambda done: (self._running.discard(done), free.release()))

    async def _run(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a request that timed out is not computed
        if not live:
            return
        texts = [t for p in live for t in p.texts]
        documents = [index if p.document else None for index, p in enumerate(live) for _ in p.texts]
        self.on_batch(len(texts))
        try:
            results = await asyncio.to_thread(self.run, texts, documents)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        at = 0
        for p in live:
            if not p.future.done():
                p.future.set_result(results[at: at + len(p.texts)])
            at += len(p.texts)


class Metrics:
    """The service's Prometheus metrics, on a registry of its own (one per app)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("tinynlp_requests", "requests answered, by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("tinynlp_request_seconds", "time to answer a /predict request",
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=self.registry)
        self.texts = Histogram("tinynlp_texts_per_request", "texts in one /predict request",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.batch = Histogram("tinynlp_batch_texts", "texts per model call (micro-batches)",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.in_flight = Gauge("tinynlp_in_flight", "requests being answered", registry=self.registry)
        self.truncated = Counter("tinynlp_truncated_texts", "texts cut to serve.max_chars", registry=self.registry)
        self.model = Gauge("tinynlp_model_info", "the model being served (1)", ["variant", "version", "task"],
                           registry=self.registry)
        self.captured = Counter("tinynlp_captured_texts", "served texts queued for capture (serve.capture)",
                                registry=self.registry)
        self.capture_dropped = Counter("tinynlp_capture_dropped", "capture records dropped (queue full, disk "
                                       "failing); requests are never held up", ["reason"], registry=self.registry)

    def serving(self, **labels: str) -> None:
        self.model.clear()
        self.model.labels(**labels).set(1)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def records_for(outputs: Sequence, truncated: Sequence[int], as_record: Callable) -> list[dict]:
    """Response records; a text that was cut says so."""
    records = [as_record(text, result) for text, result in outputs]
    for index in truncated:
        records[index]["truncated"] = True
    return records


def capture_writer(cfg, redact: bool, pii_cfg, metrics: Metrics):
    """The traffic capture writer `serve.capture` describes (None when off). With `redact`, texts
    and NER words are redacted as ingestion redacts training data (ingest.pii's settings)."""
    if not cfg.capture.enabled:
        return None
    from pathlib import Path

    from tinynlp.capture import CaptureWriter

    redact_text = redact_words = None
    if redact:
        from tinynlp import pii
        from tinynlp.ingestion import pii_settings

        settings = pii_settings(pii_cfg) if pii_cfg is not None else pii.DEFAULT
        redact_text = lambda text: pii.redact_text(text, settings)[0]  # noqa: E731
        redact_words = lambda words: pii.redact_tokens(words, settings)[0]  # noqa: E731
    capture = cfg.capture
    return CaptureWriter(Path(capture.dir), capture.max_file_bytes, capture.max_files, capture.queue_size,
                         redact_text, redact_words,
                         on_drop=lambda reason, count: metrics.capture_dropped.labels(reason).inc(count))
