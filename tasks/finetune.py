"""Stage `finetune`: token classification from the configured checkpoint on the validated
splits, early-stopped on dev entity F1; saves safetensors weights, tokenizer and label map."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tinynlp import modeling, ner
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.training import TrainSettings, train
from tasks.common import read_labels, read_split

log = logging.getLogger(__name__)
PIPELINE_FILE = "pipeline.json"  # how the saved model expects its inputs (read by evaluate/predict)


def _fingerprint(params: Params) -> str:
    """Checkpoints are resumed only by a run with the same config and the same training data."""
    digest = hashlib.sha256(params.finetune.model_dump_json().encode())
    for split in ("train", "dev", "labels"):
        name = "labels.json" if split == "labels" else f"{split}.parquet"
        digest.update((Path(params.paths.ingested) / name).read_bytes())
    return digest.hexdigest()[:16]


def _metrics_fn(encoded: ner.Encoded, gold: list[list[str]], id2label: dict[int, str]):
    def compute(prediction) -> dict:
        logits = prediction.predictions
        predicted = ner.decode(encoded, [np.asarray(l) for l in logits], id2label)
        scores = ner.entity_scores(gold, predicted)
        return {"entity_f1": scores["entity_f1"], "precision": scores["micro"]["precision"],
                "recall": scores["micro"]["recall"]}
    return compute


def run_finetune(params: Params) -> dict:
    from transformers import DataCollatorForTokenClassification

    cfg, paths = params.finetune, params.paths
    modeling.set_threads()
    task, labels = read_labels(paths.ingested)
    if task != "ner":
        raise NotImplementedError(f"finetune for task '{task}' is not built yet (NER only)")
    label2id = {l: i for i, l in enumerate(labels)}
    train_split = read_split(paths.ingested, "train", cfg.max_train_samples)
    dev_split = read_split(paths.ingested, "dev", cfg.max_eval_samples)
    source = modeling.resolve_checkpoint(cfg.checkpoint)
    tokenizer = modeling.load_tokenizer(source)
    model = modeling.load_token_classifier(source, labels)
    encode = lambda split: ner.encode(tokenizer, split["tokens"], split["tags"], label2id,
                                      cfg.max_length, cfg.stride, cfg.label_all_tokens)
    train_encoded, dev_encoded = encode(train_split), encode(dev_split)
    log.info("finetune: %s (%.1fM parameters) on %d train windows, %d dev windows", cfg.checkpoint,
             modeling.parameter_count(model) / 1e6, len(train_encoded.features), len(dev_encoded.features))
    settings = TrainSettings(
        output_dir=str(Path(paths.checkpoints) / _fingerprint(params)), epochs=cfg.epochs,
        batch_size=cfg.batch_size, eval_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, lr_scheduler=cfg.lr_scheduler,
        gradient_accumulation=cfg.gradient_accumulation, patience=cfg.patience, seed=cfg.seed, metric="entity_f1")
    result = train(model, train_encoded.features, dev_encoded.features,
                   DataCollatorForTokenClassification(tokenizer, label_pad_token_id=ner.IGNORE),
                   _metrics_fn(dev_encoded, dev_split["tags"], dict(enumerate(labels))), settings)
    with atomic_dir(paths.model) as staging:
        result.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        atomic_write_json(staging / PIPELINE_FILE, {
            "task": task, "labels": labels, "max_length": cfg.max_length, "stride": cfg.stride,
            "label_all_tokens": cfg.label_all_tokens, "base_checkpoint": cfg.checkpoint})
    shutil.rmtree(settings.output_dir, ignore_errors=True)  # resume state is only for interrupted runs
    reports = Path(paths.reports) / "finetune"
    atomic_write_json(reports / "history.json", result.history)
    metrics = {"dev_entity_f1": round(result.best_metric, 5), "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 1), "parameters": modeling.parameter_count(result.model),
               "resumed": result.resumed_from is not None}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("finetune: best dev entity F1 %.4f after %d epoch(s) in %.0fs", result.best_metric,
             len(result.history), result.seconds)
    return metrics
