"""Readers for raw splits: CoNLL-style NER files, TSV/CSV/JSON Lines for classification, and
`datasets` datasets (saved to disk or on the hub). Structural problems (undecodable bytes,
ragged columns, missing columns) raise DataValidationError naming the file and line; content
rules are checked afterwards by the Great Expectations suites in `validation`."""
from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from tinynlp.errors import DataValidationError, Violation
from tinynlp.tagging import Scheme, detect_scheme, to_bio

MAX_STRUCTURE_VIOLATIONS = 20
_NULL_LABELS = {"", "nan", "NaN", "None", "null", "NA", "N/A"}


@dataclass(frozen=True)
class Sentence:
    tokens: list[str]
    tags: list[str]
    line: int  # 1-based line of the first token in the raw file (row number for datasets)


def read_text(path: str | Path) -> str:
    """Decode a UTF-8 text file (optionally gzip). BOM and CRLF are accepted; binary content,
    bytes that are not UTF-8 and truncated gzip streams are errors naming file and line."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError.single(str(path), "file_exists", "no such file")
    if path.is_dir():
        raise DataValidationError.single(str(path), "is_file", "expected a file, found a directory")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataValidationError.single(str(path), "readable_gzip", f"corrupt or truncated gzip ({exc})") from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataValidationError.single(str(path), "text_file", "binary content (NUL byte)", [line])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start: exc.start + 4]
        raise DataValidationError.single(str(path), "utf8_decodable", f"bytes that are not UTF-8 at byte {exc.start}",
                                         [line], [bad.hex(" ")]) from None
    return text.removeprefix("\ufeff")


def _lines(text: str) -> list[str]:
    # split("\n") rather than splitlines(): the latter also breaks on \x0b, \x1c, U+2028...,
    # which would shift every line number after them.
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_conll(path: str | Path, scheme: Scheme) -> list[Sentence]:
    """Token in the first column, tag in the last; tab- or space-separated; blank (or
    whitespace-only) lines end a sentence; -DOCSTART- lines end a document."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    width: tuple[int, int] | None = None  # (columns, line where that count was first seen)
    ragged: list[int] = []
    examples: list[str] = []
    for number, line in enumerate(_lines(read_text(path)), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(Sentence(tokens, tags, start))
            tokens, tags = [], []
            continue
        fields = [f.strip() for f in (stripped.split("\t") if "\t" in stripped else stripped.split())]
        if width is None:
            width = (len(fields), number)
        if len(fields) < 2 or len(fields) != width[0]:
            ragged.append(number)
            examples.append(line)
            continue
        if not tokens:
            start = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append(Sentence(tokens, tags, start))
    if ragged:
        expected = f"{width[0]} columns as on line {width[1]}" if width and width[0] >= 2 else "at least 2 columns"
        raise DataValidationError([Violation(str(path), "consistent_columns",
                                             f"{len(ragged)} line(s) without {expected} (token first, tag last)",
                                             ragged[:MAX_STRUCTURE_VIOLATIONS], examples[:5])])
    return normalise_tags(sentences, scheme)


def normalise_tags(sentences: list[Sentence], scheme: Scheme) -> list[Sentence]:
    if scheme == "auto":
        scheme = detect_scheme(s.tags for s in sentences)
    return [Sentence(s.tokens, to_bio(s.tags, scheme), s.line) for s in sentences]


def read_table(path: str | Path, fmt: str, columns: Sequence[str], text_column: str,
               label_column: str) -> pd.DataFrame:
    """A classification split as a frame with columns line, text, label (labels as strings)."""
    text = read_text(path)
    if fmt == "jsonl":
        frame, first_line = _read_jsonl(path, text), 1
    else:
        frame, first_line = _read_delimited(path, text, fmt, columns)
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise DataValidationError.single(str(path), "required_column", f"missing column(s) {missing}; "
                                         f"found {list(frame.columns)}", [first_line])
    if "line" not in frame.columns:
        frame["line"] = range(first_line + 1, first_line + 1 + len(frame))
    labels = [None if v is None or str(v) in _NULL_LABELS else str(v) for v in frame[label_column]]
    texts = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in frame[text_column]]
    return pd.DataFrame({"line": frame["line"].astype(int).tolist(), "text": pd.Series(texts, dtype=object),
                         "label": pd.Series(labels, dtype=object)})


def _read_delimited(path, text: str, fmt: str, columns: Sequence[str]) -> tuple[pd.DataFrame, int]:
    options = dict(dtype=str, keep_default_na=False, na_filter=False, on_bad_lines="error")
    if fmt == "tsv":
        options.update(sep="\t", quoting=csv.QUOTE_NONE)
    if columns:
        options.update(header=None, names=list(columns))
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(columns))
    except pd.errors.ParserError as exc:
        raise DataValidationError.single(str(path), "consistent_columns", str(exc).strip()) from None
    return frame, 0 if columns else 1


def _read_jsonl(path, text: str) -> pd.DataFrame:
    rows, lines = [], []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError.single(str(path), "json_line", f"not valid JSON ({exc.msg})", [number], [line]) from None
        if not isinstance(row, dict):
            raise DataValidationError.single(str(path), "json_object", "each line must be a JSON object", [number], [line])
        rows.append(row)
        lines.append(number)
    frame = pd.DataFrame(rows)
    frame["line"] = lines
    return frame


def read_hf(location: str, task: str, text_column: str, label_column: str, scheme: Scheme):
    """A `datasets` split: 'dir' (Dataset.save_to_disk), 'dir#split' (DatasetDict) or
    'hf://name#split' (hub; needs network). Returns sentences (NER) or a frame (classification)."""
    import datasets

    name, _, split = location.partition("#")
    if name.startswith("hf://"):
        dataset = datasets.load_dataset(name.removeprefix("hf://"), split=split or "train")
    else:
        dataset = datasets.load_from_disk(name)
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise DataValidationError.single(location, "split_exists", f"no split '{split}'; has {list(dataset)}")
            dataset = dataset[split]
    if task == "ner":
        return _hf_sentences(location, dataset, label_column, scheme)
    missing = [c for c in (text_column, label_column) if c not in dataset.column_names]
    if missing:
        raise DataValidationError.single(location, "required_column", f"missing column(s) {missing}; found {dataset.column_names}")
    feature = dataset.features[label_column]
    names = getattr(feature, "names", None)
    labels = [None if v is None else str(names[v] if names else v) for v in dataset[label_column]]
    return pd.DataFrame({"line": range(1, len(dataset) + 1), "text": dataset[text_column], "label": labels})


def _hf_sentences(location: str, dataset, label_column: str, scheme: Scheme) -> list[Sentence]:
    tag_column = next((c for c in (label_column, "ner_tags", "tags") if c in dataset.column_names), None)
    if "tokens" not in dataset.column_names or tag_column is None:
        raise DataValidationError.single(location, "required_column",
                                         f"NER datasets need 'tokens' and a tag column; found {dataset.column_names}")
    names = getattr(dataset.features[tag_column].feature, "names", None)
    sentences = [Sentence(list(row["tokens"]), [names[t] if names else str(t) for t in row[tag_column]], i)
                 for i, row in enumerate(dataset, start=1) if row["tokens"]]
    return normalise_tags(sentences, scheme)
