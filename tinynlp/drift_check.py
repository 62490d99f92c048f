"""The drift check (`tinynlp drift`, the retraining flow): a new batch against the promoted model's training data.

The batch is validated with the training split's Great Expectations rules first (a malformed batch
is an error, not drift). Both sides are subsampled (`drift.max_samples`, seeded) before the costly
steps: embedding with the promoted model's own encoder (`encoder.onnx`, mean-pooled) and predicting
with its `model.onnx`. The verdict and every figure go to `reports/drift/report.json`."""
from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from tinynlp import drift, labelling, retraining
from tinynlp.atomic import atomic_write_json, atomic_write_text
from tinynlp.capture import Unlabelled, read_capture, read_plain_text, read_tokens_only
from tinynlp.config import DriftConfig, Params
from tinynlp.errors import ConfigError, DataValidationError
from tinynlp.fingerprints import digest
from tinynlp.ingestion import pii_masker, pii_settings, records_table, validate_batch
from tinynlp.readers import Sentence, read_table, read_text, table_columns, text_lines
from tinynlp.model_dir import ENCODER_FILE
from tinynlp.splits import read_split

log = logging.getLogger(__name__)
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Side:
    """One side of the comparison. `words` holds every row (length and vocabulary are cheap); the
    rest describes a seeded subsample of at most `drift.max_samples` rows, since embedding and
    predicting are the costly steps and permutation tests grow with the rows."""

    words: list[list[str]]
    vectors: np.ndarray
    labels: list | None          # None: the batch is unlabelled
    predicted: list | None       # the promoted model's class, or BIO tags, per row (None: no model)
    confidence: list[float] | None   # its probability of that class, or mean over the words
    unknown_rate: float          # share of subword tokens that are [UNK]
    least: list[float] | None = None    # the least sure word's probability (classification: = confidence)
    rows: list[int] | None = None       # which rows of `words` were sampled


