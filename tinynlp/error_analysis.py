"""Where a model fails, from its predictions on a labelled split. NER: the SemEval-2013 schemes
(nervaluate) overall and per type, an entity-type confusion on overlapping spans, F1 by bucket
(entity length, seen in train or not, capitalisation, sentence length) and the sentences with the
largest loss. Classification: the confusion, calibration (expected calibration error, reliability
bins) and the texts with the largest loss. Pure functions over tags, words and probabilities."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

SCHEMES = ("strict", "exact", "partial", "ent_type")   # nervaluate's names; `ent_type` is SemEval's "type"
MISSED, SPURIOUS = "(missed)", "(spurious)"
Span = tuple[str, int, int]                             # type, first word, last word + 1


def spans(tags: Sequence[str]) -> list[Span]:
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


def semeval(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], types: Sequence[str]) -> dict:
    """Correct / incorrect / partial / missed / spurious counts and P/R/F1 under each SemEval-2013
    scheme, overall and per entity type (nervaluate)."""
    from nervaluate import Evaluator

    results = Evaluator([list(s) for s in gold], [list(s) for s in predicted], tags=list(types),
                        loader="list").evaluate()

    def counts(result) -> dict:
        fields = ("correct", "incorrect", "partial", "missed", "spurious", "possible", "actual")
        return {**{f: int(getattr(result, f)) for f in fields},
                **{f: round(float(getattr(result, f)), 4) for f in ("precision", "recall", "f1")}}

    return {"overall": {s: counts(results["overall"][s]) for s in SCHEMES},
            "per_type": {t: {s: counts(results["entities"][t][s]) for s in SCHEMES}
                         for t in types if t in results["entities"]}}


def type_confusion(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> list[dict]:
    """One row per gold entity (against the predicted entity that overlaps it most, or MISSED) and
    per predicted entity overlapping no gold one (SPURIOUS): `actual` against `predicted` type."""
    rows = []
    for gold_tags, predicted_tags in zip(gold, predicted):
        gold_spans, predicted_spans = spans(gold_tags), spans(predicted_tags)
        for kind, start, end in gold_spans:
            overlaps = [(min(end, e) - max(start, s), k) for k, s, e in predicted_spans if s < end and start < e]
            rows.append({"actual": kind, "predicted": max(overlaps)[1] if overlaps else MISSED})
        for kind, start, end in predicted_spans:
            if not any(s < end and start < e for _, s, e in gold_spans):
                rows.append({"actual": SPURIOUS, "predicted": kind})
    return rows


def confusion_counts(rows: Sequence[dict]) -> dict[str, dict[str, int]]:
    """actual -> predicted -> count, from `type_confusion` rows (or classification rows)."""
    table: dict[str, Counter] = {}
    for row in rows:
        table.setdefault(row["actual"], Counter())[row["predicted"]] += 1
    return {actual: dict(sorted(counts.items())) for actual, counts in sorted(table.items())}


def casing(words: Sequence[str]) -> str:
    """lower / Title / UPPER / mixed for an entity's words (ignoring words without letters)."""
    lettered = [w for w in words if any(c.isalpha() for c in w)]
    if not lettered:
        return "no letters"
    if all(w.islower() for w in lettered):
        return "lower"
    if all(w.isupper() and len(w) > 1 for w in lettered):
        return "UPPER"
    if all(w[0].isupper() and (len(w) == 1 or not w[1:].isupper()) for w in lettered):
        return "Title"
    return "mixed"


def length_bucket(words: int) -> str:
    return "1 word" if words == 1 else "2 words" if words == 2 else "3+ words"


def sentence_bucket(words: int) -> str:
    for limit in (10, 20, 40):
        if words <= limit:
            return f"<= {limit} words"
    return "> 40 words"


def surface(words: Sequence[str]) -> str:
    return " ".join(words).lower()


def train_surfaces(sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> set[str]:
    """Every entity's words as written in the training data, lowercased: `seen` means this string."""
    return {surface(words[s:e]) for words, sentence_tags in zip(sentences, tags) for _, s, e in spans(sentence_tags)}


BUCKETS = ("entity length", "seen in train", "capitalisation", "sentence length")


def _features(words: Sequence[str], span: Span, seen: set[str]) -> dict[str, str]:
    entity = words[span[1]:span[2]]
    return {"entity length": length_bucket(len(entity)),
            "seen in train": "seen" if surface(entity) in seen else "unseen",
            "capitalisation": casing(entity), "sentence length": sentence_bucket(len(words))}


def bucket_scores(sentences: Sequence[Sequence[str]], gold: Sequence[Sequence[str]],
                  predicted: Sequence[Sequence[str]], seen: set[str]) -> dict[str, dict[str, dict]]:
    """Exact-match entity precision, recall and F1 per bucket. A gold entity counts in its own
    bucket for recall, a predicted entity in its own bucket for precision: "unseen" asks how many
    entities whose string never occurs in train were found, and how many such predictions were right."""
    tallies: dict[str, dict[str, Counter]] = {bucket: {} for bucket in BUCKETS}
    for words, gold_tags, predicted_tags in zip(sentences, gold, predicted):
        gold_spans, predicted_spans = set(spans(gold_tags)), set(spans(predicted_tags))
        for side, own, other in (("gold", gold_spans, predicted_spans), ("predicted", predicted_spans, gold_spans)):
            for span in own:
                for bucket, value in _features(words, span, seen).items():
                    counts = tallies[bucket].setdefault(value, Counter())
                    counts[side] += 1
                    counts[f"{side}_right"] += span in other
    return {bucket: {value: _scores(c) for value, c in sorted(values.items())} for bucket, values in tallies.items()}


def _scores(counts: Counter) -> dict:
    precision = counts["predicted_right"] / counts["predicted"] if counts["predicted"] else 0.0
    recall = counts["gold_right"] / counts["gold"] if counts["gold"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "gold": counts["gold"], "predicted": counts["predicted"]}


def sentence_losses(gold_ids: Sequence[Sequence[int]], probabilities: Sequence[np.ndarray]) -> list[float]:
    """Mean negative log-likelihood of the gold label per sentence (NER: per word; classification:
    one row per text)."""
    losses = []
    for ids, probs in zip(gold_ids, probabilities):
        if len(ids) == 0:
            losses.append(0.0)
            continue
        picked = np.asarray(probs)[np.arange(len(ids)), np.asarray(ids)]
        losses.append(float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()))
    return losses


def worst(losses: Sequence[float], count: int) -> list[int]:
    """Indices of the `count` largest losses, largest first (ties: earlier first)."""
    return sorted(range(len(losses)), key=lambda i: (-losses[i], i))[:count]


def calibration(confidences: Sequence[float], correct: Sequence[bool], bins: int) -> dict:
    """Expected calibration error over equal-width confidence bins, with each bin's mean
    confidence, accuracy and count (the reliability diagram's points)."""
    confidences, correct = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        confidence, accuracy = float(confidences[inside].mean()), float(correct[inside].mean())
        ece += inside.mean() * abs(confidence - accuracy)
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "confidence": round(confidence, 4),
                     "accuracy": round(accuracy, 4), "count": int(inside.sum())})
    return {"ece": round(float(ece), 4), "bins": rows}
