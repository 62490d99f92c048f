"""Writing the promoted model (part of the `evaluate` stage): one well-known directory holding the
ONNX graph, tokenizer, pipeline.json (task, labels, input settings) and a model card with the
variant's metrics and the versions of the data and code it came from."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tinynlp import quantization
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.fingerprints import validated_data_version
from tinynlp.heads import ModelSpec
from tinynlp.model_dir import CARD_FILE, ENCODER_FILE, MODEL_FILE, load_model, write_meta


def code_version() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def _card(card: dict) -> str:
    metrics = card["metrics"]
    lines = [f"# Model card: {card['variant']}", "",
             f"- task: {card['task']}; labels: {', '.join(card['labels'])}",
             f"- variant: `{card['variant']}` ({card['kind']}), promoted by the evaluate gate "
             f"(objective: {card['gate']['objective']}, max drop {card['gate']['max_drop']} on {card['gate']['split']})",
             f"- test score {metrics['test_score']}, dev score {metrics['dev_score']}",
             f"- batch-1 latency p50 {metrics['latency_ms_p50']} ms, p95 {metrics['latency_ms_p95']} ms; "
             f"throughput {metrics['throughput_per_s']}/s; {metrics['size_mb']} MB; {metrics['parameters']} parameters",
             f"- made from the PyTorch model in `{card['torch_source']}` (`tinynlp explain` uses it)",
             f"- base checkpoint: {card['base_checkpoint']}; data version {card['data_version']}; "
             f"code version {card['code_version']}",
             "", "Serve it with `tinynlp predict --model <this directory> \"some text\"`."]
    return "\n".join(lines) + "\n"


def write_encoder(model, directory: Path, opset: int) -> None:
    """The promoted model's own encoder, mean-pooled, for the drift tests' embeddings; INT8 like the
    served graph (a quarter of the size; reference and new data go through the same encoder)."""
    fp32 = quantization.export_encoder_onnx(model, directory / "encoder-fp32.onnx", opset)
    quantization.quantize_dynamic_onnx(fp32, directory / ENCODER_FILE, per_channel=True)
    fp32.unlink()


def promote(params: Params, variant, row: dict, tokenizer, spec: ModelSpec) -> None:
    with atomic_dir(params.paths.promoted) as staging:
        source, _ = load_model(variant.source)
        if variant.kind == "onnx":
            shutil.copyfile(variant.location, staging / MODEL_FILE)
        else:  # an fp32 PyTorch variant is served through ONNX too
            quantization.export_onnx(source, staging / MODEL_FILE, params.quantize.opset)
        write_encoder(source, staging, params.quantize.opset)
        tokenizer.save_pretrained(staging)
        base = params.pretrain.checkpoint
        # the PyTorch model the served graph was made from: gradients (`tinynlp explain`) need it
        write_meta(staging, spec, base, variant=variant.name, torch_source=str(variant.source))
        card = {"variant": variant.name, "kind": variant.kind, "torch_source": str(variant.source),
                "task": spec.task, "labels": spec.labels,
                "metrics": row, "gate": params.evaluate.gate.model_dump(), "base_checkpoint": base,
                "data_version": validated_data_version(params.paths.ingested), "code_version": code_version()}
        atomic_write_json(staging / CARD_FILE, card)
        (staging / "README.md").write_text(_card(card), encoding="utf-8")
