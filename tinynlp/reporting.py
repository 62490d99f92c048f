"""Tables people compare: one markdown renderer for the terminal, reports and Prefect artifacts."""
from __future__ import annotations

from typing import Sequence


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def cell(value) -> str:
        # scores keep 4 decimals; timings and other large figures read better with one
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.4f}"
        return str(value)
    body = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(v.ljust(w) for v, w in zip(cells, widths)) + " |"
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def ner_metrics_table(metrics: dict) -> str:
    """Entity scores of each split: micro and macro, then per type for the test split."""
    rows = []
    for split in ("dev", "test"):
        scores = metrics[split]
        rows.append({"split": split, "scope": "micro", **_prf(scores["micro"])})
        rows.append({"split": split, "scope": "macro", **_prf(scores["macro"])})
    for kind, scores in sorted(metrics["test"]["per_type"].items()):
        rows.append({"split": "test", "scope": kind, **_prf(scores)})
    return markdown_table(rows, ["split", "scope", "precision", "recall", "f1", "support"])


def classification_metrics_table(metrics: dict) -> str:
    rows = [{"split": s, "scope": "all", "accuracy": metrics[s]["accuracy"], "f1": metrics[s]["macro_f1"]}
            for s in ("dev", "test")]
    for label, scores in metrics["test"]["per_class"].items():
        rows.append({"split": "test", "scope": label, **_prf(scores)})
    return markdown_table(rows, ["split", "scope", "accuracy", "precision", "recall", "f1", "support"])


def metrics_table(metrics: dict) -> str:
    """The evaluate stage's table for whichever task produced the metrics."""
    return classification_metrics_table(metrics) if metrics.get("task") == "classification" else ner_metrics_table(metrics)


def _prf(scores: dict) -> dict:
    return {k: scores[k] for k in ("precision", "recall", "f1", "support")}
