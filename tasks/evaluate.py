"""Stage `evaluate`: entity-level precision/recall/F1 (seqeval) of the fine-tuned model on the
validated dev and test splits, written for `dvc metrics` and printed as a table."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from tinynlp import modeling, ner
from tinynlp.atomic import atomic_write_json, atomic_write_text
from tinynlp.config import Params
from tinynlp.reporting import ner_metrics_table
from tasks.common import read_split
from tasks.finetune import PIPELINE_FILE

log = logging.getLogger(__name__)


def predict_logits(model, tokenizer, features: list[dict], batch_size: int) -> list[np.ndarray]:
    """Logits per window, unpadded. Windows are batched by length so little compute is padding."""
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
                out[index] = logits[row, : len(features[index]["input_ids"])]
    return out


def score_split(model, tokenizer, spec: dict, split: dict, batch_size: int) -> dict:
    label2id = {l: i for i, l in enumerate(spec["labels"])}
    encoded = ner.encode(tokenizer, split["tokens"], split["tags"], label2id, spec["max_length"],
                         spec["stride"], spec["label_all_tokens"])
    logits = predict_logits(model, tokenizer, encoded.features, batch_size)
    predicted = ner.decode(encoded, logits, dict(enumerate(spec["labels"])))
    return ner.entity_scores(split["tags"], predicted)


def run_evaluate(params: Params) -> dict:
    paths = params.paths
    modeling.set_threads()
    spec = json.loads((Path(paths.model) / PIPELINE_FILE).read_text(encoding="utf-8"))
    tokenizer = modeling.load_tokenizer(paths.model)
    model = modeling.load_token_classifier(paths.model, spec["labels"])
    metrics = {split: score_split(model, tokenizer, spec, read_split(paths.ingested, split), params.evaluate.batch_size)
               for split in ("dev", "test")}
    metrics = {"test_entity_f1": metrics["test"]["entity_f1"], "dev_entity_f1": metrics["dev"]["entity_f1"], **metrics}
    reports = Path(paths.reports) / "evaluate"
    atomic_write_json(reports / "metrics.json", metrics)
    table = ner_metrics_table(metrics)
    atomic_write_text(reports / "metrics.md", table + "\n")
    log.info("evaluate: test entity F1 %.4f, dev entity F1 %.4f\n%s", metrics["test_entity_f1"],
             metrics["dev_entity_f1"], table)
    return metrics
