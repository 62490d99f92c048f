"""The one training routine. Fine-tuning (and later pruning recovery, distillation) differ only
by the loss and callbacks passed in. Seeded once, CPU-friendly, resumable, with progress + ETA.
Under torchrun / accelerate launch it trains data-parallel (DDP): `batch_size` stays the global
batch, each process takes an equal share of it, and the data order is the single-process one."""
from __future__ import annotations

import logging
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from tinynlp import distributed, ner, privacy, progress

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
    device: str = "cpu"              # cpu | cuda | auto (execution.device)
    precision: str = "fp32"          # fp32 | fp16 | bf16 (execution.precision)
    batch_order: str = "length_grouped"  # length_grouped | random
    dp: privacy.DpSettings | None = None  # DP-SGD (Opacus): Poisson batches, clipped and noised gradients
    shape_dropout: float = 0.0       # > 0: share of sentences trained with their word shapes hidden
    layer_lr_decay: float = 1.0      # < 1: each encoder layer below the top learns at this times the one above
    head_lr_scale: float = 1.0       # the task head's (and pooler's) learning rate, as a multiple of the top layer's
    ema_decay: float = 0.0           # > 0: evaluate and keep an exponential moving average of the weights


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict]      # one row per epoch: train_loss, dev metric(s)
    best_metric: float
    resumed_from: str | None
    seconds: float
    tokens_seen: int         # non-padding input tokens trained on
    world_size: int = 1      # processes that trained together (torchrun / accelerate launch)
    privacy: dict | None = None  # DP-SGD: ε spent, δ, noise multiplier, steps (privacy.summary)


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
                     progress.clock(eta))
            progress.report("training", 100 * state.global_step / state.max_steps,
                            f"step {state.global_step}/{state.max_steps}, epoch {state.epoch or 0:.2f}, ETA {progress.clock(eta)}")

        def on_train_end(self, args, state, control, **kwargs):
            # early stopping ends before max_steps: the run is still done
            progress.report("training", 100.0, f"done at step {state.global_step}/{state.max_steps}")

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            shown = {k.removeprefix("eval_"): round(v, 4) for k, v in (metrics or {}).items()
                     if isinstance(v, float) and not k.endswith(("runtime", "per_second"))}
            log.info("dev after epoch %.2f: %s", state.epoch or 0, shown)

    return LogProgress()


def weight_average(decay: float):
    """A Trainer callback keeping an exponential moving average of the trainable weights (Polyak
    averaging), updated after every optimiser step. At each epoch's end the average takes the
    weights' place, so evaluation, the checkpoint and the best model kept are the average; the
    trained weights come back before the next step, so training runs as it would without it. Each
    update's weight is bias-corrected ((1 - decay) / (1 - decay ** n) at update n, as Adam corrects
    its moments), so the average covers about the last 1 / (1 - decay) steps from the first epoch on,
    fewer at the start, and is never held at the checkpoint's weights."""
    from transformers import TrainerCallback

    def trainable(model) -> dict[str, torch.Tensor]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    class WeightAverage(TrainerCallback):
        def __init__(self):
            self.average: dict[str, torch.Tensor] = {}
            self.trained: dict[str, torch.Tensor] | None = None
            self.updates = 0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            # a resumed run starts the average from the checkpoint, itself an average
            self.average = {name: p.detach().clone() for name, p in trainable(model).items()}
            self.trained, self.updates = None, 0

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if self.trained is not None:
                with torch.no_grad():
                    for name, p in trainable(model).items():
                        p.copy_(self.trained[name])
                self.trained = None

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.updates += 1
            weight = (1 - decay) / (1 - decay ** self.updates)
            with torch.no_grad():
                for name, p in trainable(model).items():
                    self.average[name].lerp_(p.detach(), weight)

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                current = trainable(model)
                self.trained = {name: p.detach().clone() for name, p in current.items()}
                for name, p in current.items():
                    p.copy_(self.average[name])

    return WeightAverage()


