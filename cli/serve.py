"""`tinynlp serve`: the promoted model over HTTP (FastAPI on uvicorn, both installed with Prefect).

    POST /predict {"texts": ["Alice lives in Paris ."]}  -> {"results": [{"text": ..., "entities": [...]}]}
                  {"texts": [...], "document": true}    -> the texts are one document's sentences, in order
    GET  /health                                          -> ready or not, with the card's variant and metrics
    GET  /health/live, /health/ready                      -> the process answers; the model is loaded
    GET  /metrics                                         -> Prometheus text format
    POST /admin/reload                                    -> load the model directory again (also SIGHUP)

What one request may cost is bounded by the `serve` section of params.yaml: body size, texts,
characters per text (413), a time budget (503) and requests in flight (503 with Retry-After).
Texts of concurrent requests run as one ONNX batch. Request texts are never logged, nor echoed
in error responses; `serve.redact_pii` (or `--redact-pii`) masks personal data in responses.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

from fastapi import Request  # at module level: FastAPI reads the endpoints' annotations from here

from cli.predict import as_record
from tinynlp.errors import PipelineError, exit_code
from tinynlp.model_dir import CARD_FILE

log = logging.getLogger(__name__)
PREDICT = "/predict"


def _read_card(path: Path) -> dict:
    """The card's figures for /health; a missing or corrupt card is worth a warning, never an outage
    (serving needs only the graph, the tokenizer and pipeline.json)."""
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s is unreadable (%s); serving without its figures", path, exc)
        return {}
    return card if isinstance(card, dict) else {}


class _Service:
    """The loaded model and what describes it; replaced whole on reload."""

    def __init__(self, model_dir: Path, threads: int, redact_pii: bool, model_batch: int):
        from tinynlp.predict import Predictor

        self.predictor = Predictor(model_dir, threads, batch_size=model_batch, redact_pii=redact_pii)
        self.card = _read_card(model_dir / CARD_FILE)
        self.variant = self.predictor.meta.get("variant", self.card.get("variant")) or "unknown"
        self.version = str(self.card.get("version") or self.card.get("data_version") or "unversioned")


def build_app(model_dir: str | Path, threads: int = 0, redact_pii: bool = False, cfg=None,
              load_in_background: bool = False, pii_cfg=None):
    """The app. `load_in_background`: the port opens at once and /health/ready says 503 until the
    model is loaded (what an orchestrator's readiness probe wants); otherwise it loads here, and a
    model directory that cannot be served fails now. `pii_cfg` (ingest.pii): how captured traffic
    is redacted, and whether it is (mode redact)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from tinynlp.config import ServeConfig
    from tinynlp.errors import RequestRefused
    from tinynlp.modeling import available_cores
    from tinynlp.serving import Metrics, MicroBatcher, capture_writer, freeze_heap, parse_texts, records_for

    cfg = cfg or ServeConfig()
    model_dir = Path(model_dir)
    state: dict = {"service": None, "in_flight": 0}
    metrics = Metrics()
    batcher = MicroBatcher(lambda texts, documents: state["service"].predictor.served(texts, documents),
                           cfg.batch_window_ms / 1000, cfg.max_batch, on_batch=metrics.batch.observe,
                           workers=cfg.workers)
    # one session, run by `workers` batches at once: each gets its share of the threads
    threads_per_batch = max(1, (threads or available_cores()) // cfg.workers)
    capture = capture_writer(cfg, redact_pii or cfg.redact_pii or (pii_cfg is not None and pii_cfg.mode == "redact"),
                             pii_cfg, metrics)

    def load() -> dict:
        fresh = _Service(model_dir, threads_per_batch, redact_pii or cfg.redact_pii, cfg.model_batch)
        state["service"] = fresh  # requests in flight finish on the model they started with
        freeze_heap()  # what is loaded now lives as long as the process: full collections skip it
        metrics.serving(variant=fresh.variant, version=fresh.version, task=fresh.predictor.meta["task"])
        return {"status": "loaded", "variant": fresh.variant, "version": fresh.version}

    @asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        loading = loop.create_task(asyncio.to_thread(load)) if state["service"] is None else None
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_endpoint()))
        except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, a thread)
            pass
        if capture is not None:
            capture.start()
        yield
        if loading is not None and not loading.done():
            loading.cancel()
        await batcher.close()
        if capture is not None:
            await asyncio.to_thread(capture.close)  # what is queued is written before the process exits

    if not load_in_background:
        load()
    app = FastAPI(title="tinynlp", description="the promoted model of the tinynlp pipeline", lifespan=lifespan)

    def refused(exc: RequestRefused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            raise RequestRefused(413, f"the body has {declared} bytes: at most {cfg.max_body_bytes} (serve.max_body_bytes)")
        body = bytearray()
        async for chunk in request.stream():  # a body without Content-Length is counted as it comes
            body += chunk
            if len(body) > cfg.max_body_bytes:
                raise RequestRefused(413, f"the body is over {cfg.max_body_bytes} bytes (serve.max_body_bytes)")
        return bytes(body)

    async def answer(request: Request) -> JSONResponse:
        texts, truncated, document = parse_texts(await read_body(request), cfg)
        metrics.texts.observe(len(texts))
        metrics.truncated.inc(len(truncated))
        served = await batcher.submit(texts, document)
        if capture is not None:
            service = state["service"]
            model = {"variant": service.variant, "version": service.version}
            capture.offer(kept.record(model) for _, _, kept in served)
            metrics.captured.inc(len(served))
        return JSONResponse({"results": records_for([(text, result) for text, result, _ in served], truncated,
                                                    as_record)})

    @app.post(PREDICT)
    async def predict(request: Request):
        started = time.perf_counter()
        if state["service"] is None:
            response = refused(RequestRefused(503, "the model is still loading; retry shortly", retry_after=1))
        elif state["in_flight"] >= cfg.max_in_flight:
            response = refused(RequestRefused(503, f"{cfg.max_in_flight} requests in flight (serve.max_in_flight); "
                                            "retry shortly", retry_after=1))
        else:
            state["in_flight"] += 1
            metrics.in_flight.inc()
            try:
                response = await asyncio.wait_for(answer(request), cfg.timeout_s)
            except RequestRefused as exc:
                response = refused(exc)
            except asyncio.TimeoutError:
                response = refused(RequestRefused(503, f"not answered within {cfg.timeout_s:g} s (serve.timeout_s)",
                                           retry_after=1))
            except Exception as exc:  # noqa: BLE001 - its message may quote a text: the log gets its type only
                log.error("POST /predict failed: %s", type(exc).__name__)
                response = JSONResponse({"detail": f"prediction failed ({type(exc).__name__}); the server log has "
                                                   "no more"}, status_code=500)
            finally:
                state["in_flight"] -= 1
                metrics.in_flight.dec()
            metrics.latency.observe(time.perf_counter() - started)
        metrics.requests.labels(PREDICT, str(response.status_code)).inc()
        return response

    @app.get("/health/live")
    def live() -> dict:
        return {"status": "alive"}

    @app.get("/health/ready")
    def ready():
        loaded = state["service"] is not None
        return JSONResponse({"status": "ready" if loaded else "loading"}, status_code=200 if loaded else 503)

    @app.get("/health")
    def health():
        current = state["service"]
        if current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "task": current.predictor.meta["task"], "labels": current.predictor.labels,
                "variant": current.variant, "metrics": current.card.get("metrics"), "in_flight": state["in_flight"]}

    @app.get("/metrics")
    def prometheus():
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/admin/reload")
    async def reload_endpoint():
        """Load the model directory again (a newly promoted model) without dropping requests; a
        directory that does not load leaves the old model serving (409)."""
        try:
            loaded = await asyncio.to_thread(load)
        except PipelineError as exc:
            log.error("reload of %s failed; still serving the model loaded before: %s", model_dir, exc)
            return JSONResponse({"detail": f"kept the model being served: {exc}"}, status_code=409)
        log.info("reloaded %s: variant %s", model_dir, loaded["variant"])
        return loaded

    return app


def main(args) -> int:
    import uvicorn

    from tinynlp.config import ServeConfig, load_params

    try:
        params = load_params(args.params, check_files=False) if Path(args.params).is_file() else None
        cfg = params.serve if params is not None else ServeConfig()
        from tinynlp.predict import check_model_dir

        check_model_dir(args.model)  # a missing model is an error now, not a server that never gets ready
        app = build_app(args.model, args.threads, args.redact_pii, cfg, load_in_background=True,
                        pii_cfg=params.ingest.pii if params is not None else None)
    except PipelineError as exc:
        print(f"tinynlp serve: {exc}", file=sys.stderr)
        return exit_code(exc)
    log.info("serving %s on http://%s:%d (POST /predict, GET /health, GET /metrics)%s%s", args.model, args.host,
             args.port, "; personal data masked in responses" if args.redact_pii or cfg.redact_pii else "",
             f"; traffic captured to {cfg.capture.dir}" if cfg.capture.enabled else "")
    # SIGTERM: stop accepting, let requests in flight finish (up to one time budget), then exit
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", loop=args.loop, http=args.http,
                timeout_graceful_shutdown=max(1, int(cfg.timeout_s)), limit_concurrency=None)
    return exit_code(None)
