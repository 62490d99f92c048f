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
    casing: str = "none"             # NER: "shape" (word shapes as token types) or "markers" (tokens before cased words)
    context: int = 0                 # NER: subwords of document context on each side of a sentence
    context_fallback: str = "sentence_order"  # a split without document boundaries: sentence_order or none


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
    documents, anchors = context_source(split, spec)
    return ner.encode(tokenizer, split["tokens"], split["tags"] if with_labels else None, label2id,
                      spec.max_length, spec.stride, spec.label_all_tokens, spec.casing, spec.context, documents, anchors)


def context_source(split: dict, spec: ModelSpec) -> tuple[list[int] | None, list[int] | None]:
    """Each row's document and the row whose neighbours are its context (an augmented copy takes its
    original's), or (None, None) when the split gets no context."""
    if context_kind(split, spec) == "none":  # off, or no boundaries and sentence order not to be trusted
        return None, None
    rows = len(split["tokens"])
    documents = list(split.get("document") or [0] * rows)
    if "source_row" not in split:
        return documents, list(range(rows))
    first_of = {}
    for index, source in enumerate(split["source_row"]):
        first_of.setdefault(source, index)  # the validated row comes before its copies
    return documents, [first_of[source] for source in split["source_row"]]


def context_kind(split: dict, spec: ModelSpec) -> str:
    """What context a split gets, for the log and the metrics: `documents (N)`, `sentence order` or `none`."""
    if not spec.context:
        return "none"
    documents = len(set(split.get("document") or [0]))
    if documents > 1:
        return f"documents ({documents})"
    return "sentence order" if spec.context_fallback == "sentence_order" else "none"


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
