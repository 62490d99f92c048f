"""The training set-up that every training stage (finetune, prune, distill) shares: the encoded
train and dev splits of one model's tokenizer, and the routine's settings from a params section."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinynlp.config import ExecutionConfig, Params
from tinynlp.heads import Head, ModelSpec, head_for
from tinynlp.splits import read_split, read_training_split
from tinynlp.training import TrainSettings


@dataclass(frozen=True)
class TrainingData:
    """The encoded train and dev splits of one model's tokenizer and input settings."""

    head: Head
    spec: ModelSpec
    tokenizer: Any
    train_features: list[dict]
    dev_encoded: Any
    dev_split: dict

    def dev_metrics(self, prediction) -> dict:
        """compute_metrics for the training routine: the task's scores on the dev split."""
        scores = self.head.score(self.dev_encoded, [np.asarray(l) for l in prediction.predictions], self.dev_split,
                                 self.spec)
        return {k: v for k, v in scores.items() if isinstance(v, float)}

    def sample_batches(self, samples: int, batch_size: int) -> list[dict]:
        """The first `samples` training features, collated in batches (importance scoring)."""
        collate, sample = self.head.collator(self.tokenizer), self.train_features[:samples]
        return [collate(sample[i:i + batch_size]) for i in range(0, len(sample), batch_size)]


def training_data(params: Params, spec: ModelSpec, tokenizer, max_train_samples: int = 0,
                  train_split: dict | None = None) -> TrainingData:
    """`max_train_samples` > 0 caps the training rows (compression stages on big corpora);
    otherwise finetune's own limit applies. `train_split`: the training rows, if the caller has
    read them already."""
    cfg = params.finetune
    head = head_for(spec.task)
    if train_split is None:
        train_split = read_training_split(params.paths.augmented, max_train_samples or cfg.max_train_samples)
    dev_split = read_split(params.paths.ingested, "dev", cfg.max_eval_samples)
    return TrainingData(head, spec, tokenizer, head.features(head.encode(tokenizer, train_split, spec)),
                        head.encode(tokenizer, dev_split, spec), dev_split)


def train_settings(cfg, output_dir: Path, metric: str, execution: ExecutionConfig, **overrides) -> TrainSettings:
    """TrainSettings from a params section holding the shared optimiser fields (`overrides` for
    those a section does not have) and the `execution` section's device and precision."""
    fields = ("epochs", "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "lr_scheduler",
              "gradient_accumulation", "patience", "seed", "batch_order", "layer_lr_decay", "head_lr_scale",
              "ema_decay")
    # a section without a field (pretrain has no batch_order) gets TrainSettings' default
    values = {name: getattr(cfg, name) for name in fields if name not in overrides and hasattr(cfg, name)}
    return TrainSettings(output_dir=str(output_dir), eval_batch_size=cfg.batch_size, metric=metric,
                         device=execution.device, precision=execution.precision, **{**values, **overrides})
