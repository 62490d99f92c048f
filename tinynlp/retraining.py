"""What the retraining flow does to data and models, without Prefect, git or DVC: gather a new
batch, split it into a training part and a held-out part, write both in the training format,
score a promoted model on a split, and decide champion against challenger."""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tinynlp.atomic import atomic_write_text
from tinynlp.config import IngestConfig, Params, escapes
from tinynlp.errors import ConfigError
from tinynlp.fingerprints import digest
from tinynlp.heads import head_for
from tinynlp.inference import predict_logits
from tinynlp.ingestion import read_raw_split, records_table, scan_pii
from tinynlp.model_dir import MODEL_FILE, read_meta, spec_of
from tinynlp.readers import conll_lines
from tinynlp.splits import hold_out

log = logging.getLogger(__name__)
SUFFIXES = {"conll": ".conll", "tsv": ".tsv", "csv": ".csv", "jsonl": ".jsonl"}
IGNORED = {"README.md", ".gitignore", ".gitkeep"}


def incoming_files(incoming_dir: str | Path, roots: list[Path] | None = None) -> list[Path]:
    """Files waiting in the incoming folder (its README and hidden files aside), oldest name first.
    A file that leads outside `roots` (a symlink dropped into the folder) is refused."""
    folder = Path(incoming_dir)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in IGNORED and not p.name.startswith("."))
    for path in files:
        if roots and (target := escapes(path, roots)) is not None:
            raise ConfigError(f"{path}: leads to {target}, outside the workspace; a batch in {folder} must be a "
                              "file inside it (or under paths.allow_outside)")
    return files


def read_batch(files: list[Path], cfg: IngestConfig):
    """The records of every file of a batch in one collection (NER sentences or a frame), with
    personal data redacted in `ingest.pii.mode: redact`: what data/batches/ keeps is what training
    sees, never the raw values."""
    if cfg.format == "hf":
        raise ConfigError("retraining batches are files: set ingest.format to conll, tsv, csv or jsonl")
    parts = [read_raw_split(str(f), cfg) for f in files]
    records = [sentence for part in parts for sentence in part] if cfg.task == "ner" else pd.concat(parts, ignore_index=True)
    return scan_pii(records, cfg)[0] if cfg.pii.mode == "redact" else records


def batch_id(files: list[Path], now: datetime | None = None) -> str:
    """<UTC time>-<content digest>: sorts by arrival, and names the same content the same way."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{digest(files, names=False, length=8)}"


def split_batch(records, fraction: float, seed: int):
    """(train part, held-out part): a seeded random split of the rows, at least one row each."""
    try:
        return hold_out(records, fraction, seed, "a retraining batch")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def render(records, cfg: IngestConfig) -> str:
    """Records written back in the training data's format, so ingest reads them like any split."""
    if cfg.task == "ner":
        return conll_lines((s.tokens, s.tags) for s in records)
    frame = pd.DataFrame({cfg.text_column: records["text"], cfg.label_column: records["label"]})
    if cfg.format == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in frame.to_dict("records"))
    if cfg.columns:  # a header-less layout: the named columns, in order, unnamed ones empty
        frame = pd.DataFrame({c: frame[c] if c in frame else "" for c in cfg.columns})
    buffer = io.StringIO()
    options = {"sep": "\t", "quoting": csv.QUOTE_NONE, "escapechar": None} if cfg.format == "tsv" else {}
    frame.to_csv(buffer, index=False, header=not cfg.columns, lineterminator="\n", **options)
    return buffer.getvalue()


def write_batch(directory: Path, train, holdout, cfg: IngestConfig) -> dict[str, Path]:
    suffix = SUFFIXES[cfg.format]
    written = {}
    for part, records in (("train", train), ("holdout", holdout)):
        written[part] = directory / f"{part}{suffix}"
        atomic_write_text(written[part], render(records, cfg))
    return written


def columns_of(records, task: str) -> dict[str, list]:
    """Records as the column dict the heads encode (what read_split gives for a validated split)."""
    return records_table(records, task).to_pydict()


def score_model_dir(model_dir: str | Path, split: dict, threads: int, batch_size: int = 64) -> dict:
    """A promoted model directory (ONNX graph, tokenizer, pipeline.json) scored on one split."""
    from transformers import AutoTokenizer

    from tinynlp.quantization import OnnxRunner

    directory = Path(model_dir)
    spec = spec_of(read_meta(directory))
    head = head_for(spec.task)
    tokenizer = AutoTokenizer.from_pretrained(directory)  # a promoted dir holds ONNX, no weights to check
    encoded = head.encode(tokenizer, split, spec)
    logits = predict_logits(OnnxRunner(directory / MODEL_FILE, threads), head.features(encoded), batch_size,
                            tokenizer.pad_token_id)
    return {"metric": head.metric, **head.summary(head.score(encoded, logits, split, spec))}


@dataclass
class Comparison:
    """Champion against challenger on the old test split and on the new batch's held-out part."""

    metric: str
    champion: dict                      # {"old": score, "new": score}
    challenger: dict
    promote: bool = False
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"metric": self.metric, "champion": self.champion, "challenger": self.challenger,
                "promote": self.promote, "reasons": self.reasons}


def compare(metric: str, champion: dict, challenger: dict, params: Params) -> Comparison:
    """The retraining gate: no loss on the old test split beyond `max_old_drop`, and a gain on
    the new data's held-out part above `min_new_gain`. Both conditions are reported with figures."""
    gate = params.retrain.gate
    old_drop = champion["old"] - challenger["old"]
    new_gain = challenger["new"] - champion["new"]
    reasons = [f"old test {metric}: challenger {challenger['old']:.4f} vs champion {champion['old']:.4f} "
               f"(drop {old_drop:+.4f}, allowed {gate.max_old_drop})",
               f"new held-out {metric}: challenger {challenger['new']:.4f} vs champion {champion['new']:.4f} "
               f"(gain {new_gain:+.4f}, needed > {gate.min_new_gain})"]
    promote = old_drop <= gate.max_old_drop + 1e-12 and new_gain > gate.min_new_gain
    return Comparison(metric, champion, challenger, promote, reasons)
