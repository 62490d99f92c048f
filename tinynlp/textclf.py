"""Sequence classification data: encoding (texts longer than the window are truncated and
counted) and accuracy / macro-F1 / per-class scores."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    features: list[dict]  # input_ids, attention_mask, labels per text
    truncated: int        # texts cut at max_length: reported, since it can hide signal


def encode(tokenizer, texts: Sequence[str], labels: Sequence[str] | None, label2id: dict[str, int],
           max_length: int) -> Encoded:
    batch = tokenizer(list(texts), truncation=True, max_length=max_length, return_length=False)
    full = tokenizer(list(texts), truncation=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    if truncated:
        log.warning("%d of %d texts longer than %d subword tokens were truncated", truncated, len(texts), max_length)
    features = [{"input_ids": ids, "attention_mask": mask, **({"labels": label2id[labels[i]]} if labels is not None else {})}
                for i, (ids, mask) in enumerate(zip(batch["input_ids"], batch["attention_mask"]))]
    return Encoded(features, truncated)


def decode(logits: Sequence[np.ndarray], id2label: dict[int, str]) -> list[str]:
    return [id2label[int(np.argmax(row))] for row in logits]


def scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    from sklearn.metrics import accuracy_score, classification_report

    report = classification_report(list(gold), list(predicted), labels=list(labels), output_dict=True, zero_division=0)
    per_class = {label: {"precision": float(report[label]["precision"]), "recall": float(report[label]["recall"]),
                         "f1": float(report[label]["f1-score"]), "support": int(report[label]["support"])}
                 for label in labels}
    return {"accuracy": float(accuracy_score(gold, predicted)), "macro_f1": float(report["macro avg"]["f1-score"]),
            "per_class": per_class}
