"""What differs between tasks, behind one interface: the model class, how a split is encoded,
how logits become scores, and which dev metric selects the best checkpoint. Stages and the
training routine are the same for NER and text classification."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tinynlp import ner, textclf


@dataclass(frozen=True)
class ModelSpec:
    """How a saved model expects its inputs; stored beside the weights as pipeline.json."""

    task: str
    labels: list[str]
    max_length: int
    stride: int = 0
    label_all_tokens: bool = False
    decoding: str = "argmax"         # NER: argmax per word, or viterbi under BIO constraints


@dataclass(frozen=True)
class Head:
    task: str
    metric: str                      # dev metric for early stopping / best checkpoint
    model_class: str                 # transformers Auto class
    encode: Callable                 # (tokenizer, split columns, spec, with_labels) -> encoded
    score: Callable                  # (encoded, logits, split columns, spec) -> metrics dict
    collator: Callable               # tokenizer -> data collator
    features: Callable               # encoded -> list of feature dicts
    summary: Callable                # full scores -> the few headline figures


def _encode_ner(tokenizer, split: dict, spec: ModelSpec, with_labels: bool = True):
    label2id = {l: i for i, l in enumerate(spec.labels)}
    return ner.encode(tokenizer, split["tokens"], split["tags"] if with_labels else None, label2id,
                      spec.max_length, spec.stride, spec.label_all_tokens)


def _score_ner(encoded, logits: Sequence[np.ndarray], split: dict, spec: ModelSpec) -> dict:
    predicted = ner.decode(encoded, logits, dict(enumerate(spec.labels)), spec.decoding)
    return ner.entity_scores(split["tags"], predicted)


def _encode_textclf(tokenizer, split: dict, spec: ModelSpec, with_labels: bool = True):
    label2id = {l: i for i, l in enumerate(spec.labels)}
    return textclf.encode(tokenizer, split["text"], split["label"] if with_labels else None, label2id, spec.max_length)


def _score_textclf(encoded, logits: Sequence[np.ndarray], split: dict, spec: ModelSpec) -> dict:
    return textclf.scores(split["label"], textclf.decode(logits, dict(enumerate(spec.labels))), spec.labels)


def _token_collator(tokenizer):
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=ner.IGNORE)


def _padding_collator(tokenizer):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


HEADS = {
    "ner": Head("ner", "entity_f1", "AutoModelForTokenClassification", _encode_ner, _score_ner,
                _token_collator, lambda e: e.features,
                lambda s: {"entity_f1": s["entity_f1"], "precision": s["micro"]["precision"],
                           "recall": s["micro"]["recall"], "macro_f1": s["macro"]["f1"]}),
    "classification": Head("classification", "accuracy", "AutoModelForSequenceClassification", _encode_textclf,
                           _score_textclf, _padding_collator, lambda e: e.features,
                           lambda s: {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}),
}


def head_for(task: str) -> Head:
    return HEADS[task]
