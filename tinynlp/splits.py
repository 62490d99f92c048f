"""Seeded splits of a split's records (NER sentences or a classification frame): a retraining
batch's held-out part, a dev split carved out of train."""
from __future__ import annotations

import numpy as np
import pandas as pd


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
