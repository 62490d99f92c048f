"""Stage `ingest`: read the raw splits, validate them with Great Expectations, write the
validated splits (Parquet) and the label set, atomically and only when every rule passes."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import IngestConfig, Params
from tinynlp.errors import DataValidationError
from tinynlp.splits import hold_out
from tinynlp.readers import read_conll, read_hf, read_table, table_columns
from tinynlp.tagging import bio_labels, entity_type
from tinynlp import validation

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


def read_split(location: str, cfg: IngestConfig):
    if cfg.format == "hf":
        return read_hf(location, cfg.task, cfg.text_column, cfg.label_column, cfg.tag_scheme)
    if cfg.task == "ner":
        return read_conll(location, cfg.tag_scheme)
    return read_table(location, cfg.format, cfg.columns, cfg.text_column, cfg.label_column)


def label_set(cfg: IngestConfig, train) -> list[str]:
    if cfg.task == "ner":
        types = cfg.entity_types or {entity_type(t) for s in train for t in s.tags if entity_type(t)}
        return bio_labels(types)
    return list(cfg.labels) if cfg.labels else sorted(train["label"].dropna().unique().tolist())


def frames_and_rules(split: str, location: str, data, labels: list[str], train_texts, cfg: IngestConfig):
    overlap_texts = None if split.startswith("train") else train_texts
    if cfg.task == "ner":
        return (validation.ner_frames(location, data, labels),
                validation.ner_rules(labels, cfg.min_length, cfg.max_length, cfg.max_token_chars,
                                     overlap_texts, cfg.max_overlap))
    return (validation.classification_frames(location, data),
            validation.classification_rules(labels, cfg.min_length, cfg.max_length, overlap_texts, cfg.max_overlap))


def _texts(data, task: str) -> list[str]:
    return [" ".join(s.tokens) for s in data] if task == "ner" else data["text"].dropna().astype(str).tolist()


def records_table(data, task: str) -> pa.Table:
    if task == "ner":
        return pa.table({"tokens": [s.tokens for s in data], "tags": [s.tags for s in data],
                         "line": [s.line for s in data]})
    return pa.table({"text": data["text"].astype(str).tolist(), "label": data["label"].astype(str).tolist(),
                     "line": data["line"].astype(int).tolist()})


def _split_stats(data, task: str) -> dict:
    if task == "ner":
        return {"sentences": len(data), "tokens": sum(len(s.tokens) for s in data),
                "entities": sum(t.startswith("B-") for s in data for t in s.tags)}
    return {"rows": len(data), "classes": int(data["label"].nunique())}


def batch_files(batches_dir: str | Path, part: str) -> list[Path]:
    """The `part` file ("train" or "holdout") of every accepted retraining batch, oldest first
    (batch folders are named <UTC time>-<digest>)."""
    return sorted(Path(batches_dir).glob(f"*/{part}.*"))


def _concat(parts: list, task: str):
    if task == "ner":
        return [sentence for part in parts for sentence in part]
    import pandas as pd

    return pd.concat(parts, ignore_index=True)


def validate_batch(location: str | Path, params: Params, docs_dir: str | Path):
    """A retraining batch read and checked with the training split's rules and the current label
    set (a malformed batch is rejected here, before any drift test); its records on success."""
    cfg = params.ingest
    data = read_split(str(location), cfg)
    check_batch_columns(location, params)
    labels = json.loads((Path(params.paths.ingested) / "labels.json").read_text(encoding="utf-8"))["labels"]
    outcome = validation.run_suites({"batch": frames_and_rules("train", str(location), data, labels, None, cfg)},
                                    docs_dir)
    validation.raise_for(outcome)
    return data


def check_batch_columns(location: str | Path, params: Params) -> None:
    """A drifted schema: a classification batch with columns the raw training split does not have
    (another export, a new source) is refused rather than silently reduced to text and label.
    Fewer columns are fine (the required ones were checked on reading); NER files name no columns."""
    cfg, train = params.ingest, params.paths.train
    if cfg.task != "classification" or cfg.format == "hf" or cfg.columns:
        return  # header-less layouts: a different field count is already a consistent_columns error
    if not Path(train).is_file():
        log.warning("batch %s: schema not compared, the raw training split %s is not a local file", location, train)
        return
    known = table_columns(train, cfg.format, cfg.columns)
    batch = table_columns(location, cfg.format, cfg.columns)
    new = {name: line for name, line in batch.items() if name not in known}
    if new:
        raise DataValidationError.single(
            str(location), "schema_matches_train", f"column(s) {list(new)} that the training split {train} does not "
            f"have (its columns: {list(known)}; the batch's: {list(batch)})", sorted(set(new.values())), list(new))


def carve_dev(train, cfg: IngestConfig):
    """(train, dev) from the one train file: a seeded `dev_fraction` of its rows held out. Fewer
    than two rows leave dev empty, which the non-empty rule then reports against the file."""
    if len(train) < 2:
        return train, train[:0]
    return hold_out(train, cfg.dev_fraction, cfg.split_seed, "the train split")


def run_ingest(params: Params) -> dict:
    cfg, paths = params.ingest, params.paths
    # accepted retraining batches join train; each is validated as its own file so errors name it
    batches = {f"train_{f.parent.name}": str(f) for f in batch_files(paths.batches, "train")}
    locations = {**paths.raw_splits(), **batches}
    carved = cfg.dev_fraction > 0  # paths.dev is then the train file: read once, split in two
    raw = {name: read_split(location, cfg) for name, location in locations.items() if not (carved and name == "dev")}
    if carved:
        raw["train"], raw["dev"] = carve_dev(raw["train"], cfg)
    labels = label_set(cfg, raw["train"])
    train_texts = [text for name in ("train", *batches) for text in _texts(raw[name], cfg.task)]
    checks = {name: frames_and_rules(name, location, raw[name], labels, train_texts, cfg)
              for name, location in locations.items()}
    reports = Path(paths.reports) / "ingest"
    with tempfile.TemporaryDirectory(prefix=".ingest-docs-", dir=_ensure(reports.parent)) as scratch:
        outcome = validation.run_suites(checks, Path(scratch) / "data_docs")
        if outcome.violations:
            _keep_failure_report(Path(scratch) / "data_docs", outcome, Path(paths.reports) / "failed" / "ingest")
            validation.raise_for(outcome)
        raw["train"] = _concat([raw[name] for name in ("train", *batches)], cfg.task)
        stats = {split: _split_stats(raw[split], cfg.task) for split in SPLITS}
        with atomic_dir(paths.ingested) as staging:
            for split in SPLITS:
                pq.write_table(records_table(raw[split], cfg.task), staging / f"{split}.parquet")
            atomic_write_json(staging / "labels.json", {"task": cfg.task, "labels": labels})
        with atomic_dir(reports / "data_docs") as docs:
            shutil.copytree(Path(scratch) / "data_docs", docs, dirs_exist_ok=True)
    atomic_write_json(reports / "validation.json", {"task": cfg.task, "labels": labels, "splits": stats,
                                                    "validation": outcome.summary})
    metrics = {"labels": len(labels), "batches": len(batches),
               **{f"{split}_{k}": v for split in SPLITS for k, v in stats[split].items()}}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("ingest: %s validated; %d labels; %s", ", ".join(SPLITS), len(labels),
             "; ".join(f"{k}: {v}" for k, v in stats.items()))
    return metrics


def _ensure(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _keep_failure_report(docs: Path, outcome, target: Path) -> None:
    with atomic_dir(target) as staging:
        shutil.copytree(docs, staging / "data_docs", dirs_exist_ok=True)
        atomic_write_json(staging / "validation.json", {
            "violations": [str(v) for v in outcome.violations], "validation": outcome.summary})
    log.error("validation failed; Data Docs of the failed run: %s", target / "data_docs" / "index.html")