def embed_texts(runner: Runner, tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> np.ndarray:
    """One embedding per text, in input order. Texts go through sorted by length, so each batch pads
    to about its own length rather than the longest text's."""
    if not texts:
        return np.zeros((0, 0), np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    chunks = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer([texts[i] for i in order[start:start + batch_size]], truncation=True,
                            max_length=max_length, padding=True, return_tensors="np")
        chunks.append(runner(encoded["input_ids"], encoded["attention_mask"]))
    vectors = np.concatenate(chunks)
    return vectors[np.argsort(order, kind="stable")]


def subword_counts(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per text, its [UNK] subword tokens and all its subword tokens (without specials): kept per row
    so that any subset's rate is a sum, not a second tokenization."""
    rows = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    unknown = np.array([sum(i == tokenizer.unk_token_id for i in row) for row in rows], np.int64)
    return unknown, np.array([len(row) for row in rows], np.int64)


def unknown_rate(unknown: np.ndarray, total: np.ndarray) -> float:
    return float(unknown.sum() / max(int(total.sum()), 1))


def predict_rows(predictor, words: list[list[str]], texts: list[str], task: str) -> tuple[list, list[float], list[float]]:
    """The promoted model's label per row (NER: BIO tags), its confidence (NER: mean over words) and
    the least sure word's probability (classification: the confidence again)."""
    if task == "ner":
        from tinynlp.predict import word_confidence

        tagged = predictor.tag_words(words)
        predicted, sure = [tags for tags, _ in tagged], [word_confidence(p) for _, p in tagged]
        confidence, lowest = [mean for mean, _ in sure], [least for _, least in sure]
    else:
        labels = predictor.label_texts(texts)
        predicted, confidence = [l.label for l in labels], [l.score for l in labels]
        lowest = confidence
    return predicted, confidence, lowest


def drift_signals(cfg: DriftConfig, reference: Side, batch: Side) -> list[drift.Signal]:
    """Every test the config describes, in report order; labels only when both sides have them,
    predictions only when a model made them."""
    tests = dict(alpha=cfg.alpha, permutations=cfg.permutations, seed=cfg.seed)
    signals = [
        drift.embedding_drift(reference.vectors, batch.vectors, max_samples=cfg.max_samples, **tests),
        drift.length_drift([len(w) for w in reference.words], [len(w) for w in batch.words], alpha=cfg.alpha),
        drift.vocabulary_drift(reference.words, batch.words, ref_unknown_rate=reference.unknown_rate,
                               batch_unknown_rate=batch.unknown_rate, max_increase=cfg.max_oov_increase,
                               top_k=cfg.top_new_tokens, seed=cfg.seed)]
    if batch.labels is not None and reference.labels is not None:
        signals.append(drift.label_drift(reference.labels, batch.labels, **tests))
    if batch.predicted is not None and reference.predicted is not None:
        signals.append(drift.prediction_drift(reference.predicted, batch.predicted, reference.confidence,
                                              batch.confidence, **tests))
    return signals


def _rows(columns: dict, task: str) -> tuple[list[list[str]], list[str], list | None]:
    """(words, text, label) per row of a split's columns; NER text is the tokens joined by spaces."""
    if task == "ner":
        return [list(t) for t in columns["tokens"]], [" ".join(t) for t in columns["tokens"]], columns.get("tags")
    labels = columns.get("label")
    return ([str(t).split() for t in columns["text"]], [str(t) for t in columns["text"]],
            None if labels is None or any(l is None for l in labels) else labels)


def _side(columns: dict, task: str, rng: np.random.Generator, encoder: Runner, predictor, cfg: DriftConfig) -> Side:
    words, texts, labels = _rows(columns, task)
    rows = drift.subsample(len(texts), cfg.max_samples, rng)
    sampled_words, sampled_texts = [words[i] for i in rows], [texts[i] for i in rows]
    log.info("drift: embedding and predicting %d of %d rows", len(rows), len(texts))
    vectors = embed_texts(encoder, predictor.tokenizer, sampled_texts, predictor.meta["max_length"], cfg.batch_size)
    predicted, confidence, least = predict_rows(predictor, sampled_words, sampled_texts, task)
    return Side(words, vectors, None if labels is None else [labels[i] for i in rows], predicted, confidence,
                unknown_rate(*subword_counts(predictor.tokenizer, sampled_texts)), least, rows.tolist())


def _encoder_path(promoted: Path) -> Path:
    path = promoted / ENCODER_FILE
    if not path.is_file():
        raise ConfigError(f"{promoted}: no {ENCODER_FILE} (the promoted model's mean-pooled encoder, which the "
                          "drift embeddings need); re-run the evaluate stage (`dvc repro evaluate`) to promote "
                          "a model with one")
    return path


def _validated_records(batch: str | Path, params: Params):
    # a passing batch's Data Docs are not kept: a failing one raises with the file, line and rule
    with tempfile.TemporaryDirectory(prefix="drift-docs-") as docs:
        return validate_batch(batch, params, Path(docs) / "data_docs")


TAG = re.compile(r"^(O|[BIES]-\S+)$")


def read_unlabelled(batch: str | Path, params: Params) -> Unlabelled | None:
    """`batch` as unlabelled rows when it has no labels: a capture folder, a `.txt` file of one text
    per line, (NER) a CoNLL file without a tag column (no line ends in a tag), or (classification)
    a TSV/CSV/JSON-lines file with the text column and no label column.
    None: a labelled file, validated with the training split's rules as before. Personal data is
    redacted unless ingest.pii.mode is report or off (then reports mask what they show)."""
    from tinynlp.predict import split_words

    path, task = Path(batch), params.ingest.task
    tagged = 0.0  # how much of an NER file looks tagged, read once; not a local file: labelled (ingest reads it)
    if task == "ner":
        tagged = _tag_share(path) if path.is_file() else 1.0
    if path.is_dir():
        rows = read_capture(path, split_words)
    elif path.suffix == ".txt" and tagged <= 0.5:
        rows = read_plain_text(path, split_words)
    elif task == "ner" and params.ingest.format == "conll" and tagged == 0:
        rows = read_tokens_only(path)
    elif task == "classification" and _lacks_labels(path, params.ingest):
        rows = _texts_only(path, params.ingest, split_words)
    else:
        return None
    if params.ingest.pii.mode in ("redact", "fail"):  # unlabelled traffic is not refused for personal data
        from tinynlp import pii

        settings = pii_settings(params.ingest.pii)
        words = [pii.redact_tokens(w, settings)[0] for w in rows.words]
        texts = [" ".join(w) if task == "ner" else pii.redact_text(t, settings)[0] for w, t in zip(words, rows.texts)]
        rows = replace(rows, words=words, texts=texts)
    return rows


def _tag_share(path: Path) -> float:
    """Share of the token lines with 2+ columns and a BIO/IOBES tag last. Any at all makes a CoNLL
    file labelled (so a malformed labelled file fails validation, never passes as unlabelled text);
    a `.txt` file is labelled only when most lines are."""
    lines = [line.split() for line in text_lines(read_text(path)) if line.strip() and not line.startswith("-DOCSTART-")]
    return sum(len(fields) >= 2 and bool(TAG.match(fields[-1])) for fields in lines) / max(len(lines), 1)


def _lacks_labels(path: Path, ingest) -> bool:
    """A TSV/CSV/JSON-lines file with the text column and no label column (header-less layouts
    name their columns in params, so they always have both)."""
    if ingest.format not in ("tsv", "csv", "jsonl") or ingest.columns:
        return False
    names = table_columns(path, ingest.format, ingest.columns)
    return ingest.text_column in names and ingest.label_column not in names


def _texts_only(path: Path, ingest, split_words) -> Unlabelled:
    # read_table needs a label column: the text column stands in for it, and is not used as one
    frame = read_table(path, ingest.format, ingest.columns, ingest.text_column, ingest.text_column)
    frame = frame[frame["text"].notna() & (frame["text"].astype(str).str.strip() != "")]
    texts = frame["text"].astype(str).tolist()
    if not texts:
        raise DataValidationError.single(str(path), "not_empty", "no texts to test for drift")
    return Unlabelled([split_words(t) for t in texts], texts, [(str(path), int(n)) for n in frame["line"]], "table")


def _unlabelled_columns(rows: Unlabelled, task: str) -> dict:
    return {"tokens": rows.words} if task == "ner" else {"text": rows.texts}


def run_drift(params: Params, batch: str | Path, out_dir: Path | None = None) -> dict:
    """Test `batch` (validated when labelled) against the promoted model's training data; when
    unlabelled data drifted, write a labelling queue. Write and return the report."""
    from tinynlp.modeling import available_cores
    from tinynlp.predict import Predictor
    from tinynlp.quantization import OnnxRunner

    cfg, paths, task = params.drift, params.paths, params.ingest.task
    promoted = Path(paths.promoted)
    encoder_path = _encoder_path(promoted)
    unlabelled = read_unlabelled(batch, params)
    if unlabelled is None:
        records = _validated_records(batch, params)
        columns = records_table(records, task).to_pydict()
        log.info("drift: batch %s is valid (%d rows); reference: %s", batch, len(records),
                 Path(paths.ingested) / "train.parquet")
    else:
        columns = _unlabelled_columns(unlabelled, task)
        log.info("drift: %s: %d unlabelled rows (%s); reference: %s", batch, len(unlabelled.texts), unlabelled.kind,
                 Path(paths.ingested) / "train.parquet")
    predictor = Predictor(promoted, available_cores(), cfg.batch_size)
    encoder = OnnxRunner(encoder_path, available_cores())
    rng = np.random.default_rng(cfg.seed)
    reference = _side(_reference_columns(paths.ingested, task, unlabelled), task, rng, encoder, predictor, cfg)
    new = _side(columns, task, rng, encoder, predictor, cfg)
    shown = pii_masker(params.ingest.pii)   # the new tokens a report lists: personal data masked
    signals = [replace(s, detail={**s.detail, "top_new_tokens": [[shown(w), n] for w, n in
                                                                              s.detail["top_new_tokens"]]})
               if "top_new_tokens" in s.detail else s for s in drift_signals(cfg, reference, new)]
    available = [s.name for s in signals]
    decide_on = [name for name in (cfg.decide_on if unlabelled is None else cfg.decide_on_unlabelled)
                 if name in available]
    verdict = drift.decide(signals, decide_on)
    report = {"batch": str(batch), "labelled": unlabelled is None,
              "input": "labelled file" if unlabelled is None else unlabelled.kind,
              "signals_available": available, "decided_on": decide_on, "verdict": verdict.to_dict(),
              "reference_rows": len(reference.words), "batch_rows": len(new.words),
              "sampled": {"reference": len(reference.vectors), "batch": len(new.vectors)},
              "reference": str(Path(paths.ingested) / "train.parquet"),
              "reference_digest": digest([Path(paths.ingested) / "train.parquet"], names=False),
              "promoted_variant": predictor.meta.get("variant"), "params": cfg.model_dump(mode="json")}
    if unlabelled is not None and verdict.drifted:
        report["labelling_queue"] = write_labelling_queue(params, unlabelled, reference, new)
    atomic_write_json(Path(out_dir or Path(paths.reports) / "drift") / "report.json", report)
    log.info("drift: %s: %s", "DRIFT" if verdict.drifted else "no drift", "; ".join(verdict.reasons))
    return report


def _reference_columns(ingested: str, task: str, unlabelled: Unlabelled | None) -> dict:
    """The training split; against raw texts (a capture, plain text) its NER sentences are split
    into words as served texts are, so lengths, vocabulary and predictions compare like with like."""
    columns = read_split(ingested, "train")
    if task != "ner" or unlabelled is None or unlabelled.kind == "conll":
        return columns
    from tinynlp.predict import split_words

    return {"tokens": [split_words(" ".join(tokens)) for tokens in columns["tokens"]]}


def write_labelling_queue(params: Params, rows: Unlabelled, reference: Side, batch: Side) -> dict:
    """The `drift.queue_size` sampled texts to label first (tinynlp.labelling), in the training
    data's format with the model's predictions as pre-annotations, and a JSON manifest beside it
    (where each text came from, how sure the model was). Returns the manifest."""
    cfg, ingest = params.drift, params.ingest
    texts = [rows.texts[i] for i in batch.rows]
    chosen, how = labelling.uncertainty_queue(batch.vectors, reference.vectors, batch.least, texts, cfg.queue_size,
                                              cfg.seed)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # a hub dataset (format hf) has no file format of its own: render writes CoNLL or CSV for it
    suffix = retraining.SUFFIXES.get(ingest.format, ".conll" if ingest.task == "ner" else ".csv")
    target = Path(cfg.queue_dir) / f"queue-{stamp}{suffix}"
    if ingest.task == "ner":
        records = [Sentence(rows.words[batch.rows[i]], batch.predicted[i], 0) for i in chosen]
    else:
        records = pd.DataFrame({"text": [texts[i] for i in chosen], "label": [batch.predicted[i] for i in chosen]})
    atomic_write_text(target, retraining.render(records, ingest))  # as the retraining flow writes batches
    manifest = {"file": str(target), "texts": len(chosen), "selection": how, "rows": [
        {"origin": f"{rows.origins[batch.rows[i]][0]}:{rows.origins[batch.rows[i]][1]}",
         "least_confidence": round(batch.least[i], 4), "confidence": round(batch.confidence[i], 4)} for i in chosen],
        "next": f"correct the pre-annotated labels in {target.name}, then move it to {params.paths.incoming}/: "
                "the retraining flow takes it from there"}
    atomic_write_json(target.with_suffix(".json"), manifest)
    log.info("drift: labelling queue of %d text(s) written to %s (least sure first)", len(chosen), target)
    return manifest


def signal_rows(verdict: dict, decide_on) -> list[dict]:
    # a threshold signal (vocabulary: excess out-of-vocabulary rate) has no p-value: a dash, not "None"
    return [{"signal": s["name"], "statistic": s["statistic"], "p_value": "–" if s["p_value"] is None else s["p_value"],
             "flagged": s["drifted"], "decides": s["name"] in decide_on} for s in verdict["signals"]]
