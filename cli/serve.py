"""`tinynlp serve`: the promoted model over HTTP (FastAPI on uvicorn, both installed with Prefect).

    POST /predict {"texts": ["Alice lives in Paris ."]}  -> {"results": [{"text": ..., "entities": [...]}]}
    GET  /health                                          -> the model card's variant, task and metrics
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from cli.predict import as_record
from tinynlp.errors import PipelineError, exit_code
from tinynlp.model_dir import CARD_FILE

log = logging.getLogger(__name__)
MAX_TEXTS = 1024  # per request: bigger inputs belong to `tinynlp predict --file`


class PredictRequest(BaseModel):
    texts: list[str] = Field(min_length=1, description="raw texts, one prediction each")


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


def build_app(model_dir: str | Path, threads: int = 0):
    from fastapi import FastAPI, HTTPException

    from tinynlp.predict import Predictor

    predictor = Predictor(model_dir, threads)
    card = _read_card(Path(model_dir) / CARD_FILE)

    app = FastAPI(title="tinynlp", description="the promoted model of the tinynlp pipeline")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "task": predictor.meta["task"], "labels": predictor.labels,
                "variant": predictor.meta.get("variant", card.get("variant")), "metrics": card.get("metrics")}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict:
        if len(request.texts) > MAX_TEXTS:
            raise HTTPException(413, f"at most {MAX_TEXTS} texts per request; use `tinynlp predict --file`")
        return {"results": [as_record(text, result)
                            for text, result in zip(request.texts, predictor.predict(request.texts))]}

    return app


def main(args) -> int:
    import uvicorn

    try:
        app = build_app(args.model, args.threads)
    except PipelineError as exc:
        print(f"tinynlp serve: {exc}", file=sys.stderr)
        return exit_code(exc)
    log.info("serving %s on http://%s:%d (POST /predict, GET /health)", args.model, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return exit_code(None)
