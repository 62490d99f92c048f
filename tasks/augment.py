"""Stage `augment`: new training rows made from the validated train split (EDA for text
classification, Dai & Adel's operations for NER, noise, back-translation), checked with the
ingest stage's rules and written with their origin. Dev and test are never touched. When off,
train.parquet is copied byte for byte, so every later output equals that of a run without it."""
from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tinynlp import augment, paraphrase, validation
from tinynlp.atomic import atomic_dir, atomic_write_json, atomic_write_text
from tinynlp.config import AugmentConfig, Params
from tinynlp.errors import ConfigError
from tinynlp.readers import Sentence
from tinynlp.reporting import markdown_table
from tinynlp.ingestion import frames_and_rules, pii_masker
from tinynlp.splits import read_labels, read_split

log = logging.getLogger(__name__)
ORIGINAL = "original"
EXAMPLES_PER_METHOD = 3


def method_rates(cfg: AugmentConfig, task: str) -> dict[str, float]:
    """Each method's rate for the task; methods at 0 are off."""
    noise = cfg.noise.model_dump()
    if task == "ner":
        return {**cfg.ner.model_dump(), **noise}
    return {**cfg.eda.model_dump(), **noise, "back_translation": 1.0 if cfg.back_translation.forward else 0.0}


def _synonyms(params: Params, rates: dict[str, float], words) -> dict:
    if not (rates.get("synonym_replacement") or rates.get("random_insertion")):
        return {}
    cfg = params.augment.synonyms
    return paraphrase.checkpoint_synonyms(params.pretrain.checkpoint, words, cfg.neighbours, cfg.min_similarity)


def _translator(cfg: AugmentConfig):
    bt = cfg.back_translation
    if not bt.forward:
        return None
    return functools.partial(paraphrase.back_translate, forward=bt.forward, backward=bt.backward,
                             batch_size=bt.batch_size, max_length=bt.max_length, num_beams=bt.num_beams)


def augmented_rows(params: Params, task: str, train: dict, copies: int = 0) -> list[augment.Augmented]:
    """New rows by the augment section's operations and rates; `copies` > 0 overrides its count
    (distillation's transfer set)."""
    cfg = params.augment
    rates = method_rates(cfg, task)
    if not any(rates.values()):
        raise ConfigError("augment: every method's rate is 0, so no augmented copy can be made (augment.enabled "
                          "or distill.transfer.augmented_copies asked for some)")
    if task == "ner":
        if cfg.back_translation.forward:
            raise ConfigError("augment.back_translation: translation reorders words and cannot keep NER tags; "
                              "it is for text classification only")
        sentences = list(zip(train["tokens"], train["tags"]))
        synonyms = _synonyms(params, rates, (t for tokens in train["tokens"] for t in tokens))
        return augment.augment_ner(sentences, rates, copies or cfg.copies, cfg.seed, synonyms)
    synonyms = _synonyms(params, rates, (w for text in train["text"] for w in text.split()))
    return augment.augment_texts(train["text"], rates, copies or cfg.copies, cfg.seed, synonyms, _translator(cfg))


def merged_table(task: str, train: dict, new: list[augment.Augmented]) -> pa.Table:
    """Each validated row followed by its copies; `origin` names the method, `source_row` the row."""
    copies: dict[int, list[augment.Augmented]] = {}
    for row in new:
        copies.setdefault(row.source, []).append(row)
    columns = ("tokens", "tags") if task == "ner" else ("text", "label")
    kept = [name for name in ("line", "document") if name in train]  # a copy stays in its row's document
    out = {name: [] for name in (*columns, *kept, "origin", "source_row")}
    for index in range(len(train["line"])):
        originals = {name: train[name][index] for name in columns}
        for row in [None, *copies.get(index, [])]:
            if row is None:
                values = originals
            elif task == "ner":
                values = {"tokens": list(row.tokens), "tags": list(row.tags)}
            else:
                values = {"text": row.text, "label": originals["label"]}
            for name in columns:
                out[name].append(values[name])
            for name in kept:
                out[name].append(train[name][index])
            out["origin"].append(ORIGINAL if row is None else row.origin)
            out["source_row"].append(index)
    return pa.table(out)


