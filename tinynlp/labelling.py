"""Which unlabelled texts a person should label first when traffic drifts: the ones the model is
least sure of, spread over the region of embedding space the training data does not cover, each
text once. Pure numpy: the drift check calls it with the embeddings it already computed."""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

NOVEL_QUANTILE = 0.9   # a row is in the new region when it is further from the training data than
                       # 90% of training rows are from their own nearest neighbour


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def nearest_distance(points: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Cosine distance from each point to its nearest reference row (itself excluded when the
    points are the reference)."""
    similarity = _unit(points) @ _unit(reference).T
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    return 1.0 - similarity.max(axis=1)


def distinct(texts: Sequence[str]) -> list[int]:
    """Index of the first occurrence of each text, case and spacing aside."""
    seen, kept = set(), []
    for index, text in enumerate(texts):
        key = re.sub(r"\s+", " ", text.strip().lower())
        if key not in seen:
            seen.add(key)
            kept.append(index)
    return kept


def _kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Cluster of each point (k-means++ start, Lloyd iterations) on unit vectors."""
    rng = np.random.default_rng(seed)
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        distances = np.min([np.sum((points - c) ** 2, axis=1) for c in centres], axis=0)
        total = distances.sum()
        centres.append(points[rng.choice(len(points), p=distances / total)] if total > 0
                       else points[rng.integers(len(points))])
    centres = np.array(centres)
    for _ in range(iterations):
        assigned = _closest(points, centres)
        for cluster in range(k):
            members = points[assigned == cluster]
            if len(members):
                centres[cluster] = members.mean(axis=0)
    return _closest(points, centres)


def _closest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |p - c|² = |p|² - 2 p·c + |c|²; |p|² is the same for every centre
    return np.argmin(np.sum(centres ** 2, axis=1)[None, :] - 2 * points @ centres.T, axis=1)


def uncertainty_queue(vectors: np.ndarray, reference: np.ndarray, least_confidence: Sequence[float],
                      texts: Sequence[str], size: int, seed: int) -> tuple[list[int], dict]:
    """Indices (into `texts`) of at most `size` rows to label, least sure first, and how they were
    chosen. Distinct texts only; of those, the rows further from the training data than most
    training rows are from each other form the new region (all rows, when fewer than `size` do);
    the region is cut into `size` clusters and each gives the row the model is least sure of."""
    candidates = distinct(texts)
    if not candidates:
        return [], {"candidates": 0}
    novelty = nearest_distance(vectors[candidates], reference)
    threshold = float(np.quantile(nearest_distance(reference, reference, exclude_self=True), NOVEL_QUANTILE))
    region = [c for c, n in zip(candidates, novelty) if n > threshold]
    if len(region) < size:
        region = candidates
    confidence = np.asarray(least_confidence, np.float64)
    if len(region) <= size:
        chosen = region
    else:
        clusters = _kmeans(_unit(vectors[region]), size, seed)
        chosen = [min((r for r, c in zip(region, clusters) if c == cluster), key=lambda r: confidence[r])
                  for cluster in np.unique(clusters)]
    chosen = sorted(chosen, key=lambda r: confidence[r])
    return chosen, {"candidates": len(candidates), "novel": int(np.sum(novelty > threshold)),
                    "novelty_threshold": round(threshold, 4), "chosen": len(chosen),
                    "mean_least_confidence": round(float(confidence[chosen].mean()), 4) if chosen else None}


def random_queue(texts: Sequence[str], size: int, seed: int) -> list[int]:
    """The baseline: `size` distinct texts drawn at random."""
    candidates = distinct(texts)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(candidates, min(size, len(candidates)), replace=False).tolist())
