"""Writing the promoted model (part of the `evaluate` stage): one well-known directory holding the
ONNX graph, tokenizer, config.json and pipeline.json (task, labels, input settings), the model
card (Hugging Face format) and the lineage record of the data and code it came from."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tinynlp import lineage, model_card, quantization
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.heads import ModelSpec
from tinynlp.model_dir import CARD_FILE, ENCODER_FILE, MODEL_FILE, load_model, write_meta


def write_encoder(model, directory: Path, opset: int) -> None:
    """The promoted model's own encoder, mean-pooled, for the drift tests' embeddings; INT8 like the
    served graph (a quarter of the size; reference and new data go through the same encoder)."""
    fp32 = quantization.export_encoder_onnx(model, directory / "encoder-fp32.onnx", opset)
    quantization.quantize_dynamic_onnx(fp32, directory / ENCODER_FILE, per_channel=True)
    fp32.unlink()


def write_tokenizer(tokenizer, directory: Path) -> None:
    """The tokenizer, loadable by transformers 4.x too (Optimum pins it): transformers 5 names a
    tokenizer without a class of its own `TokenizersBackend`, which 4.x does not know; both read
    `PreTrainedTokenizerFast` with the same ids."""
    tokenizer.save_pretrained(directory)
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        atomic_write_json(path, {**config, "tokenizer_class": "PreTrainedTokenizerFast"})


def write_config(model, spec: ModelSpec, directory: Path) -> None:
    """`config.json` beside the ONNX graph, so Hugging Face tools (Optimum's ORT model classes and
    `transformers.pipeline`) recognise the directory: architecture and the label maps. A structurally
    pruned encoder's own shapes are in pipeline.json; the served graph carries them itself."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.id2label = dict(enumerate(spec.labels))
    config.label2id = {label: i for i, label in enumerate(spec.labels)}
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)


def promote(params: Params, variant, row: dict, tokenizer, spec: ModelSpec, card: model_card.CardInputs,
            decision: dict) -> None:
    """The served graph, its encoder, tokenizer, config.json and pipeline.json, the card (README.md
    for people and the Hugging Face tools, card.json for machines) and the lineage record."""
    with atomic_dir(params.paths.promoted) as staging:
        source, _ = load_model(variant.source)
        if variant.kind == "onnx":
            shutil.copyfile(variant.location, staging / MODEL_FILE)
        else:  # an fp32 PyTorch variant is served through ONNX too
            quantization.export_onnx(source, staging / MODEL_FILE, params.quantize.opset)
        write_encoder(source, staging, params.quantize.opset)
        write_tokenizer(tokenizer, staging)
        write_config(source, spec, staging)
        base = params.pretrain.checkpoint
        # the PyTorch model the served graph was made from: gradients (`tinynlp explain`) need it
        write_meta(staging, spec, base, variant=variant.name, torch_source=str(variant.source))
        summary = {"variant": variant.name, "kind": variant.kind, "torch_source": str(variant.source),
                   "task": spec.task, "labels": spec.labels, "metrics": row, "gate": params.evaluate.gate.model_dump(),
                   "base_checkpoint": base, "data_version": card.data_version, "code_version": card.code,
                   "commit": card.commit, "limitations": card.analysis["limitations"]}
        atomic_write_json(staging / CARD_FILE, summary)
        model_card.build(card, params.evaluate.card, base).save(staging / "README.md")
        record = lineage.build_lineage(params, variant=variant.name, scores=row, gate=decision,
                                       torch_source=str(variant.source))
        lineage.write_lineage(staging, record)
    # the git-tracked copy: every version's lineage readable with `git show REV:...`, without DVC
    lineage.write_lineage(Path(params.paths.reports) / "evaluate", record)
