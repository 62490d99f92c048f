"""Stage `finetune`: token classification (NER) or sequence classification from the configured
checkpoint on the validated splits, early-stopped on the dev metric; saves safetensors weights,
tokenizer, label map and input settings (pipeline.json)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from tinynlp import efficient, modeling
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.heads import ModelSpec, head_for
from tinynlp.training import TrainSettings, train
from tasks.common import read_labels, read_split

log = logging.getLogger(__name__)
PIPELINE_FILE = "pipeline.json"  # how the saved model expects its inputs (read by evaluate/predict)


def _fingerprint(params: Params) -> str:
    """Checkpoints are resumed only by a run with the same config and the same training data."""
    digest = hashlib.sha256(params.finetune.model_dump_json().encode())
    for path in [Path(params.paths.ingested) / n for n in ("train.parquet", "dev.parquet", "labels.json")] + \
            sorted(Path(params.paths.pretrained).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def save_model(directory: Path, model, tokenizer, spec: ModelSpec, base_checkpoint: str) -> None:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    atomic_write_json(directory / PIPELINE_FILE, {**dataclasses.asdict(spec), "base_checkpoint": base_checkpoint})


def load_spec(model_dir: str) -> ModelSpec:
    raw = json.loads((Path(model_dir) / PIPELINE_FILE).read_text(encoding="utf-8"))
    return ModelSpec(**{f.name: raw[f.name] for f in dataclasses.fields(ModelSpec)})


def _trainable(model, cfg, task: str):
    if cfg.peft == "bitfit":
        model = efficient.apply_bitfit(model)
    elif cfg.peft == "lora":
        model = efficient.apply_lora(model, task, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, list(cfg.lora.target_modules))
    trainable, total = efficient.trainable_parameters(model), modeling.parameter_count(model)
    log.info("trainable parameters: %d of %d (%.2f%%, peft=%s)", trainable, total, 100 * trainable / total, cfg.peft)
    return model


def run_finetune(params: Params) -> dict:
    cfg, paths = params.finetune, params.paths
    modeling.set_threads()
    task, labels = read_labels(paths.ingested)
    head = head_for(task)
    spec = ModelSpec(task, labels, cfg.max_length, cfg.stride, cfg.label_all_tokens)
    train_split = read_split(paths.ingested, "train", cfg.max_train_samples)
    dev_split = read_split(paths.ingested, "dev", cfg.max_eval_samples)
    source = paths.pretrained  # written by the pretrain stage (the base checkpoint when disabled)
    tokenizer = modeling.load_tokenizer(source)
    model = _trainable(modeling.load_classifier(source, labels, head.model_class, seed=cfg.seed), cfg, task)
    trainable = efficient.trainable_parameters(model)
    train_encoded, dev_encoded = head.encode(tokenizer, train_split, spec), head.encode(tokenizer, dev_split, spec)
    log.info("finetune %s: %s (%.1fM parameters), %d train and %d dev examples", task, source,
             modeling.parameter_count(model) / 1e6, len(head.features(train_encoded)), len(head.features(dev_encoded)))

    def dev_metrics(prediction) -> dict:
        scores = head.score(dev_encoded, [np.asarray(l) for l in prediction.predictions], dev_split, spec)
        return {k: v for k, v in scores.items() if isinstance(v, float)}

    settings = TrainSettings(
        output_dir=str(Path(paths.checkpoints) / "finetune" / _fingerprint(params)), epochs=cfg.epochs,
        batch_size=cfg.batch_size, eval_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, lr_scheduler=cfg.lr_scheduler,
        gradient_accumulation=cfg.gradient_accumulation, patience=cfg.patience, seed=cfg.seed, metric=head.metric,
        fgm_epsilon=cfg.fgm_epsilon)
    result = train(model, head.features(train_encoded), head.features(dev_encoded), head.collator(tokenizer),
                   dev_metrics, settings)
    with atomic_dir(paths.model) as staging:
        save_model(staging, efficient.merged(result.model), tokenizer, spec, params.pretrain.checkpoint)
    shutil.rmtree(settings.output_dir, ignore_errors=True)  # resume state is only for interrupted runs
    reports = Path(paths.reports) / "finetune"
    atomic_write_json(reports / "history.json", result.history)
    metrics = {f"dev_{head.metric}": round(result.best_metric, 5), "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 1), "trainable_parameters": trainable,
               "resumed": result.resumed_from is not None}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("finetune: best dev %s %.4f after %d epoch(s) in %.0fs", head.metric, result.best_metric,
             len(result.history), result.seconds)
    return metrics