def train(model, train_features, eval_features, collator, compute_metrics: Callable | None, settings: TrainSettings, loss_fn: Callable | None = None,
          callbacks: Sequence = ()) -> TrainResult:
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    device = distributed.resolve_device(settings.device, settings.precision)
    per_device = distributed.per_replica_batch(settings.batch_size, distributed.replicas(device))
    world = distributed.world_size()
    if world > 1:
        log.info("data-parallel training on %d processes (%s, %s, %s): %d examples per process and step, global "
                 "batch %d", world, device, distributed.backend(device), settings.precision, per_device,
                 settings.batch_size * settings.gradient_accumulation)
    set_seed(settings.seed)
    dp_plan = _private_plan(model, train_features, settings, world)
    interactive = sys.stderr.isatty() and distributed.is_main()
    args = TrainingArguments(
        output_dir=settings.output_dir, num_train_epochs=settings.epochs,
        per_device_train_batch_size=per_device, per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
        max_grad_norm=0.0 if dp_plan else 1.0,  # DP-SGD clips each example's gradient instead
        warmup_steps=settings.warmup_ratio, lr_scheduler_type=settings.lr_scheduler,
        gradient_accumulation_steps=settings.gradient_accumulation,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=settings.metric,
        greater_is_better=settings.greater_is_better, eval_on_start=settings.eval_on_start,
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="group_by_length", length_column_name="length",
        seed=settings.seed, data_seed=settings.seed, report_to="none",
        use_cpu=device == "cpu", fp16=settings.precision == "fp16", bf16=settings.precision == "bf16",
        ddp_backend=distributed.backend(device) if world > 1 else None,
        average_tokens_across_devices=True,  # the loss divides by the job's token count (PipelineTrainer)
        disable_tqdm=not interactive, dataloader_num_workers=0, save_only_model=False,
        remove_unused_columns=False,  # the MLM collator needs offsets/special-token masks
        prediction_loss_only=compute_metrics is None)
    trainer = _trainer_class(loss_fn, settings.fgm_epsilon, settings.batch_size,
                             settings.batch_order == "length_grouped", settings.dp, dp_plan,
                             (settings.layer_lr_decay, settings.head_lr_scale))(model=model, args=args, train_dataset=_with_lengths(train_features),
                            eval_dataset=_with_lengths(eval_features), data_collator=_without_length(collator),
                            compute_metrics=compute_metrics,
                            callbacks=[EarlyStoppingCallback(settings.patience), _progress_callback(),
                                       *([weight_average(settings.ema_decay)] if settings.ema_decay else []),
                                       *callbacks])
    trainer.remove_callback(PrinterCallback)  # its raw dicts duplicate our log lines
    if not interactive:
        trainer.remove_callback(ProgressCallback)
    last = last_complete_checkpoint(settings.output_dir)
    if last and dp_plan:
        # the accountant's steps are not in the checkpoint: a restart keeps the accounting whole
        log.warning("DP-SGD does not resume: checkpoints in %s removed, training starts over", settings.output_dir)
        shutil.rmtree(settings.output_dir, ignore_errors=True)
        last = None
    if last:
        log.info("resuming from checkpoint %s", last)
    started = time.monotonic()
    try:
        with ner.hidden_shapes(model, settings.shape_dropout):
            trainer.train(resume_from_checkpoint=last)
    finally:
        if dp_plan:
            trainer.per_example_hooks.cleanup()  # the saved model carries no Opacus hooks or attributes
    distributed.barrier()  # every rank has loaded the best checkpoint before any caller deletes them
    history = _epoch_history(trainer.state.log_history, settings.metric)
    best = trainer.state.best_metric if trainer.state.best_metric is not None else math.nan
    spent = privacy.summary(settings.dp, dp_plan, trainer.state.global_step) if dp_plan else None
    if spent:
        log.info("DP-SGD spent epsilon %.3f of %.3f (delta %g) in %d of %d planned steps", spent["epsilon"],
                 settings.dp.epsilon, settings.dp.delta, spent["steps"], spent["planned_steps"])
    return TrainResult(trainer.model, history, float(best), last, time.monotonic() - started,
                       int(trainer.state.num_input_tokens_seen), world, spent)


