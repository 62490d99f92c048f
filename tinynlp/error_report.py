"""The evaluate stage's error analysis: every variant's predictions on the labelled splits turned
into where it fails (tinynlp.error_analysis), what compression cost and where, the worst examples,
and the weaknesses in words for the model card."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tinynlp import error_analysis as ea
from tinynlp import ner
from tinynlp.heads import ModelSpec
from tinynlp.predict import softmax

MIN_SUPPORT = 20   # a type or bucket with fewer gold entities is too small to call a weakness


def analyse(spec: ModelSpec, split: dict, encoded, logits: Sequence[np.ndarray], seen: set[str],
            calibration_bins: int) -> dict:
    """One variant on one split: everything but the examples' text (kept by index)."""
    if spec.task == "classification":
        return _analyse_classification(spec, split, logits, calibration_bins)
    label2id = {label: i for i, label in enumerate(spec.labels)}
    per_sentence = ner.word_logits(encoded, logits, len(spec.labels))
    probabilities = [softmax(totals) for totals, _ in per_sentence]
    predicted = ner.decode(encoded, logits, dict(enumerate(spec.labels)), spec.decoding)
    gold = [list(tags) for tags in split["tags"]]
    types = sorted({label[2:] for label in spec.labels if label != "O"})
    words_correct = [p == g for p_row, g_row in zip(predicted, gold) for p, g in zip(p_row, g_row)]
    confidences = [float(row.max()) for rows in probabilities for row in rows]
    return {"metric": "f1", "semeval": ea.semeval(gold, predicted, types),
            "confusion": ea.type_confusion(gold, predicted),
            "buckets": ea.bucket_scores(split["tokens"], gold, predicted, seen),
            "calibration": {"unit": "word", **ea.calibration(confidences, words_correct, calibration_bins)},
            "losses": ea.sentence_losses([[label2id[t] for t in tags] for tags in gold], probabilities),
            "predicted": predicted}


def _analyse_classification(spec: ModelSpec, split: dict, logits, bins: int) -> dict:
    probabilities = softmax(np.stack(logits))
    predicted = [spec.labels[i] for i in probabilities.argmax(axis=-1)]
    gold = list(split["label"])
    correct = [p == g for p, g in zip(predicted, gold)]
    lengths = [len(text.split()) for text in split["text"]]
    buckets: dict[str, dict] = {}
    for length, hit in zip(lengths, correct):
        counts = buckets.setdefault(ea.sentence_bucket(length), {"right": 0, "gold": 0})
        counts["right"] += hit
        counts["gold"] += 1
    return {"metric": "accuracy",
            "confusion": [{"actual": g, "predicted": p} for g, p in zip(gold, predicted)],
            "buckets": {"text length": {b: {"accuracy": round(c["right"] / c["gold"], 4), "gold": c["gold"]}
                                        for b, c in sorted(buckets.items())}},
            "calibration": {"unit": "text", **ea.calibration(probabilities.max(axis=-1), correct, bins)},
            "losses": ea.sentence_losses([[spec.labels.index(g)] for g in gold], [p[None] for p in probabilities]),
            "predicted": predicted}


def bucket_table(analyses: dict[str, dict], reference: str) -> list[dict]:
    """One row per bucket: its gold count, the reference's score and every other variant's change
    from it in points (what compression cost, and where)."""
    first = analyses[reference]
    metric = first["metric"]
    rows = []
    for bucket, values in first["buckets"].items():
        for value, scores in values.items():
            row = {"bucket": f"{bucket}: {value}", "gold": scores["gold"], reference: scores[metric]}
            for name, analysis in analyses.items():
                if name != reference:
                    other = analysis["buckets"].get(bucket, {}).get(value)
                    row[name] = "" if other is None else round(100 * (other[metric] - scores[metric]), 1)
            rows.append(row)
    return rows


def compression_costs(analyses: dict[str, dict], reference: str) -> dict[str, dict]:
    """For each variant, the bucket (with enough gold entities) where it lost most against the
    reference, in points."""
    costs = {}
    for row in bucket_table(analyses, reference):
        if row["gold"] < MIN_SUPPORT:
            continue
        for name in analyses:
            if name != reference and row[name] != "" and row[name] < costs.get(name, {}).get("points", 0.0):
                costs[name] = {"bucket": row["bucket"], "points": row[name], "gold": row["gold"]}
    return costs


