"""Stage `prune`: two pruned variants of the fine-tuned model, each recovered by the one training
routine. Unstructured: global magnitude pruning on a cubic schedule, recovery epochs after every
step, masks made permanent. Structured: the least important attention heads and FFN neurons
removed (matrices physically shrink, so dense CPU kernels get faster), then recovery."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tinynlp import modeling, ner, pruning
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.training import train
from tinynlp.fingerprints import checkpoint_dir
from tinynlp.model_dir import load_model, save_model
from tinynlp.training_data import TrainingData, train_settings, training_data

log = logging.getLogger(__name__)
VARIANTS = ("unstructured", "structured")


def _recover(model, data: TrainingData, params: Params, output_dir: Path):
    """Recovery fine-tuning: the same routine and dev metric as finetune. Its checkpoints stay in
    `output_dir` until it ends, so a killed run resumes this recovery (the finished ones are recomputed)."""
    settings = train_settings(params.prune, output_dir, data.head.metric, params.execution,
                              shape_dropout=ner.shape_dropout_of(model.config))
    result = train(model, data.train_features, data.head.features(data.dev_encoded), data.head.collator(data.tokenizer),
                   data.dev_metrics, settings)
    shutil.rmtree(output_dir, ignore_errors=True)
    return result


def prune_unstructured(params: Params, data: TrainingData, scratch: Path) -> tuple[object, dict]:
    model, _ = load_model(params.paths.model)
    cfg = params.prune.unstructured
    history, resumed = [], False
    for step, sparsity in enumerate(pruning.sparsity_schedule(cfg.target_sparsity, cfg.steps), start=1):
        pruning.apply_global_magnitude(model, sparsity)
        log.info("prune (unstructured) step %d/%d: sparsity %.3f, recovering", step, cfg.steps, sparsity)
        result = _recover(model, data, params, scratch / f"unstructured-{step}")
        resumed = resumed or result.resumed_from is not None
        # dev_score: the task-neutral name the dvc.yaml plot reads (as in the finetune/distill histories)
        history.append({"step": step, "target_sparsity": round(sparsity, 4),
                        f"dev_{data.head.metric}": round(result.best_metric, 5), "dev_score": round(result.best_metric, 5),
                        "seconds": round(result.seconds, 1)})
    pruning.make_permanent(model)
    report = pruning.sparsity_report(model)
    return model, {"sparsity": round(report["sparsity"], 4), "model_sparsity": round(report["model_sparsity"], 4),
                   f"dev_{data.head.metric}": history[-1][f"dev_{data.head.metric}"], "resumed": resumed,
                   "steps": history}


def prune_structured(params: Params, data: TrainingData, scratch: Path) -> tuple[object, dict]:
    model, _ = load_model(params.paths.model)
    cfg = params.prune.structured
    before = modeling.parameter_count(model)
    shapes = pruning.shrink_least_important(model, data.sample_batches(cfg.importance_samples, params.prune.batch_size),
                                            cfg.heads_fraction, cfg.neurons_fraction, cfg.importance)
    log.info("prune (structured): %d -> %d parameters; %s, recovering", before, modeling.parameter_count(model),
             pruning.describe_widths(shapes))
    result = _recover(model, data, params, scratch / "structured")
    return model, {"parameters_before": before, "parameters": modeling.parameter_count(model),
                   f"dev_{data.head.metric}": round(result.best_metric, 5), "shapes": shapes,
                   "seconds": round(result.seconds, 1), "resumed": result.resumed_from is not None}


def run_prune(params: Params) -> dict:
    paths = params.paths
    modeling.set_threads()
    spec = load_model(paths.model)[1]
    data = training_data(params, spec, modeling.load_tokenizer(paths.model), params.prune.max_train_samples)
    scratch = checkpoint_dir(params, "prune", paths.model)
    enabled = {"unstructured": params.prune.unstructured.enabled, "structured": params.prune.structured.enabled}
    metrics, models = {}, {}
    for variant in VARIANTS:  # trained first: a run killed while training leaves no staging folder behind
        if enabled[variant]:
            models[variant], metrics[variant] = (prune_unstructured if variant == "unstructured" else
                                                 prune_structured)(params, data, scratch)
    with atomic_dir(paths.pruned) as staging:  # both variants or neither: evaluate never sees a half-written pair
        for variant, model in models.items():
            shapes = metrics[variant].pop("shapes", None)
            save_model(staging / variant, model, data.tokenizer, spec, params.pretrain.checkpoint, shapes)
    reports = Path(paths.reports) / "prune"
    atomic_write_json(reports / "history.json", metrics.get("unstructured", {}).pop("steps", []))
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("prune: %s", {v: {k: m[k] for k in m if k.startswith(("dev_", "sparsity", "parameters"))}
                           for v, m in metrics.items()})
    return metrics
