"""Stage `evaluate`: scores of the fine-tuned model on the validated dev and test splits (seqeval
entity P/R/F1 for NER; accuracy, macro-F1 and per class for classification), written for
`dvc metrics` and printed as a table."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from tinynlp import modeling
from tinynlp.atomic import atomic_write_json, atomic_write_text
from tinynlp.config import Params
from tinynlp.heads import head_for
from tinynlp.reporting import metrics_table
from tasks.common import read_split
from tasks.finetune import load_spec

log = logging.getLogger(__name__)


def predict_logits(model, tokenizer, features: list[dict], batch_size: int) -> list[np.ndarray]:
    """Logits per example (per window for NER), unpadded. Batches are formed by length so
    little compute goes to padding; results come back in input order."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out: list[np.ndarray | None] = [None] * len(features)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = tokenizer.pad([{k: features[i][k] for k in ("input_ids", "attention_mask")} for i in chunk],
                                  return_tensors="pt")
            logits = model(**batch).logits.float().numpy()
            for row, index in enumerate(chunk):
                out[index] = logits[row, : len(features[index]["input_ids"])] if logits.ndim == 3 else logits[row]
    return out


def run_evaluate(params: Params) -> dict:
    paths = params.paths
    modeling.set_threads()
    spec = load_spec(paths.model)
    head = head_for(spec.task)
    tokenizer = modeling.load_tokenizer(paths.model)
    model = modeling.load_classifier(paths.model, spec.labels, head.model_class)
    scores = {}
    for split_name in ("dev", "test"):
        split = read_split(paths.ingested, split_name)
        encoded = head.encode(tokenizer, split, spec)
        logits = predict_logits(model, tokenizer, head.features(encoded), params.evaluate.batch_size)
        scores[split_name] = head.score(encoded, logits, split, spec)
    detail = {"task": spec.task, **scores}
    metrics = {**{f"{s}_{head.metric}": scores[s][head.metric] for s in ("test", "dev")},
               **{s: head.summary(scores[s]) for s in ("test", "dev")}}
    reports = Path(paths.reports) / "evaluate"
    atomic_write_json(reports / "scores.json", detail)  # per type / per class, for people and reports
    atomic_write_json(reports / "metrics.json", metrics)  # the headline figures, for `dvc metrics`
    table = metrics_table(detail)
    atomic_write_text(reports / "metrics.md", table + "\n")
    log.info("evaluate: test %s %.4f, dev %s %.4f\n%s", head.metric, metrics[f"test_{head.metric}"], head.metric,
             metrics[f"dev_{head.metric}"], table)
    return metrics
