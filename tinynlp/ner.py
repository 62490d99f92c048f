"""Token classification data: subword encoding with first-subtoken labels and sliding windows
(long sentences are split, never truncated), word-level decoding and seqeval entity scores."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinynlp.tagging import bio_constraints

IGNORE = -100  # label id the loss skips (continuation subtokens, special tokens)


@dataclass(frozen=True)
class Encoded:
    """Model inputs, one row per window, plus the map from window positions back to words."""

    features: list[dict]          # input_ids, attention_mask, labels per window
    window_sentence: list[int]    # which sentence each window came from
    window_words: list[list[int]]  # per position: word index if first subtoken in window, else -1
    words_per_sentence: list[int]


def continuation_label(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def encode(tokenizer, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]] | None,
           label2id: dict[str, int], max_length: int, stride: int, label_all_tokens: bool = False) -> Encoded:
    batch = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True,
                      max_length=max_length, stride=stride, return_overflowing_tokens=True)
    features, window_sentence, window_words = [], [], []
    for window, sentence in enumerate(batch["overflow_to_sample_mapping"]):
        word_ids = batch.word_ids(window)
        labels, words, previous = [], [], None
        for word in word_ids:
            first = word is not None and word != previous
            words.append(word if first else -1)
            if word is None or tags is None:
                labels.append(IGNORE)
            elif first:
                labels.append(label2id[tags[sentence][word]])
            else:
                labels.append(label2id[continuation_label(tags[sentence][word])] if label_all_tokens else IGNORE)
            previous = word
        features.append({"input_ids": batch["input_ids"][window],
                         "attention_mask": batch["attention_mask"][window], "labels": labels})
        window_sentence.append(sentence)
        window_words.append(words)
    return Encoded(features, window_sentence, window_words, [len(s) for s in sentences])


def word_logits(encoded: Encoded, logits: Sequence[np.ndarray], n_labels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sentence: logits per word (a word seen in two overlapping windows gets the sum of
    both) and whether the tokenizer produced any subtoken for it."""
    totals = [np.zeros((n, n_labels), dtype=np.float64) for n in encoded.words_per_sentence]
    seen = [np.zeros(n, dtype=bool) for n in encoded.words_per_sentence]
    for window, sentence in enumerate(encoded.window_sentence):
        window_logits = logits[window]
        for position, word in enumerate(encoded.window_words[window]):
            if word >= 0:
                totals[sentence][word] += window_logits[position]
                seen[sentence][word] = True
    return list(zip(totals, seen))


DECODINGS = ("argmax", "viterbi")


def decode(encoded: Encoded, logits: Sequence[np.ndarray], id2label: dict[int, str],
           decoding: str = "argmax") -> list[list[str]]:
    """Word tags from window logits; a word the tokenizer dropped (no subtokens) is tagged O.
    `viterbi`: the most probable tag sequence in which no I-X follows anything but B-X or I-X."""
    labels = [id2label[i] for i in range(len(id2label))]
    return [[labels[i] for i in word_tag_ids(total, seen, labels, decoding)]
            for total, seen in word_logits(encoded, logits, len(labels))]


def word_tag_ids(totals: np.ndarray, seen: np.ndarray, labels: Sequence[str], decoding: str = "argmax") -> list[int]:
    """One sentence's tag ids from its word logits (see word_logits)."""
    outside = labels.index("O")
    if decoding == "argmax" or len(totals) == 0:
        return [int(np.argmax(row)) if hit else outside for row, hit in zip(totals, seen)]
    shifted = totals - totals.max(axis=-1, keepdims=True)  # log-softmax per word
    scores = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    scores[~seen] = -np.inf
    scores[~seen, outside] = 0.0  # a dropped word is O, as with argmax
    return viterbi(scores, *bio_constraints(labels))


def viterbi(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray) -> list[int]:
    """The best path through per-word log-probabilities `scores` (words x tags) using only
    `allowed` transitions (previous x next) and `start` tags at the first word."""
    forbidden = np.where(allowed, 0.0, -np.inf)
    best = np.where(start, scores[0], -np.inf)
    back = np.zeros(scores.shape, dtype=np.int64)
    for word in range(1, len(scores)):
        candidates = best[:, None] + forbidden        # previous x next
        back[word] = candidates.argmax(axis=0)
        best = candidates.max(axis=0) + scores[word]
    path = [int(best.argmax())]
    for word in range(len(scores) - 1, 0, -1):
        path.append(int(back[word][path[-1]]))
    return path[::-1]


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision/recall/F1 (seqeval, exact chunk match): micro, macro and per type."""
    from seqeval.metrics import classification_report

    report = classification_report(list(map(list, gold)), list(map(list, predicted)),
                                   output_dict=True, zero_division=0)
    def row(values: dict) -> dict:
        return {"precision": float(values["precision"]), "recall": float(values["recall"]),
                "f1": float(values["f1-score"]), "support": int(values["support"])}
    per_type = {k: row(v) for k, v in report.items() if not k.endswith(" avg")}
    return {"entity_f1": float(report["micro avg"]["f1-score"]),
            "micro": row(report["micro avg"]), "macro": row(report["macro avg"]), "per_type": per_type}