def _private_plan(model, train_features, settings: TrainSettings, world: int) -> privacy.DpPlan | None:
    if settings.dp is None:
        return None
    if world > 1:
        raise ValueError("finetune.dp.enabled trains in one process: per-example clipping and the accountant "
                         "are not set up for data-parallel runs")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("DP-SGD has no parameter to train")
    dp_plan = privacy.plan(settings.dp, len(train_features), settings.batch_size, settings.epochs)
    log.info("DP-SGD: epsilon %g, delta %g, clip %g; Poisson sampling rate %.4g, %d planned steps, noise "
             "multiplier %.3f", settings.dp.epsilon, settings.dp.delta, settings.dp.max_grad_norm,
             dp_plan.sample_rate, dp_plan.planned_steps, dp_plan.noise_multiplier)
    return dp_plan


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint the Trainer finished saving. It writes trainer_state.json after the
    weights, optimiser and RNG state, so a kill during a save leaves a checkpoint without it, which
    cannot be resumed: that one is removed (by rank 0) and the one before it is used."""
    directory = Path(output_dir)
    steps = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in directory.glob("checkpoint-*")
                   if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()) if directory.is_dir() else []
    for _, checkpoint in reversed(steps):
        if _readable_json(checkpoint / "trainer_state.json"):
            return str(checkpoint)
        if distributed.is_main():
            log.warning("checkpoint %s was interrupted while saving: removed, resuming from the one before",
                        checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def _readable_json(path: Path) -> bool:
    import json

    try:
        json.loads(path.read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):  # missing, or cut short mid-write
        return False


def _with_lengths(features):
    """group_by_length batches sentences of similar length: less padding, faster CPU steps."""
    from datasets import Dataset

    if isinstance(features, Dataset):
        return features.map(lambda b: {"length": [len(ids) for ids in b["input_ids"]]}, batched=True, desc="lengths")
    return Dataset.from_list([{**f, "length": len(f["input_ids"])} for f in features])


def _without_length(collator: Callable) -> Callable:
    """The length column is for the sampler only; the model never sees it."""
    return lambda features: collator([{k: v for k, v in f.items() if k != "length"} for f in features])


class _EpochSampler(torch.utils.data.Sampler):
    """The training order of an epoch, drawn from a generator seeded by (seed, epoch): HF's
    length-grouped order over the global batch, or a plain shuffle. HF's own sampler draws from the
    global torch RNG, which drifts apart between DDP ranks (dropout consumes it per shard), and
    groups by the per-process batch; this one gives every rank the same order, the order of a
    single-process run, and the same order again on resume."""

    def __init__(self, lengths: Sequence[int], global_batch: int, seed: int, grouped: bool = True):
        self.lengths, self.global_batch, self.seed, self.epoch = list(lengths), global_batch, seed, 0
        self.grouped = grouped

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it (through accelerate) every epoch
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self.grouped:
            return iter(torch.randperm(len(self.lengths), generator=generator).tolist())
        return iter(get_length_grouped_indices(self.lengths, self.global_batch, generator=generator))


_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_depth(name: str, layers: int) -> int:
    """Where a parameter sits in the stack: 0 for the embeddings, i + 1 for encoder layer i,
    `layers` + 1 for everything above the encoder (the task head, a pooler)."""
    found = _LAYER_INDEX.search(name)
    if found:
        return min(int(found.group(1)) + 1, layers)
    return 0 if "embed" in name else layers + 1


def layerwise_lr_groups(named_parameters, decay_names: set[str], weight_decay: float, learning_rate: float,
                        layers: int, layer_decay: float, head_scale: float) -> list[dict]:
    """Optimiser parameter groups with layer-wise learning-rate decay (ULMFiT's discriminative
    rates; ELECTRA's and DeBERTa's fine-tuning recipe): the top encoder layer learns at
    `learning_rate`, each one below at `layer_decay` times the one above (the embeddings one step
    lower still), and the head at `head_scale` times the top layer's. The schedule scales each
    group's rate alike."""
    groups: dict[tuple[float, float], list] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        depth = layer_depth(name, layers)
        scale = head_scale if depth > layers else layer_decay ** (layers - depth)
        decay = weight_decay if name in decay_names else 0.0
        groups.setdefault((learning_rate * scale, decay), []).append(parameter)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


def _empty_batch() -> dict:
    """What a Poisson step that drew no example trains on: DP-SGD still adds its noise."""
    return {"input_ids": torch.zeros((0, 1), dtype=torch.long), "attention_mask": torch.zeros((0, 1), dtype=torch.long),
            "labels": torch.zeros((0,), dtype=torch.long)}