def _validate(params: Params, table: pa.Table, labels: list[str], docs_dir: Path) -> None:
    """The ingest rules on the output: BIO stays valid, labels stay in the set, lengths in bounds."""
    rows = table.to_pydict()
    location = f"{params.paths.augmented}/train.parquet"
    if params.ingest.task == "ner":
        data = [Sentence(list(t), list(g), line) for t, g, line in zip(rows["tokens"], rows["tags"], rows["line"])]
    else:
        data = pd.DataFrame({"text": rows["text"], "label": rows["label"], "line": rows["line"]})
    checks = {"train_augmented": frames_and_rules("train", location, data, labels, None, params.ingest)}
    validation.raise_for(validation.run_suites(checks, docs_dir))


def _shown(tokens, tags) -> str:
    """A tagged sentence on one line: entity tokens carry their tag."""
    return " ".join(f"{t}/{g}" if g != "O" else t for t, g in zip(tokens, tags))


def report(task: str, train: dict, new: list[augment.Augmented], rows_before: int,
           shown=lambda text: text) -> tuple[dict, str]:
    """Metrics (counts per method) and a markdown report with a few examples of each method, each
    through `shown` (personal data masked)."""
    made = Counter(row.origin for row in new)
    metrics = {"enabled": True, "rows": rows_before, "augmented_rows": len(new),
               "rows_after": rows_before + len(new), **{f"made_{m}": n for m, n in sorted(made.items())}}
    examples = []
    for method in sorted(made):
        for row in [r for r in new if r.origin == method][:EXAMPLES_PER_METHOD]:
            if task == "ner":
                pair = _shown(train["tokens"][row.source], train["tags"][row.source]), _shown(row.tokens, row.tags)
            else:
                pair = train["text"][row.source], row.text
            examples.append({"method": method, "original": shown(pair[0]), "augmented": shown(pair[1])})
    counts = [{"method": m, "rows made": n} for m, n in sorted(made.items())]
    body = (f"# Augmentation\n\n{rows_before} training rows, {len(new)} augmented rows added "
            f"({rows_before + len(new)} in all).\n\n{markdown_table(counts, ['method', 'rows made'])}\n\n"
            f"## Examples\n\n{markdown_table(examples, ['method', 'original', 'augmented'])}\n")
    return metrics, body


def run_augment(params: Params) -> dict:
    cfg, paths = params.augment, params.paths
    task, labels = read_labels(paths.ingested)
    source = Path(paths.ingested) / "train.parquet"
    reports = Path(paths.reports) / "augment"
    if not cfg.enabled:
        with atomic_dir(paths.augmented) as staging:
            shutil.copyfile(source, staging / "train.parquet")
        rows = pq.read_metadata(source).num_rows
        metrics, body = {"enabled": False, "rows": rows, "augmented_rows": 0, "rows_after": rows}, \
            "# Augmentation\n\nOff (`augment.enabled: false`): the validated train split is used as it is.\n"
    else:
        train = read_split(paths.ingested, "train")
        new = augmented_rows(params, task, train)
        table = merged_table(task, train, new)
        reports.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".augment-docs-", dir=reports) as scratch:
            _validate(params, table, labels, Path(scratch))
        with atomic_dir(paths.augmented) as staging:
            pq.write_table(table, staging / "train.parquet")
        metrics, body = report(task, train, new, len(train["line"]), pii_masker(params.ingest.pii))
    atomic_write_json(reports / "metrics.json", metrics)
    atomic_write_text(reports / "report.md", body)
    log.info("augment: %d training rows -> %d (%s)", metrics["rows"], metrics["rows_after"],
             ", ".join(f"{k[5:]} {v}" for k, v in metrics.items() if k.startswith("made_")) or "off")
    return metrics
