"""Stage `distill`: a student with fewer layers (initialised from the fine-tuned teacher's layers)
trained by the one training routine with the distillation loss; teacher logits cached once or
computed on the fly (params)."""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from tasks.augment import augmented_rows
from tinynlp import distill, modeling, pruning
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.inference import TorchRunner, predict_logits
from tinynlp.training import train
from tinynlp.fingerprints import checkpoint_dir
from tinynlp.model_dir import load_model, save_model
from tinynlp.splits import read_split
from tinynlp.training_data import train_settings, training_data

log = logging.getLogger(__name__)


def run_distill(params: Params) -> dict:
    cfg, paths = params.distill, params.paths
    reports = Path(paths.reports) / "distill"
    if not cfg.enabled:
        return _disabled(paths.distilled, reports)
    modeling.set_threads()
    teacher, spec = load_model(paths.model)
    data = training_data(params, spec, modeling.load_tokenizer(paths.model), params.distill.max_train_samples)
    depth = len(teacher.base_model.encoder.layer)
    layer_map = list(cfg.layer_map) or distill.evenly_spaced_layers(depth, cfg.student_layers or max(1, depth // 2),
                                                                    cfg.layer_spread)
    student, shapes = distill.student_from_teacher(teacher, layer_map), None
    if cfg.neurons_fraction or cfg.heads_fraction:  # narrower too: the layers' least important heads and neurons
        shapes = pruning.shrink_least_important(student, data.sample_batches(cfg.importance_samples, cfg.batch_size),
                                                cfg.heads_fraction, cfg.neurons_fraction)
    log.info("distill: %d-layer student from teacher layers %s (%.1fM of %.1fM parameters; %s), teacher logits %s",
             len(layer_map), layer_map, modeling.parameter_count(student) / 1e6,
             modeling.parameter_count(teacher) / 1e6, pruning.describe_widths(pruning.structure_shapes(student)),
             cfg.teacher_logits)
    transfer, transfer_counts = _transfer_features(params, data)
    train_features, cache_seconds = data.train_features + transfer, 0.0
    if cfg.teacher_logits == "cached":
        started = time.monotonic()
        logits = predict_logits(TorchRunner(teacher), train_features, params.evaluate.batch_size,
                                data.tokenizer.pad_token_id)
        train_features, cache_seconds = distill.with_teacher_logits(train_features, logits), time.monotonic() - started
    loss_fn = distill.make_loss_fn(teacher, cfg.alpha, cfg.temperature, spec.task == "ner", cfg.hidden_loss_weight,
                                   layer_map)
    settings = train_settings(cfg, checkpoint_dir(params, "distill", paths.model), data.head.metric, params.execution)
    result = train(student, train_features, data.head.features(data.dev_encoded),
                   distill.padding_teacher_logits(data.head.collator(data.tokenizer)), data.dev_metrics, settings,
                   loss_fn=loss_fn)
    with atomic_dir(paths.distilled) as staging:
        save_model(staging, result.model, data.tokenizer, spec, params.pretrain.checkpoint, shapes)
    shutil.rmtree(settings.output_dir, ignore_errors=True)
    atomic_write_json(reports / "history.json", result.history)
    metrics = {"enabled": True, f"dev_{data.head.metric}": round(result.best_metric, 5),
               "student_layers": len(layer_map), "parameters": modeling.parameter_count(result.model),
               "teacher_parameters": modeling.parameter_count(teacher), "epochs_run": len(result.history),
               "train_seconds": round(result.seconds, 1), "teacher_logits_seconds": round(cache_seconds, 1),
               "resumed": result.resumed_from is not None, "transfer": transfer_counts}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("distill: best dev %s %.4f in %.0fs (+%.0fs caching teacher logits)", data.head.metric,
             result.best_metric, result.seconds, cache_seconds)
    return metrics


def _transfer_features(params: Params, data) -> tuple[list[dict], dict[str, int]]:
    """The transfer set's training features (distill.transfer): augmented copies of the train rows,
    labelled, and sentences of unlabelled text, which only the teacher's targets teach."""
    cfg, spec, head = params.distill.transfer, data.spec, data.head
    ner = spec.task == "ner"
    features: list[dict] = []
    counts = {"augmented": 0, "corpus": 0}
    if cfg.augmented_copies:
        train = read_split(params.paths.ingested, "train")
        new = augmented_rows(params, spec.task, train, copies=cfg.augmented_copies)
        split = ({"tokens": [list(r.tokens) for r in new], "tags": [list(r.tags) for r in new],
                  "document": list(range(len(new)))} if ner  # a copy has no neighbours of its own
                 else {"text": [r.text for r in new], "label": [train["label"][r.source] for r in new]})
        features += head.features(head.encode(data.tokenizer, split, spec))
        counts["augmented"] = len(new)
    if cfg.corpus_texts:
        texts = distill.transfer_texts(params.paths.corpus, cfg.corpus_texts, params.distill.seed, ner)
        split = {"tokens": texts, "document": list(range(len(texts)))} if ner else {"text": texts}
        unlabelled = head.features(head.encode(data.tokenizer, split, spec, with_labels=False))
        features += unlabelled if ner else [{**f, "labels": distill.IGNORE} for f in unlabelled]
        counts["corpus"] = len(texts)
    if features:
        log.info("distill: transfer set of %d augmented copies and %d unlabelled texts (%s)", counts["augmented"],
                 counts["corpus"], params.paths.corpus if counts["corpus"] else "no corpus")
    return features, counts


def _disabled(model_dir: str, reports: Path) -> dict:
    """A disabled stage leaves no stale model behind for evaluate to pick up."""
    shutil.rmtree(model_dir, ignore_errors=True)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(reports / "history.json", [])
    metrics = {"enabled": False}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("distill: disabled in params; no student")
    return metrics
