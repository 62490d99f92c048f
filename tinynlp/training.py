"""The one training routine. Fine-tuning (and later pruning recovery, distillation) differ only
by the loss and callbacks passed in. Seeded once, CPU-friendly, resumable, with progress + ETA."""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    output_dir: str          # scratch checkpoints (resumable), not the final artifact
    epochs: int
    batch_size: int
    eval_batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    lr_scheduler: str
    gradient_accumulation: int
    patience: int
    seed: int
    metric: str              # dev metric for early stopping and best-checkpoint choice
    greater_is_better: bool = True   # False for losses (MLM)
    eval_on_start: bool = False      # a "before" point for the curve (MLM perplexity)
    fgm_epsilon: float = 0.0         # > 0: FGM adversarial training on the input embeddings


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict]      # one row per epoch: train_loss, dev metric(s)
    best_metric: float
    resumed_from: str | None
    seconds: float
    tokens_seen: int         # non-padding input tokens trained on


def _progress_callback():
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        """Progress with ETA through logging, so it reads well in dvc repro, CI and Prefect logs."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.start_step = time.monotonic(), state.global_step
            self.every = max(1, state.max_steps // 20)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % self.every and state.global_step != state.max_steps:
                return
            done = state.global_step - self.start_step
            rate = done / max(time.monotonic() - self.start, 1e-9)
            eta = (state.max_steps - state.global_step) / rate if rate else math.inf
            tokens = state.num_input_tokens_seen / max(time.monotonic() - self.start, 1e-9)
            log.info("train step %d/%d (%.0f%%), epoch %.2f, %.2f steps/s, %.0f tokens/s, ETA %s", state.global_step,
                     state.max_steps, 100 * state.global_step / state.max_steps, state.epoch or 0, rate, tokens,
                     _clock(eta))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            shown = {k.removeprefix("eval_"): round(v, 4) for k, v in (metrics or {}).items()
                     if isinstance(v, float) and not k.endswith(("runtime", "per_second"))}
            log.info("dev after epoch %.2f: %s", state.epoch or 0, shown)

    return LogProgress()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def train(model, train_features, eval_features, collator, compute_metrics: Callable | None, settings: TrainSettings, loss_fn: Callable | None = None,
          callbacks: Sequence = ()) -> TrainResult:
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(settings.seed)
    interactive = sys.stderr.isatty()
    args = TrainingArguments(
        output_dir=settings.output_dir, num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio, lr_scheduler_type=settings.lr_scheduler,
        gradient_accumulation_steps=settings.gradient_accumulation,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=settings.metric,
        greater_is_better=settings.greater_is_better, eval_on_start=settings.eval_on_start,
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="group_by_length", length_column_name="length",
        seed=settings.seed, data_seed=settings.seed, use_cpu=True, report_to="none",
        disable_tqdm=not interactive, dataloader_num_workers=0, save_only_model=False,
        remove_unused_columns=False,  # the MLM collator needs offsets/special-token masks
        prediction_loss_only=compute_metrics is None)
    trainer = _trainer_class(loss_fn, settings.fgm_epsilon)(model=model, args=args, train_dataset=_with_lengths(train_features),
                            eval_dataset=_with_lengths(eval_features), data_collator=_without_length(collator),
                            compute_metrics=compute_metrics,
                            callbacks=[EarlyStoppingCallback(settings.patience), _progress_callback(), *callbacks])
    trainer.remove_callback(PrinterCallback)  # its raw dicts duplicate our log lines
    if not interactive:
        trainer.remove_callback(ProgressCallback)
    last = get_last_checkpoint(settings.output_dir) if Path(settings.output_dir).is_dir() else None
    if last:
        log.info("resuming from checkpoint %s", last)
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=last)
    history = _epoch_history(trainer.state.log_history, settings.metric)
    best = trainer.state.best_metric if trainer.state.best_metric is not None else math.nan
    return TrainResult(trainer.model, history, float(best), last, time.monotonic() - started,
                       int(trainer.state.num_input_tokens_seen))


def _with_lengths(features):
    """group_by_length batches sentences of similar length: less padding, faster CPU steps."""
    from datasets import Dataset

    if isinstance(features, Dataset):
        return features.map(lambda b: {"length": [len(ids) for ids in b["input_ids"]]}, batched=True, desc="lengths")
    return Dataset.from_list([{**f, "length": len(f["input_ids"])} for f in features])


def _without_length(collator: Callable) -> Callable:
    """The length column is for the sampler only; the model never sees it."""
    return lambda features: collator([{k: v for k, v in f.items() if k != "length"} for f in features])


def _trainer_class(loss_fn: Callable | None, fgm_epsilon: float):
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    from tinynlp.efficient import FGM

    class PipelineTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if fgm_epsilon > 0:
                fgm = FGM(model, fgm_epsilon)
                if fgm.attack():
                    try:  # gradients of the adversarial loss add to the clean ones
                        super().training_step(model, inputs, num_items_in_batch)
                    finally:
                        fgm.restore()
            return loss

        def _get_eval_sampler(self, eval_dataset):
            # The Trainer length-groups eval batches too; metrics map predictions back to
            # sentences by position, so evaluation must keep dataset order.
            return SequentialSampler(eval_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            if loss_fn is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
            loss, outputs = loss_fn(model, inputs)
            return (loss, outputs) if return_outputs else loss

    return PipelineTrainer


def _epoch_history(log_history: list[dict], metric: str) -> list[dict]:
    by_epoch: dict[float, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        row = by_epoch.setdefault(round(entry["epoch"], 2), {"epoch": round(entry["epoch"], 2)})
        if "loss" in entry:
            row["train_loss"] = round(float(entry["loss"]), 5)
        for key, value in entry.items():
            if key.startswith("eval_") and isinstance(value, (int, float)) and not key.endswith(("runtime", "per_second")):
                row["dev_" + key.removeprefix("eval_")] = round(float(value), 5)
        if "dev_" + metric in row:  # one column name whatever the task, for plots across tasks
            row["dev_score"] = row["dev_" + metric]
    return [by_epoch[k] for k in sorted(by_epoch)]
