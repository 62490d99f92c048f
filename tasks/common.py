"""Helpers the stages share: the validated splits and label set, the training set-up every
training stage (finetune, prune, distill) uses, and saving/loading a stage's model directory."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tinynlp import modeling
from tinynlp.atomic import atomic_write_json
from tinynlp.config import ExecutionConfig, Params
from tinynlp.heads import Head, ModelSpec, head_for
from tinynlp.training import TrainSettings

log = logging.getLogger(__name__)
PIPELINE_FILE = "pipeline.json"  # how the saved model expects its inputs (read by evaluate/predict)


def stage_models(params: Params) -> dict[str, Path]:
    """The PyTorch model directory each training stage writes, by variant name, in report order."""
    paths = params.paths
    return {"finetune": Path(paths.model), "prune_unstructured": Path(paths.pruned) / "unstructured",
            "prune_structured": Path(paths.pruned) / "structured", "distill": Path(paths.distilled)}


def read_labels(ingested_dir: str) -> tuple[str, list[str]]:
    meta = json.loads((Path(ingested_dir) / "labels.json").read_text(encoding="utf-8"))
    return meta["task"], list(meta["labels"])


def read_split(ingested_dir: str, split: str, limit: int = 0) -> dict[str, list]:
    """A validated split as columns; `limit` > 0 keeps the first rows (quick runs)."""
    table = pq.read_table(Path(ingested_dir) / f"{split}.parquet")
    if limit:
        table = table.slice(0, limit)
    return table.to_pydict()


def read_training_split(augmented_dir: str, limit: int = 0) -> dict[str, list]:
    """The augment stage's train split: the validated rows, each followed by its augmented copies
    when augmentation is on. `limit` > 0 keeps the first `limit` validated rows and their copies."""
    table = pq.read_table(Path(augmented_dir) / "train.parquet")
    if limit and "source_row" in table.column_names:
        table = table.filter(pc.less(table["source_row"], limit))
    elif limit:
        table = table.slice(0, limit)
    return table.to_pydict()


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


def training_data(params: Params, spec: ModelSpec, tokenizer, max_train_samples: int = 0) -> TrainingData:
    """`max_train_samples` > 0 caps the training rows (compression stages on big corpora);
    otherwise finetune's own limit applies."""
    cfg = params.finetune
    head = head_for(spec.task)
    train_split = read_training_split(params.paths.augmented, max_train_samples or cfg.max_train_samples)
    dev_split = read_split(params.paths.ingested, "dev", cfg.max_eval_samples)
    return TrainingData(head, spec, tokenizer, head.features(head.encode(tokenizer, train_split, spec)),
                        head.encode(tokenizer, dev_split, spec), dev_split)


def train_settings(cfg, output_dir: Path, metric: str, execution: ExecutionConfig, **overrides) -> TrainSettings:
    """TrainSettings from a params section holding the shared optimiser fields (`overrides` for
    those a section does not have) and the `execution` section's device and precision."""
    fields = ("epochs", "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "lr_scheduler",
              "gradient_accumulation", "patience", "seed", "batch_order")
    # a section without a field (pretrain has no batch_order) gets TrainSettings' default
    values = {name: getattr(cfg, name) for name in fields if name not in overrides and hasattr(cfg, name)}
    return TrainSettings(output_dir=str(output_dir), eval_batch_size=cfg.batch_size, metric=metric,
                         device=execution.device, precision=execution.precision, **{**values, **overrides})


def scratch_dir(params: Params, stage: str, model_dir: str | Path) -> Path:
    """Where a training stage keeps resumable checkpoints. Named by a fingerprint of the stage's
    params, the training data and the starting weights: only an identical run resumes them."""
    digest = hashlib.sha256(getattr(params, stage).model_dump_json().encode())
    digest.update(params.finetune.model_dump_json().encode())  # data limits and input settings
    inputs = [Path(params.paths.augmented) / "train.parquet"] + \
        [Path(params.paths.ingested) / n for n in ("dev.parquet", "labels.json")]
    for path in inputs + sorted(Path(model_dir).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return Path(params.paths.checkpoints) / stage / digest.hexdigest()[:16]


def save_model(directory: Path, model, tokenizer, spec: ModelSpec, base_checkpoint: str,
               encoder_shapes: dict | None = None) -> None:
    """Weights, tokenizer and pipeline.json; `encoder_shapes` records a structurally pruned encoder,
    whose matrices no longer match its config."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    atomic_write_json(directory / PIPELINE_FILE, {**dataclasses.asdict(spec), "base_checkpoint": base_checkpoint,
                                                  "encoder_shapes": encoder_shapes})


def _pipeline_meta(model_dir: str | Path) -> dict:
    path = Path(model_dir) / PIPELINE_FILE
    if not path.is_file():
        from tinynlp.errors import ConfigError
        raise ConfigError(f"{model_dir}: not a pipeline model directory (no {PIPELINE_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def load_spec(model_dir: str | Path) -> ModelSpec:
    raw = _pipeline_meta(model_dir)
    return ModelSpec(**{f.name: raw[f.name] for f in dataclasses.fields(ModelSpec)})


def load_model(model_dir: str | Path):
    """A saved stage model (plain or structurally pruned) and its spec."""
    spec = load_spec(model_dir)
    model_class = head_for(spec.task).model_class
    shapes = _pipeline_meta(model_dir).get("encoder_shapes")
    if not shapes:
        return modeling.load_classifier(str(model_dir), spec.labels, model_class), spec
    return modeling.load_shrunk(str(model_dir), model_class, shapes), spec