def limitations(analysis: dict, task: str) -> list[str]:
    """The weakest types and buckets, in words (for the model card and the report)."""
    lines = []
    if task == "ner":
        overall = analysis["semeval"]["overall"]["strict"]["f1"]
        per_type = sorted(((s["strict"]["f1"], t, s["strict"]["possible"])
                           for t, s in analysis["semeval"]["per_type"].items() if s["strict"]["possible"] >= MIN_SUPPORT))
        for f1, kind, support in per_type[:3]:
            if f1 < overall:
                lines.append(f"Entity type `{kind}` is found poorly: F1 {f1:.2f} on {support} test entities "
                             f"(overall {overall:.2f}).")
    metric = analysis["metric"]
    for bucket, values in analysis["buckets"].items():
        sized = [(s[metric], v, s["gold"]) for v, s in values.items() if s["gold"] >= MIN_SUPPORT]
        if len(sized) < 2:
            continue
        (low, value, support), (high, best, _) = min(sized), max(sized)
        if high - low >= 0.1:
            lines.append(f"{bucket.capitalize()} matters: {metric} {low:.2f} for {value} ({support} test "
                         f"{'entities' if task == 'ner' else 'texts'}) against {high:.2f} for {best}.")
    ece = analysis["calibration"]["ece"]
    if ece >= 0.05:
        lines.append(f"Confidences are miscalibrated: expected calibration error {ece:.3f} per "
                     f"{analysis['calibration']['unit']}; do not read a score as a probability.")
    return lines


def worst_examples(split: dict, analysis: dict, task: str, count: int, shown: Callable[[str], str],
                   max_chars: int = 300) -> list[dict]:
    """The `count` examples with the largest loss: text, gold and predicted, for a person to read,
    each string through `shown` (personal data masked)."""
    rows = []
    for i in ea.worst(analysis["losses"], count):
        if task == "ner":
            words = list(split["tokens"][i])
            gold = "; ".join(f"{k}: {' '.join(words[s:e])}" for k, s, e in ea.spans(split["tags"][i])) or "(none)"
            predicted = "; ".join(f"{k}: {' '.join(words[s:e])}"
                                  for k, s, e in ea.spans(analysis["predicted"][i])) or "(none)"
            text = " ".join(words)
        else:
            text, gold, predicted = split["text"][i], split["label"][i], analysis["predicted"][i]
        text = shown(text)
        rows.append({"index": i, "loss": round(analysis["losses"][i], 3),
                     "text": text if len(text) <= max_chars else text[:max_chars] + " …",
                     "gold": shown(gold), "predicted": shown(predicted)})
    return rows


def semeval_rows(semeval: dict) -> list[dict]:
    """Per type (and overall): F1 under each scheme, and the strict scheme's counts."""
    rows = []
    for scope, schemes in [("all types", semeval["overall"]), *sorted(semeval["per_type"].items())]:
        strict = schemes["strict"]
        rows.append({"type": scope, **{f"{s} F1": schemes[s]["f1"] for s in ea.SCHEMES},
                     **{k: strict[k] for k in ("correct", "incorrect", "partial", "missed", "spurious", "possible")}})
    return rows


def _confusion_rows(counts: dict[str, dict[str, int]]) -> tuple[list[dict], list[str]]:
    columns = sorted({p for predicted in counts.values() for p in predicted})
    return [{"actual": actual, **{c: predicted.get(c, 0) for c in columns}} for actual, predicted in counts.items()], \
        ["actual", *columns]


def signed_points(points) -> str:
    """A change in points as people write it: +1.2, -0.4, 0.0 (blank where a variant has no such bucket)."""
    return "" if points == "" else f"{points:+.1f}" if points else "0.0"


