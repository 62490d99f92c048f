"""Stage `finetune`: token classification (NER) or sequence classification from the configured
checkpoint on the validated splits, early-stopped on the dev metric; saves safetensors weights,
tokenizer, label map and input settings (pipeline.json)."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from tinynlp import efficient, modeling, ner, privacy
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.heads import ModelSpec, context_kind, head_for
from tinynlp.training import train
from tinynlp.fingerprints import checkpoint_dir
from tinynlp.model_dir import save_model
from tinynlp.splits import read_labels, read_training_split
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
    decoding = "viterbi" if task == "ner" and cfg.decoding != "argmax" else "argmax"
    source = paths.pretrained  # written by the pretrain stage (the base checkpoint when disabled)
    tokenizer = modeling.load_tokenizer(source)
    model = modeling.load_classifier(source, labels, head_for(task).model_class, seed=cfg.seed)
    casing = reported = ner.casing_for(cfg.casing, task, model)
    spec = ModelSpec(task, labels, cfg.max_length, cfg.stride, cfg.label_all_tokens, decoding, casing,
                     cfg.context.tokens, cfg.context.fallback)
    if casing == "markers" and not ner.add_case_markers(tokenizer, model):
        reported = "markers (redundant: the tokenizer keeps case)"
        log.warning("finetune.casing: markers with %s, whose tokenizer keeps case already: the markers add "
                    "length and no information", source)
    if casing == "shape":
        ner.add_shape_embeddings(model)
        model.config.shape_dropout = cfg.shape_dropout  # saved with the model: prune's recovery keeps it
        if not ner.loses_case(tokenizer):
            reported = "shape (the tokenizer keeps case too)"
            log.warning("finetune.casing: shape with %s, whose tokenizer keeps case already: the shapes repeat "
                        "what the subwords show", source)
    if cfg.casing == "auto":
        log.info("finetune.casing: auto -> %s", casing)
    train_split = read_training_split(paths.augmented, cfg.max_train_samples)
    context = context_kind(train_split, spec)
    if cfg.context.tokens:
        log.info("finetune: document context of %d subwords a side, from %s%s", cfg.context.tokens, context,
                 "" if context.startswith("documents") else
                 " (no -DOCSTART- boundaries in the train split: finetune.context.fallback)")
        if context == "none":  # the model never sees context: evaluate, predict and serve must not add it
            spec = dataclasses.replace(spec, context=0)
    data = training_data(params, spec, tokenizer, train_split=train_split)
    private_part = privacy.freeze_for_private_training(model, cfg.dp.top_layers) if cfg.dp.enabled else None
    if private_part:
        log.info("DP-SGD trains %s", private_part)
    model = _trainable(model, cfg, task)
    if casing == "shape" and cfg.peft != "none":  # PEFT freezes embeddings; the shape rows must still learn
        ner.shape_embeddings(model).weight.requires_grad_(True)
    trainable = efficient.trainable_parameters(model)
    log.info("finetune %s: %s (%.1fM parameters), %d train and %d dev examples", task, source,
             modeling.parameter_count(model) / 1e6, len(data.train_features), len(data.head.features(data.dev_encoded)))
    dp = privacy.DpSettings(cfg.dp.epsilon, cfg.dp.delta, cfg.dp.max_grad_norm) if cfg.dp.enabled else None
    settings = train_settings(cfg, checkpoint_dir(params, "finetune", paths.pretrained), data.head.metric,
                              params.execution, fgm_epsilon=cfg.fgm_epsilon, dp=dp,
                              shape_dropout=cfg.shape_dropout if casing == "shape" else 0.0)
    if cfg.shape_dropout and casing != "shape":
        log.warning("finetune.shape_dropout: %s ignored: casing auto resolved to none (%s has no token-type "
                    "embeddings), so there are no shapes to hide", cfg.shape_dropout, source)
    result = train(model, data.train_features, data.head.features(data.dev_encoded), data.head.collator(data.tokenizer),
                   data.dev_metrics, settings)
    with atomic_dir(paths.model) as staging:
        save_model(staging, efficient.merged(result.model), data.tokenizer, spec, params.pretrain.checkpoint)
        if result.privacy:  # the guarantee travels with the weights (evaluate, the card)
            atomic_write_json(staging / privacy.GUARANTEE_FILE, {**result.privacy, "trained": private_part})
    shutil.rmtree(settings.output_dir, ignore_errors=True)  # resume state is only for interrupted runs
    reports = Path(paths.reports) / "finetune"
    atomic_write_json(reports / "history.json", result.history)
    metrics = {f"dev_{data.head.metric}": round(result.best_metric, 5), "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 1), "trainable_parameters": trainable,
               "resumed": result.resumed_from is not None, "world_size": result.world_size, "casing": reported,
               "shape_dropout": settings.shape_dropout, "context": context}
    if result.privacy:  # ε actually spent (the accountant's), for the gate's table and the model card
        metrics["dp"] = {k: v for k, v in result.privacy.items() if k != "accountant"}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("finetune: best dev %s %.4f after %d epoch(s) in %.0fs", data.head.metric, result.best_metric,
             len(result.history), result.seconds)
    return metrics
