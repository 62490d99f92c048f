"""The model-directory format. A stage model directory holds weights (safetensors), tokenizer and
`pipeline.json` (task, labels, input settings; the encoder's shapes when structurally pruned); the
promoted directory holds the ONNX graph instead of weights, its encoder for drift, and a card."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tinynlp.atomic import atomic_write_json
from tinynlp.errors import ConfigError
from tinynlp.heads import ModelSpec

PIPELINE_FILE = "pipeline.json"  # how the saved model expects its inputs
MODEL_FILE = "model.onnx"        # the promoted model's served graph
ENCODER_FILE = "encoder.onnx"    # the promoted model's mean-pooled encoder (drift embeddings)
CARD_FILE = "card.json"          # the promoted model's card, for machines


def variant_dirs(paths) -> dict[str, Path]:
    """The PyTorch model directory each training stage writes, by variant name, in report order."""
    return {"finetune": Path(paths.model), "prune_unstructured": Path(paths.pruned) / "unstructured",
            "prune_structured": Path(paths.pruned) / "structured", "distill": Path(paths.distilled)}


def is_model_dir(directory: str | Path) -> bool:
    return (Path(directory) / PIPELINE_FILE).is_file()


def read_meta(model_dir: str | Path) -> dict:
    """`pipeline.json` of a stage or promoted model directory."""
    path = Path(model_dir) / PIPELINE_FILE
    if not path.is_file():
        raise ConfigError(f"{model_dir}: not a pipeline model directory (no {PIPELINE_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def spec_of(meta: dict) -> ModelSpec:
    return ModelSpec(**{f.name: meta[f.name] for f in dataclasses.fields(ModelSpec) if f.name in meta})


def load_spec(model_dir: str | Path) -> ModelSpec:
    return spec_of(read_meta(model_dir))


def write_meta(directory: Path, spec: ModelSpec, base_checkpoint: str, **extra) -> None:
    atomic_write_json(directory / PIPELINE_FILE, {**dataclasses.asdict(spec), "base_checkpoint": base_checkpoint,
                                                  **extra})


def save_model(directory: Path, model, tokenizer, spec: ModelSpec, base_checkpoint: str,
               encoder_shapes: dict | None = None) -> None:
    """Weights, tokenizer and pipeline.json; `encoder_shapes` records a structurally pruned encoder,
    whose matrices no longer match its config."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    write_meta(directory, spec, base_checkpoint, encoder_shapes=encoder_shapes)


def load_model(model_dir: str | Path):
    """A saved stage model (plain or structurally pruned) and its spec."""
    from tinynlp import modeling
    from tinynlp.heads import head_for

    meta = read_meta(model_dir)
    spec = spec_of(meta)
    model_class = head_for(spec.task).model_class
    if not meta.get("encoder_shapes"):
        return modeling.load_classifier(str(model_dir), spec.labels, model_class), spec
    return modeling.load_shrunk(str(model_dir), model_class, meta["encoder_shapes"]), spec