def markdown(summary: dict, split_width: int = 6) -> str:
    """The report a person reads: the shipped model's failures, then every variant's by bucket."""
    from tinynlp.reporting import markdown_table

    shipped, reference, task = summary["shipped"], summary["reference"], summary["task"]
    analysis = summary["models"][shipped]["test"]
    parts = [f"# Error analysis: `{shipped}` on the test split\n",
             "What the shipped model gets wrong and where; every variant against the fp32 model by bucket; "
             "the worst examples are in [worst_examples.md](worst_examples.md).\n"]
    if summary["limitations"]:
        parts += ["## Weaknesses\n", *[f"- {line}" for line in summary["limitations"]], ""]
    if task == "ner":
        rows = semeval_rows(analysis["semeval"])
        parts += ["## SemEval-2013 schemes (nervaluate)\n",
                  "F1 under the strict (type and boundary), exact (boundary), partial and type schemes; counts "
                  "under the strict scheme.\n", markdown_table(rows, list(rows[0])), ""]
    rows, columns = _confusion_rows(analysis["confusion"])
    what = "entity type on overlapping spans" if task == "ner" else "label"
    parts += [f"## Confusion ({what})\n", "Rows: gold; columns: predicted.\n", markdown_table(rows, columns), ""]
    calibration = analysis["calibration"]
    parts += [f"## Calibration (per {calibration['unit']})\n",
              f"Expected calibration error {calibration['ece']:.4f}.\n",
              markdown_table(calibration["bins"], ["bin", "confidence", "accuracy", "count"]), ""]
    table = [{k: signed_points(v) if k not in ("bucket", "gold", reference) else v for k, v in row.items()}
             for row in summary["buckets"] if row["gold"]]   # buckets only predictions fall in have no recall
    others = [c for c in table[0] if c not in ("bucket", "gold", reference)] if table else []
    parts += [f"## By bucket: {reference} ({summary['metric']}) and each variant's change in points\n"]
    for start in range(0, max(len(others), 1), split_width):  # wide tables split: readers and the UI cut them
        parts += [markdown_table(table, ["bucket", "gold", reference, *others[start:start + split_width]]), ""]
    if summary["compression_costs"]:
        rows = [{"variant": name, **cost, "points": signed_points(cost["points"])}
                for name, cost in summary["compression_costs"].items()]
        parts += ["## Where compression cost most\n",
                  f"Per variant, the bucket (at least {MIN_SUPPORT} gold) with the largest loss against {reference}.\n",
                  markdown_table(rows, ["variant", "bucket", "points", "gold"]), ""]
    return "\n".join(parts) + "\n"


def worst_markdown(summary: dict) -> str:
    from tinynlp.reporting import markdown_table

    parts = [f"# Worst examples: `{summary['shipped']}`\n",
             "The examples with the largest loss (mean negative log-likelihood of the gold labels), gold against "
             "predicted. Texts are cut at 300 characters.\n"]
    for split, rows in summary["worst"].items():
        parts += [f"## {split}\n", markdown_table(rows, ["index", "loss", "text", "gold", "predicted"]), ""]
    return "\n".join(parts) + "\n"


def summarise(spec: ModelSpec, splits: dict, encoded: dict, logits: dict[str, dict], train: dict,
              reference: str, shipped: str, cfg, shown: Callable[[str], str] = lambda text: text) -> tuple[dict, dict]:
    """Every variant analysed on test (and the shipped model on dev too); returns the summary for
    reports and the card, and the shipped model's full test analysis (confusion rows, calibration
    bins) for the plots. `logits`: variant -> split -> logits."""
    seen = set() if spec.task == "classification" else ea.train_surfaces(train["tokens"], train["tags"])
    analyses = {name: analyse(spec, splits["test"], encoded["test"], by_split["test"], seen, cfg.calibration_bins)
                for name, by_split in logits.items()}
    shipped_dev = analyse(spec, splits["dev"], encoded["dev"], logits[shipped]["dev"], seen, cfg.calibration_bins)
    table = bucket_table(analyses, reference)

    def public(analysis: dict) -> dict:  # per-example lists stay out of the JSON
        kept = {k: v for k, v in analysis.items() if k not in ("losses", "predicted", "confusion")}
        return {**kept, "confusion": ea.confusion_counts(analysis["confusion"])}

    summary = {"task": spec.task, "metric": analyses[reference]["metric"], "reference": reference, "shipped": shipped,
               "models": {shipped: {"test": public(analyses[shipped]), "dev": public(shipped_dev)},
                          reference: {"test": public(analyses[reference])}},
               "variants": {name: {"buckets": a["buckets"], "ece": a["calibration"]["ece"],
                                   **({"semeval": a["semeval"]["overall"]} if "semeval" in a else {})}
                            for name, a in analyses.items()},
               "buckets": table, "compression_costs": compression_costs(analyses, reference),
               "limitations": limitations(analyses[shipped], spec.task),
               "worst": {split: worst_examples(splits[split], analysis, spec.task, cfg.worst_examples, shown)
                         for split, analysis in (("dev", shipped_dev), ("test", analyses[shipped]))}}
    return summary, analyses[shipped]