def _trainer_class(loss_fn: Callable | None, fgm_epsilon: float, global_batch: int, grouped: bool,
                   dp: privacy.DpSettings | None = None, dp_plan: privacy.DpPlan | None = None,
                   lr_scales: tuple[float, float] = (1.0, 1.0)):
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, SequentialSampler
    from transformers import Trainer

    from tinynlp.efficient import FGM

    class PipelineTrainer(Trainer):
        # A custom loss is a per-batch mean: the Trainer divides it by the accumulation steps. The
        # default loss below is already normalised over the whole step (None: the Trainer decides).
        loss_is_scaled_for_ga = None if loss_fn is None else False

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if dp_plan:
                from opacus.grad_sample import GradSampleHooks

                # per-example gradients through hooks, the model itself unwrapped (saving, loading
                # the best checkpoint and the metrics see the plain Hugging Face model)
                self.per_example_hooks = GradSampleHooks(self.model, loss_reduction="mean")

        def get_train_dataloader(self):
            if not dp_plan:
                return super().get_train_dataloader()
            collate = self.data_collator
            return DataLoader(self.train_dataset, num_workers=0,
                              batch_sampler=privacy.poisson_batches(len(self.train_dataset), dp_plan.sample_rate,
                                                                    self.args.data_seed),
                              collate_fn=lambda features: collate(features) if features else _empty_batch())

        def create_optimizer(self, model=None):
            if self.optimizer is None and lr_scales != (1.0, 1.0):
                opt_model = self.model if model is None else model
                layers = getattr(getattr(opt_model, "config", None), "num_hidden_layers", None) or 1
                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                self.optimizer = optimizer_cls(layerwise_lr_groups(
                    opt_model.named_parameters(), set(self.get_decay_parameter_names(opt_model)),
                    self.args.weight_decay, self.args.learning_rate, layers, *lr_scales), **kwargs)
            optimizer = super().create_optimizer(model)
            if dp_plan:
                from opacus.optimizers import DPOptimizer

                if not isinstance(optimizer, DPOptimizer):
                    self.optimizer = DPOptimizer(
                        optimizer, noise_multiplier=dp_plan.noise_multiplier, max_grad_norm=dp.max_grad_norm,
                        expected_batch_size=max(1, round(dp_plan.sample_rate * len(self.train_dataset))),
                        generator=torch.Generator().manual_seed(self.args.seed))
            return self.optimizer

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return _EpochSampler(dataset["length"], global_batch * self.args.gradient_accumulation_steps,
                                 self.args.data_seed, grouped)

        def training_step(self, model, inputs, num_items_in_batch=None):
            if dp_plan:
                self.optimizer.zero_grad(set_to_none=True)  # the last step's per-example gradients too
                if inputs["input_ids"].shape[0] == 0:  # an empty Poisson batch: the step is noise alone
                    for parameter in model.parameters():
                        if parameter.requires_grad:
                            parameter.grad_sample = parameter.new_zeros((0, *parameter.shape))
                    return torch.zeros(())
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

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None, **kwargs):
            if loss_fn is not None:
                loss, outputs = loss_fn(model, inputs)
                return (loss, outputs) if return_outputs else loss
            labels = inputs.get("labels")
            if dp_plan and model.training:
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
                loss = privacy.per_example_loss(outputs["logits"], labels.to(outputs["logits"].device))
                return (loss, outputs) if return_outputs else loss
            if not model.training or num_items_in_batch is None or labels is None or labels.is_floating_point():
                # the model's own per-batch mean; in evaluation without the step's token count, or
                # the Trainer would multiply it by the process count
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch if model.training else None,
                                            **kwargs)
            # Cross-entropy summed over this process's labelled tokens (or sentences), divided by the
            # count over the whole step: all processes and accumulated batches (the Trainer gathers
            # it). DDP averages gradients over processes, hence the factor: the gradient is that of
            # the single-process mean loss, whatever the split. (BERT heads ignore num_items_in_batch
            # and return a per-batch mean, which the Trainer would still multiply by the process count.)
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            logits = outputs["logits"]
            summed = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1).to(logits.device),
                                     ignore_index=-100, reduction="sum")
            loss = summed / num_items_in_batch * self.accelerator.num_processes
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
