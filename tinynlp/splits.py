"""The validated splits as the stages read them (`data/ingest/<split>.parquet`, `labels.json`, the
augment stage's train split), and seeded hold-outs of a split's records (NER sentences or a
classification frame): a retraining batch's held-out part, a dev split carved out of train."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

LABELS_FILE = "labels.json"


def read_labels(ingested_dir: str | Path) -> tuple[str, list[str]]:
    """(task, label set) of the validated splits."""
    meta = json.loads((Path(ingested_dir) / LABELS_FILE).read_text(encoding="utf-8"))
    return meta["task"], list(meta["labels"])


def read_split(ingested_dir: str | Path, split: str, limit: int = 0) -> dict[str, list]:
    """A validated split as columns; `limit` > 0 keeps the first rows (quick runs)."""
    table = pq.read_table(Path(ingested_dir) / f"{split}.parquet")
    if limit:
        table = table.slice(0, limit)
    return table.to_pydict()


def read_training_split(augmented_dir: str | Path, limit: int = 0) -> dict[str, list]:
    """The augment stage's train split: the validated rows, each followed by its augmented copies
    when augmentation is on. `limit` > 0 keeps the first `limit` validated rows and their copies."""
    table = pq.read_table(Path(augmented_dir) / "train.parquet")
    if limit and "source_row" in table.column_names:
        table = table.filter(pc.less(table["source_row"], limit))
    elif limit:
        table = table.slice(0, limit)
    return table.to_pydict()


def hold_out(records, fraction: float, seed: int, what: str = "the split"):
    """(kept, held out): a seeded random `fraction` of the rows held out, at least one row on each
    side; both keep the rows' original order (and their `line`, so errors still name the file's line)."""
    count = len(records)
    if count < 2:
        raise ValueError(f"{what} needs at least 2 rows to hold some out; it has {count}")
    order = np.random.default_rng(seed).permutation(count)
    held = min(count - 1, max(1, round(count * fraction)))
    held_rows, kept_rows = sorted(order[:held]), sorted(order[held:])
    if isinstance(records, pd.DataFrame):
        return records.iloc[kept_rows].reset_index(drop=True), records.iloc[held_rows].reset_index(drop=True)
    return [records[i] for i in kept_rows], [records[i] for i in held_rows]
