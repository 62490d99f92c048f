"""What a pipeline run shows in the Prefect UI besides its logs: markdown summaries and tables built
from the report files the stages wrote (validation, MLM perplexity, training curves, the error
analysis), so a cached run shows the same figures as the run that made them."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterator

from tinynlp import progress
from tinynlp.reporting import markdown_table

CURVE_STAGES = ("pretrain", "finetune", "prune", "distill")


def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def validation_summary(reports: Path) -> str:
    """Rules checked per split, what failed, and a link to Great Expectations' Data Docs."""
    summary = _read(reports / "ingest" / "validation.json")
    if summary is None:
        return "# Data validation\n\nNo validation summary: the ingest stage has not run.\n"
    rows = []
    for split, result in summary["validation"].items():
        rules = result["rules"]
        failed = [name for name, rule in rules.items() if not rule["success"]]
        counts = summary["splits"].get(split, {})
        rows.append({"split": split, "source": result.get("source", ""), **counts, "rules": len(rules),
                     "passed": len(rules) - len(failed), "failed": ", ".join(failed) or "none"})
    columns = ["split", "source", *[k for k in ("sentences", "rows", "tokens", "entities", "classes") if k in rows[0]],
               "rules", "passed", "failed"]
    docs = (reports / "ingest" / "data_docs").resolve()
    index = next(iter(sorted(docs.rglob("index.html"))), None) if docs.is_dir() else None
    link = f"Great Expectations Data Docs: [{index}](file://{index})\n" if index else ""
    return (f"# Data validation\n\nTask: {summary['task']}, {len(summary['labels'])} labels. Every rule "
            f"passed on every split.\n\n{markdown_table(rows, columns)}\n\n{link}")


def validation_failure(error: Exception, reports: Path) -> str:
    """The validation error as the terminal shows it, and the failed run's Data Docs."""
    docs = (reports / "failed" / "ingest" / "data_docs" / "index.html").resolve()
    link = f"\nData Docs of the failed run: [{docs}](file://{docs})\n" if docs.is_file() else ""
    return (f"# Data validation failed\n\nNothing was written: the last good validated data stays as it was.\n\n"
            f"```\n{error}\n```\n{link}")


def _curve_rows(stage: str, history: list[dict]) -> list[dict]:
    if stage == "prune":  # one row per pruning step, not per epoch
        return [{"step": row["step"], "sparsity": row.get("target_sparsity", ""),
                 "dev score": next((v for k, v in row.items() if k.startswith("dev_")), "")} for row in history]
    return [{"epoch": _whole(row["epoch"]), "train loss": row.get("train_loss", ""),
             "dev loss": row.get("dev_loss", ""),
             "dev score": row.get("dev_perplexity", row.get("dev_score", ""))} for row in history]


def _whole(epoch: float) -> int | float:
    return int(epoch) if float(epoch).is_integer() else epoch


def training_summary(reports: Path) -> str:
    """Each training stage's curve as a table (the full curves are `dvc plots`), with the best row."""
    parts = ["# Training curves\n", "Per epoch (pruning: per step). The dev score is perplexity for "
             "pretraining (lower is better) and the task metric otherwise. `dvc plots show` draws them.\n"]
    for stage in CURVE_STAGES:
        history, metrics = _read(reports / stage / "history.json"), _read(reports / stage / "metrics.json") or {}
        if not history or metrics.get("enabled") is False:
            parts.append(f"## {stage}\n\nnot enabled in params.yaml\n")
            continue
        rows = _curve_rows(stage, history)
        parts.append(f"## {stage}\n\n{markdown_table(rows, list(rows[0]))}\n")
        if stage == "pretrain":
            parts.append(f"Held-out perplexity {metrics.get('perplexity_before')} before, "
                         f"{metrics.get('perplexity_after')} after.\n")
    return "\n".join(parts)


def publish_error_analysis(reports: Path, columns_per_table: int = 6) -> None:
    """The evaluate stage's error analysis in the UI: the report as markdown, its tables as table
    artifacts (the bucket table split by variants, so the UI does not cut wide tables off), and
    the worst examples."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from tinynlp.error_report import semeval_rows

    folder = reports / "evaluate"
    summary = _read(folder / "error_analysis.json")
    if summary is None:
        return
    shipped, reference = summary["shipped"], summary["reference"]
    create_markdown_artifact(markdown=(folder / "error_analysis.md").read_text(encoding="utf-8"), key="error-analysis",
                             description=f"where {shipped} fails, and what compression cost against {reference}")
    create_markdown_artifact(markdown=(folder / "worst_examples.md").read_text(encoding="utf-8"), key="worst-examples",
                             description=f"dev and test examples with the largest loss under {shipped}")
    test = summary["models"][shipped]["test"]
    if "semeval" in test:  # two tables of six columns rather than one of eleven
        rows = semeval_rows(test["semeval"])
        f1 = [k for k in rows[0] if k.endswith(" F1")]
        counts = [k for k in rows[0] if k != "type" and k not in f1]
        for what, columns in (("f1", f1), ("counts", counts)):
            create_table_artifact(table=[{"type": r["type"], **{c: r[c] for c in columns}} for r in rows],
                                  key=f"error-analysis-types-{what}",
                                  description=f"{shipped} on test per entity type: SemEval-2013 "
                                              + ("F1 under each scheme" if what == "f1" else "strict-scheme counts"))
    others = [c for c in (summary["buckets"][0] if summary["buckets"] else {}) if c not in ("bucket", "gold", reference)]
    for part, start in enumerate(range(0, max(len(others), 1), columns_per_table), start=1):
        shown = ["bucket", "gold", reference, *others[start:start + columns_per_table]]
        create_table_artifact(table=[{c: row.get(c, "") for c in shown} for row in summary["buckets"]],
                              key=f"error-analysis-buckets-{part}",
                              description=f"{summary['metric']} by bucket: {reference}, and each variant's change in "
                                          f"points (part {part})")


@contextlib.contextmanager
def progress_artifact(stage: str, every_seconds: float = 5.0) -> Iterator[None]:
    """A progress bar in the Prefect UI while a stage trains (key `<stage>-progress`), fed by the
    training routine's progress reports; updates are spaced out so the API is not flooded."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    shown = {"id": None, "at": 0.0}

    def show(what: str, percent: float, detail: str) -> None:
        now = time.monotonic()
        description = f"{stage}: {what} {detail}".strip()
        if shown["id"] is None:
            shown["id"] = create_progress_artifact(percent, key=f"{stage}-progress", description=description)
        elif percent >= 100 or now - shown["at"] >= every_seconds:
            update_progress_artifact(shown["id"], percent, description=description)
        else:
            return
        shown["at"] = now

    with progress.listening(show):
        yield
