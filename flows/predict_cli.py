"""`tinynlp predict`: the promoted model on texts from the command line, a file or stdin."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tinynlp.errors import ConfigError, DataValidationError, Violation


def read_texts(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 file ('-' for stdin); undecodable bytes are named by line."""
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    texts = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise DataValidationError([Violation(path, "utf-8", f"not valid UTF-8 ({exc.reason})", [number])]) from None
        if text:
            texts.append(text)
    return texts


def format_result(text: str, result) -> str:
    if isinstance(result, list):  # entities
        found = "; ".join(f"{e.type}: {e.text} ({e.score:.2f})" for e in result) or "(no entities)"
        return f"{text}\n  -> {found}"
    return f"{result.label}\t{result.score:.4f}\t{text}"


def main(args) -> int:
    from tinynlp.predict import Predictor

    try:
        texts = list(args.texts) + (read_texts(args.file) if args.file else [])
        if not texts:
            print("tinynlp predict: give texts as arguments or --file", file=sys.stderr)
            return 2
        predictor = Predictor(args.model, args.threads)
    except FileNotFoundError as exc:
        print(f"tinynlp predict: {exc.filename}: file not found", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"tinynlp predict: {exc}", file=sys.stderr)
        return 2
    except DataValidationError as exc:
        print(f"tinynlp predict: {exc}", file=sys.stderr)
        return 3
    for text, result in zip(texts, predictor.predict(texts)):
        if args.json:
            payload = [dataclasses.asdict(e) for e in result] if isinstance(result, list) else dataclasses.asdict(result)
            key = "entities" if isinstance(result, list) else "prediction"
            print(json.dumps({"text": text, key: payload}, ensure_ascii=False))
        else:
            print(format_result(text, result))
    return 0
