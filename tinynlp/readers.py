"""Readers for raw splits: CoNLL-style NER files, TSV/CSV/JSON Lines for classification, and
`datasets` datasets (saved to disk or on the hub). Structural problems (undecodable bytes,
ragged columns, missing columns) raise DataValidationError naming the file and line; content
rules are checked afterwards by the Great Expectations suites in `validation`."""
from __future__ import annotations

import csv
import json
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

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
    document: int = 0  # which -DOCSTART- document of the file it is in (0 for a file without them)


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
        raw = _gunzip(path, raw)
    if b"\x00" in raw:
        at = raw.index(b"\x00")
        line = raw[:at].count(b"\n") + 1
        raise DataValidationError.single(str(path), "text_file", f"binary content (NUL byte at byte {at})", [line],
                                         [raw[max(0, at - 4): at + 4].hex(" ")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start: exc.start + 4]
        raise DataValidationError.single(str(path), "utf8_decodable", f"bytes that are not UTF-8 at byte {exc.start}",
                                         [line], [bad.hex(" ")]) from None
    return text.removeprefix("\ufeff")


def _gunzip(path: Path, raw: bytes) -> bytes:
    """gzip members one after another (as gzip.decompress), but a stream cut short is named with the
    line it breaks off in, and a file that is not gzip at all says so."""
    out, rest = [], raw
    while rest:
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(stream.decompress(rest))
        except zlib.error as exc:
            raise DataValidationError.single(str(path), "readable_gzip", f"not a readable gzip stream ({exc})") from None
        if not stream.eof:
            text = b"".join(out)
            line = max(1, text.count(b"\n") + (not text.endswith(b"\n")))
            last = text.rstrip(b"\n").rsplit(b"\n", 1)[-1][-40:].decode("utf-8", "replace")
            raise DataValidationError.single(
                str(path), "readable_gzip", f"truncated gzip: the stream breaks off after {len(text)} decompressed "
                f"bytes, in line {line}, without its end-of-stream marker", [line], [last] if last else [])
        rest = stream.unused_data.lstrip(b"\x00")  # zero padding between or after members is allowed
    return b"".join(out)


def text_lines(text: str) -> list[str]:
    # split("\n") rather than splitlines(): the latter also breaks on \x0b, \x1c, U+2028...,
    # which would shift every line number after them.
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_conll(path: str | Path, scheme: Scheme) -> list[Sentence]:
    """Token in the first column, tag in the last; tab- or space-separated; blank (or
    whitespace-only) lines end a sentence; -DOCSTART- lines end a document."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = document = 0
    width: tuple[int, int] | None = None  # (columns, line where that count was first seen)
    ragged: list[int] = []
    examples: list[str] = []
    for number, line in enumerate(text_lines(read_text(path)), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(Sentence(tokens, tags, start, document))
            tokens, tags = [], []
            if stripped and sentences and sentences[-1].document == document:
                document += 1  # a -DOCSTART- after sentences opens the next document
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
        sentences.append(Sentence(tokens, tags, start, document))
    if ragged:
        expected = f"{width[0]} columns as on line {width[1]}" if width and width[0] >= 2 else "at least 2 columns"
        raise DataValidationError([Violation(str(path), "consistent_columns",
                                             f"{len(ragged)} line(s) without {expected} (token first, tag last)",
                                             ragged[:MAX_STRUCTURE_VIOLATIONS], examples[:5])])
    return normalise_tags(sentences, scheme)


def conll_lines(rows: Iterable[tuple[Sequence[str], Sequence[str]]]) -> str:
    """Sentences as CoNLL text (what read_conll reads): a token and its tag per line, a blank line
    after each sentence."""
    return "".join("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\n" for words, tags in rows)


def normalise_tags(sentences: list[Sentence], scheme: Scheme) -> list[Sentence]:
    if scheme == "auto":
        scheme = detect_scheme(s.tags for s in sentences)
    return [replace(s, tags=to_bio(s.tags, scheme)) for s in sentences]


def read_table(path: str | Path, fmt: str, columns: Sequence[str], text_column: str,
               label_column: str) -> pd.DataFrame:
    """A classification split as a frame with columns line, text, label (labels as strings);
    `line` is the line each row starts on, blank lines and quoted line breaks counted."""
    header, header_line, lines, rows = _table(path, read_text(path), fmt, columns)
    if not header and not rows:  # an empty file: the non_empty_split rule reports it, as for NER
        header = [text_column, label_column]
    missing = [c for c in (text_column, label_column) if c not in header]
    if missing:
        raise DataValidationError.single(str(path), "required_column", f"missing column(s) {missing}; "
                                         f"found {header}", [header_line])
    text_at, label_at = header.index(text_column), header.index(label_column)
    labels = [None if row[label_at] is None or str(row[label_at]) in _NULL_LABELS else str(row[label_at])
              for row in rows]
    texts = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in (r[text_at] for r in rows)]
    return pd.DataFrame({"line": pd.Series(lines, dtype=int), "text": pd.Series(texts, dtype=object),
                         "label": pd.Series(labels, dtype=object)})


def table_columns(path: str | Path, fmt: str, columns: Sequence[str]) -> dict[str, int]:
    """The column names a classification file carries, each with the line it first appears on: its
    header (TSV/CSV), `columns` for a header-less layout, or every key its JSON lines use."""
    header, header_line, lines, rows = _table(path, read_text(path), fmt, columns)
    if fmt != "jsonl":
        return {name: header_line for name in header}
    return {name: next((n for n, row in zip(lines, rows) if row[i] is not None), header_line)
            for i, name in enumerate(header)}


def _table(path, text: str, fmt: str, columns: Sequence[str]) -> tuple[list[str], int, list[int], list[list]]:
    """(column names, line of the header, start line of each row, rows as lists in column order)."""
    if fmt == "jsonl":
        return _read_jsonl(path, text)
    return _read_delimited(path, text, fmt, columns)


def _read_delimited(path, text: str, fmt: str, columns: Sequence[str]) -> tuple[list[str], int, list[int], list[list]]:
    """TSV without quoting, or CSV with RFC 4180 quoting. Every row must have the header's number
    of fields (or as many as `columns` names): a row with fewer or more is an error naming its line,
    never a shifted column or a silently empty field."""
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # long rows go to the length rules
    physical = text_lines(text)
    reader = csv.reader((line + "\n" for line in physical), **dialect)
    header, header_line = (list(columns), 0) if columns else ([], 1)
    lines, rows, ragged = [], [], []
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if len(record) <= 1 and not "".join(record).strip():  # a blank or whitespace-only line
                continue
            if not header:
                header, header_line = record, start
                continue
            if len(record) != len(header):
                ragged.append((start, len(record)))
                continue
            lines.append(start)
            rows.append(record)
    except csv.Error as exc:
        line = reader.line_num
        raise DataValidationError.single(str(path), "csv_syntax", f"unreadable {fmt.upper()} ({exc})", [line],
                                         [physical[line - 1]] if 0 < line <= len(physical) else []) from None
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataValidationError.single(str(path), "unique_columns", f"column name(s) {duplicated} occur more "
                                         f"than once in {header}", [header_line])
    if ragged:
        source = "ingest.columns names" if columns else f"the header on line {header_line} has"
        counts = sorted({n for _, n in ragged})
        raise DataValidationError([Violation(
            str(path), "consistent_columns", f"{len(ragged)} row(s) with {' or '.join(map(str, counts))} field(s) "
            f"where {source} {len(header)} {header}",
            [n for n, _ in ragged][:MAX_STRUCTURE_VIOLATIONS], [physical[n - 1] for n, _ in ragged[:5]])])
    return header, header_line, lines, rows


def _read_jsonl(path, text: str) -> tuple[list[str], int, list[int], list[list]]:
    objects, lines = [], []
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError.single(str(path), "json_line", f"not valid JSON ({exc.msg})", [number], [line]) from None
        if not isinstance(row, dict):
            raise DataValidationError.single(str(path), "json_object", "each line must be a JSON object", [number], [line])
        objects.append(row)
        lines.append(number)
    header = list(dict.fromkeys(key for row in objects for key in row))
    return header, lines[0] if lines else 1, lines, [[row.get(key) for key in header] for row in objects]


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
