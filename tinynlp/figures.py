"""Pictures where a picture says more than a table: a confusion matrix and a reliability diagram,
as PNG files that `dvc plots show` embeds and a person opens directly."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence



def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Written beside the target and renamed onto it: a reader never sees half a picture."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    fig.savefig(staging, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    os.replace(staging, path)


def confusion_png(counts: dict[str, dict[str, int]], path: Path, title: str) -> None:
    """Gold (rows) against predicted (columns), counts written in the cells, rows shaded by share."""
    plt = _figure()
    actual = list(counts)
    predicted = sorted({p for row in counts.values() for p in row})
    grid = [[counts[a].get(p, 0) for p in predicted] for a in actual]
    shares = [[value / (sum(row) or 1) for value in row] for row in grid]
    fig, axis = plt.subplots(figsize=(1.0 + 0.7 * len(predicted), 1.0 + 0.55 * len(actual)))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value:
                axis.text(j, i, str(value), ha="center", va="center", fontsize=8,
                          color="white" if shares[i][j] > 0.6 else "black")
    axis.set_xticks(range(len(predicted)), predicted, rotation=45, ha="right")
    axis.set_yticks(range(len(actual)), actual)
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    axis.set_title(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)


def reliability_png(bins: Sequence[dict], ece: float, path: Path, title: str) -> None:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), bar width
    by the bin's share of the examples."""
    plt = _figure()
    fig, axis = plt.subplots(figsize=(4.2, 4.0))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    total = sum(b["count"] for b in bins) or 1
    for b in bins:
        axis.scatter(b["confidence"], b["accuracy"], s=20 + 400 * b["count"] / total, color="tab:blue", alpha=0.7)
    axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], color="tab:blue", linewidth=1)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("mean confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{title}\nexpected calibration error {ece:.3f}", fontsize=10)
    _save(fig, path)
    plt.close(fig)
