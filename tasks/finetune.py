"""Stage `finetune`: token classification (NER) or sequence classification from the configured
checkpoint on the validated splits, early-stopped on the dev metric; saves safetensors weights,
tokenizer, label map and input settings (pipeline.json)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tinynlp import efficient, modeling
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.heads import ModelSpec
from tinynlp.training import train
from tinynlp.fingerprints import checkpoint_dir
from tinynlp.model_dir import save_model
from tinynlp.splits import read_labels
from tinynlp.training_data import train_settings, training_data

log = logging.getLogger(__name__)


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
    spec = ModelSpec(task, labels, cfg.max_length, cfg.stride, cfg.label_all_tokens)
    source = paths.pretrained  # written by the pretrain stage (the base checkpoint when disabled)
    data = training_data(params, spec, modeling.load_tokenizer(source))
    model = _trainable(modeling.load_classifier(source, labels, data.head.model_class, seed=cfg.seed), cfg, task)
    trainable = efficient.trainable_parameters(model)
    log.info("finetune %s: %s (%.1fM parameters), %d train and %d dev examples", task, source,
             modeling.parameter_count(model) / 1e6, len(data.train_features), len(data.head.features(data.dev_encoded)))
    settings = train_settings(cfg, checkpoint_dir(params, "finetune", paths.pretrained), data.head.metric,
                              params.execution, fgm_epsilon=cfg.fgm_epsilon)
    result = train(model, data.train_features, data.head.features(data.dev_encoded), data.head.collator(data.tokenizer),
                   data.dev_metrics, settings)
    with atomic_dir(paths.model) as staging:
        save_model(staging, efficient.merged(result.model), data.tokenizer, spec, params.pretrain.checkpoint)
    shutil.rmtree(settings.output_dir, ignore_errors=True)  # resume state is only for interrupted runs
    reports = Path(paths.reports) / "finetune"
    atomic_write_json(reports / "history.json", result.history)
    metrics = {f"dev_{data.head.metric}": round(result.best_metric, 5), "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 1), "trainable_parameters": trainable,
               "resumed": result.resumed_from is not None, "world_size": result.world_size}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("finetune: best dev %s %.4f after %d epoch(s) in %.0fs", data.head.metric, result.best_metric,
             len(result.history), result.seconds)
    return metrics
