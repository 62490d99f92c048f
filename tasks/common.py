"""Helpers the stages share: reading the validated splits and the label set."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq


def read_labels(ingested_dir: str) -> tuple[str, list[str]]:
    meta = json.loads((Path(ingested_dir) / "labels.json").read_text(encoding="utf-8"))
    return meta["task"], list(meta["labels"])


def read_split(ingested_dir: str, split: str, limit: int = 0) -> dict[str, list]:
    """A validated split as columns; `limit` > 0 keeps the first rows (quick runs)."""
    table = pq.read_table(Path(ingested_dir) / f"{split}.parquet")
    if limit:
        table = table.slice(0, limit)
    return table.to_pydict()
