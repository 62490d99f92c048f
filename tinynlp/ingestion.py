"""Reading and validating raw splits and retraining batches with the training data's rules: what the
`ingest` stage, the drift check and the retraining flow share."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa

from tinynlp import validation
from tinynlp.config import IngestConfig, Params, PiiConfig
from tinynlp.errors import DataValidationError
from tinynlp.readers import Sentence, read_conll, read_hf, read_table, table_columns
from tinynlp.splits import hold_out, read_labels
from tinynlp.tagging import bio_labels, entity_type

log = logging.getLogger(__name__)


def read_raw_split(location: str, cfg: IngestConfig):
    """One raw split (a file, saved dataset dir or hf:// name) in the params' format: NER sentences or a frame."""
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


@dataclass
class PiiScan:
    """What `ingest.pii` found in one split: counts per type, and (line, type, masked value) per
    finding, for the `fail` mode's rule: values are never kept whole."""

    counts: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[int, str, str]] = field(default_factory=list)
    shown: dict[int, str] = field(default_factory=dict)  # line -> text masked at its length (report mode)


def pii_settings(cfg: PiiConfig):
    from tinynlp import pii

    return pii.PiiSettings(entities=cfg.entities, custom=cfg.custom, replacements=cfg.replacements)


def pii_masker(cfg: PiiConfig) -> Callable[[str], str]:
    """What every report that shows example text to a person passes it through: personal data
    masked when the data keeps it (`report`); as it is when it was redacted at ingestion (`redact`,
    `fail`) or when the search is off."""
    if cfg.mode != "report":
        return lambda text: text
    from tinynlp import pii

    settings = pii_settings(cfg)
    return lambda text: pii.mask_text(text, settings)


def scan_pii(data, cfg: IngestConfig):
    """The split as later stages see it (redacted in `redact` mode, as read otherwise) and what was
    found in it. NER: found on the detokenised sentence, one token out per token in, tags untouched."""
    if cfg.pii.mode == "off":
        return data, PiiScan()
    from tinynlp import pii

    settings = pii_settings(cfg.pii)
    scan, redact = PiiScan(), cfg.pii.mode == "redact"
    if cfg.task == "ner":
        out = []
        for sentence in data:
            found = pii.find_tokens(sentence.tokens, settings)
            text = pii.detokenise(sentence.tokens)[0] if found else ""
            for finding, tokens in found:
                scan.findings.append((sentence.line + tokens.start, finding.type, pii.mask(text[finding.start:finding.end])))
            if found and redact:
                sentence = replace(sentence, tokens=pii.redact_tokens(sentence.tokens, settings)[0])
            out.append(sentence)
    else:
        texts = []
        for text, line in zip(data["text"].astype(str), data["line"]):
            found = pii.find(text, settings)
            scan.findings += [(int(line), f.type, pii.mask(text[f.start:f.end])) for f in found]
            texts.append(pii.redact_text(text, settings)[0] if found and redact else text)
            if found and not redact:  # what the Data Docs may render of this row
                scan.shown[int(line)] = pii.mask_spans(text, found)
        out = data.assign(text=texts) if redact else data
    scan.counts = dict(sorted(Counter(kind for _, kind, _ in scan.findings).items()))
    return out, scan


def frames_and_rules(split: str, location: str, data, labels: list[str], train_texts, cfg: IngestConfig,
                     scan: PiiScan | None = None):
    texts, lines = texts_and_lines(data, cfg.task)  # before masking: the train texts are compared unmasked
    if cfg.task == "ner":
        frames, rules = (validation.ner_frames(location, data, labels),
                         validation.ner_rules(labels, cfg.min_length, cfg.max_length, cfg.max_token_chars))
    else:
        if scan is not None and scan.shown:  # rows a failing rule would quote: personal data masked
            data = data.assign(text=[scan.shown.get(int(line), text) for line, text in zip(data["line"], data["text"])])
        frames, rules = (validation.classification_frames(location, data),
                         validation.classification_rules(labels, cfg.min_length, cfg.max_length))
    if train_texts is not None and not split.startswith("train"):
        frames, rules = validation.with_train_overlap(frames, rules, texts, lines, train_texts,
                                                      cfg.max_overlap, cfg.overlap_min_words, pii_masker(cfg.pii))
    if scan is not None and cfg.pii.mode in ("report", "fail"):  # the counts (report) or the rule (fail) in Data Docs
        frames, rules = validation.with_pii(frames, rules, scan.findings, refuse=cfg.pii.mode == "fail")
    return frames, rules


def texts_of(data, task: str) -> list[str]:
    return texts_and_lines(data, task)[0]


def texts_and_lines(data, task: str) -> tuple[list[str], list[int]]:
    """Each record's text (NER tokens joined by spaces) and its line in the file; records without a
    text are left out of both, so the two stay aligned."""
    if task == "ner":
        return [" ".join(s.tokens) for s in data], [s.line for s in data]
    kept = data.dropna(subset=["text"])
    return kept["text"].astype(str).tolist(), kept["line"].astype(int).tolist()


def records_table(data, task: str) -> pa.Table:
    if task == "ner":
        return pa.table({"tokens": [s.tokens for s in data], "tags": [s.tags for s in data],
                         "line": [s.line for s in data], "document": [s.document for s in data]})
    return pa.table({"text": data["text"].astype(str).tolist(), "label": data["label"].astype(str).tolist(),
                     "line": data["line"].astype(int).tolist()})


def batch_files(batches_dir: str | Path, part: str) -> list[Path]:
    """The `part` file ("train" or "holdout") of every accepted retraining batch, oldest first
    (batch folders are named <UTC time>-<digest>)."""
    return sorted(Path(batches_dir).glob(f"*/{part}.*"))


def concat_records(parts: list, task: str):
    """One split's records from several parts (NER sentences, or frames); each part's documents
    keep their own ids, so no document runs from one file into the next."""
    if task == "ner":
        out, offset = [], 0
        for part in parts:
            out.extend(replace(s, document=s.document + offset) for s in part)
            offset += 1 + max((s.document for s in part), default=-1)
        return out
    return pd.concat(parts, ignore_index=True)


def validate_batch(location: str | Path, params: Params, docs_dir: str | Path):
    """A retraining batch read and checked with the training split's rules and the current label
    set (a malformed batch is rejected here, before any drift test), personal data included
    (`ingest.pii`); its records on success, redacted in `redact` mode."""
    cfg = params.ingest
    data, scan = scan_pii(read_raw_split(str(location), cfg), cfg)
    check_batch_columns(location, params)
    _, labels = read_labels(params.paths.ingested)
    outcome = validation.run_suites({"batch": frames_and_rules("train", str(location), data, labels, None, cfg,
                                                               scan)}, docs_dir)
    validation.raise_for(outcome)
    if scan.counts:
        log.info("batch %s: personal data found (%s): %s", location, cfg.pii.mode,
                 ", ".join(f"{n} {kind}" for kind, n in scan.counts.items()))
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
