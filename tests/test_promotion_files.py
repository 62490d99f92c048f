"""The promoted directory is one Hugging Face tools can open (Optimum's ORT model classes and
`transformers.pipeline`; benchmarks/optimum_compat.py runs them in a venv of their own): config.json
with model_type and label maps matching pipeline.json, a graph with the input and output names
Optimum feeds and reads, and a tokenizer class transformers 4.x knows."""
from __future__ import annotations

import json

import onnx
import pytest

from tinynlp import modeling, quantization
from tinynlp.heads import ModelSpec, head_for
from tinynlp.model_dir import MODEL_FILE, read_meta, write_meta
from tinynlp.promotion import write_config
from tinynlp.tagging import bio_labels

ARCHITECTURE_SUFFIX = {"ner": "ForTokenClassification", "classification": "ForSequenceClassification"}


@pytest.mark.parametrize("task, labels", [("ner", bio_labels(["location", "person"])),
                                          ("classification", ["neg", "pos"])])
def test_promoted_files_carry_what_optimum_reads(tiny_bert, tmp_path, task, labels):
    from transformers import AutoConfig

    # what `promotion.promote` writes beside the graph, on the tiny BERT
    model = modeling.load_classifier(str(tiny_bert), labels, head_for(task).model_class, seed=0)
    spec = ModelSpec(task, labels, max_length=32, stride=4)
    quantization.export_onnx(model, tmp_path / MODEL_FILE)
    modeling.load_tokenizer(str(tiny_bert)).save_pretrained(tmp_path)
    write_config(model, spec, tmp_path)
    write_meta(tmp_path, spec, str(tiny_bert), variant="test")

    config = json.loads((tmp_path / "config.json").read_text())
    meta_labels = read_meta(tmp_path)["labels"]
    assert config["model_type"] == "bert"
    assert config["id2label"] == {str(i): label for i, label in enumerate(meta_labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(meta_labels)}
    assert config["architectures"][0].endswith(ARCHITECTURE_SUFFIX[task])
    assert AutoConfig.from_pretrained(tmp_path).num_labels == len(labels)

    graph = onnx.load(str(tmp_path / MODEL_FILE), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    assert {"input_ids", "attention_mask"} <= set(inputs) <= {"input_ids", "attention_mask", "token_type_ids"}
    assert [o.name for o in graph.output] == ["logits"]

    # transformers 5 names a tokenizer without a class of its own "TokenizersBackend", unknown to 4.x
    tokenizer_class = json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"]
    assert tokenizer_class != "TokenizersBackend" and tokenizer_class.removesuffix("Fast").endswith("Tokenizer")
