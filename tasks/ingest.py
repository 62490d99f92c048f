"""Stage `ingest`: read the raw splits, find personal data (reported, redacted or refused), validate
them with Great Expectations, write the validated splits (Parquet) and the label set, atomically
and only when every rule passes."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from tinynlp import validation
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.ingestion import (batch_files, carve_dev, concat_records, frames_and_rules, label_set, read_raw_split,
                               records_table, scan_pii, texts_of)
from tinynlp.splits import LABELS_FILE

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


def _split_stats(data, task: str) -> dict:
    if task == "ner":
        return {"sentences": len(data), "tokens": sum(len(s.tokens) for s in data),
                "entities": sum(t.startswith("B-") for s in data for t in s.tags)}
    return {"rows": len(data), "classes": int(data["label"].nunique())}


def run_ingest(params: Params) -> dict:
    cfg, paths = params.ingest, params.paths
    # accepted retraining batches join train; each is validated as its own file so errors name it
    batches = {f"train_{f.parent.name}": str(f) for f in batch_files(paths.batches, "train")}
    locations = {**paths.raw_splits(), **batches}
    carved = cfg.dev_fraction > 0  # paths.dev is then the train file: read once, split in two
    raw = {name: read_raw_split(location, cfg) for name, location in locations.items() if not (carved and name == "dev")}
    if carved:
        raw["train"], raw["dev"] = carve_dev(raw["train"], cfg)
    scans = {}
    for name in raw:  # personal data first: every rule and every later stage sees the redacted text
        raw[name], scans[name] = scan_pii(raw[name], cfg)
    labels = label_set(cfg, raw["train"])
    train_texts = [text for name in ("train", *batches) for text in texts_of(raw[name], cfg.task)]
    checks = {name: frames_and_rules(name, location, raw[name], labels, train_texts, cfg, scans[name])
              for name, location in locations.items()}
    reports = Path(paths.reports) / "ingest"
    with tempfile.TemporaryDirectory(prefix=".ingest-docs-", dir=_ensure(reports.parent)) as scratch:
        outcome = validation.run_suites(checks, Path(scratch) / "data_docs")
        if outcome.violations:
            _keep_failure_report(Path(scratch) / "data_docs", outcome, Path(paths.reports) / "failed" / "ingest")
            validation.raise_for(outcome)
        raw["train"] = concat_records([raw[name] for name in ("train", *batches)], cfg.task)
        stats = {split: _split_stats(raw[split], cfg.task) for split in SPLITS}
        with atomic_dir(paths.ingested) as staging:
            for split in SPLITS:
                pq.write_table(records_table(raw[split], cfg.task), staging / f"{split}.parquet")
            atomic_write_json(staging / LABELS_FILE, {"task": cfg.task, "labels": labels})
        with atomic_dir(reports / "data_docs") as docs:
            shutil.copytree(Path(scratch) / "data_docs", docs, dirs_exist_ok=True)
    pii = {"mode": cfg.pii.mode, "found": {name: scan.counts for name, scan in scans.items()}}   # counts, never values
    atomic_write_json(reports / "validation.json", {"task": cfg.task, "labels": labels, "splits": stats,
                                                    "validation": outcome.summary, "pii": pii})
    metrics = {"labels": len(labels), "batches": len(batches),
               **{f"{split}_{k}": v for split in SPLITS for k, v in stats[split].items()},
               **{f"{name}_pii": sum(scan.counts.values()) for name, scan in scans.items() if cfg.pii.mode != "off"}}
    if any(scan.counts for scan in scans.values()):
        log.info("ingest: personal data (%s): %s", "redacted" if cfg.pii.mode == "redact" else "found, kept",
                 "; ".join(f"{name}: " + ", ".join(f"{n} {kind}" for kind, n in scan.counts.items())
                           for name, scan in scans.items() if scan.counts))
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
