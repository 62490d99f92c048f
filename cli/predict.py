"""`tinynlp predict`: the promoted model on texts from the command line, a file or stdin."""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Iterator

from tinynlp.errors import EXIT_CONFIG, ConfigError, DataValidationError, PipelineError, Violation, exit_code


def read_texts(path: str) -> Iterator[str]:
    """Non-empty lines of a UTF-8 file ('-' for stdin), read lazily; undecodable bytes are named
    by line."""
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    try:
        for number, line in enumerate(stream, start=1):
            try:
                text = line.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataValidationError([Violation(path, "utf-8", f"not valid UTF-8 ({exc.reason})",
                                                     [number])]) from None
            if text:
                yield text
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def format_result(text: str, result) -> str:
    if isinstance(result, list):  # entities
        found = "; ".join(f"{e.type}: {e.text} ({e.score:.2f})" for e in result) or "(no entities)"
        return f"{text}\n  -> {found}"
    return f"{result.label}\t{result.score:.4f}\t{text}"


def main(args) -> int:
    from tinynlp.predict import Predictor

    if not args.texts and not args.file:
        print("tinynlp predict: give texts as arguments or --file", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.file and args.file != "-" and not Path(args.file).is_file():
            raise ConfigError(f"{args.file}: file not found")
        predictor = Predictor(args.model, args.threads, redact_pii=args.redact_pii)
        texts = itertools.chain(args.texts, read_texts(args.file) if args.file else [])
        for text, result in predictor.stream(texts, args.chunk, args.document):
            print(format_json(text, result) if args.json else format_result(text, result))
    except PipelineError as exc:
        print(f"tinynlp predict: {exc}", file=sys.stderr)
        return exit_code(exc)
    return exit_code(None)


def entity_record(entity) -> dict:
    """An entity under the field names of the Hugging Face token-classification pipeline's
    aggregated output (`entity_group`, `score`, `word`, character `start`/`end`), plus its word
    span (`word_start` inclusive, `word_end` exclusive)."""
    return {"entity_group": entity.type, "score": entity.score, "word": entity.text, "start": entity.char_start,
            "end": entity.char_end, "word_start": entity.start, "word_end": entity.end}


def as_record(text: str, result) -> dict:
    """One prediction as JSON-ready data: {"text", "entities"} (NER) or {"text", "prediction"}."""
    if isinstance(result, list):
        return {"text": text, "entities": [entity_record(e) for e in result]}
    return {"text": text, "prediction": dataclasses.asdict(result)}


def format_json(text: str, result) -> str:
    return json.dumps(as_record(text, result), ensure_ascii=False)
