"""Is a new batch of text different from the data a model was trained on? Two-sample tests on what
can be compared without labels (sentence embeddings, lengths, vocabulary, the model's predictions)
and, when the batch is labelled, on its labels; then one verdict.

Rows (sentences or texts) are the unit of every test: tokens inside a sentence are not independent,
so token-level tests raise false alarms on same-domain data. Label and prediction mixes are tested
by permuting rows; the token-level chi-square p is reported beside them for reference only."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

Row = str | Sequence[str]   # a class (classification) or a BIO tag list (NER)


@dataclass(frozen=True)
class Signal:
    name: str                       # embedding | length | vocabulary | labels | predictions
    statistic: float
    p_value: float | None           # None: a rule on a rate, not a test
    drifted: bool
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    drifted: bool
    reasons: list[str]
    signals: list[Signal]

    def to_dict(self) -> dict:
        return {"drifted": self.drifted, "reasons": list(self.reasons), "signals": [asdict(s) for s in self.signals]}


def subsample(count: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most `limit` of `count` rows, drawn without replacement."""
    return np.arange(count) if count <= limit else np.sort(rng.choice(count, limit, replace=False))


def _relabellings(n_ref: int, n_batch: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean batch-membership masks: row 0 is the observed split (batch = the last n_batch rows),
    the others random relabellings of the pooled rows."""
    observed = np.r_[np.zeros(n_ref, bool), np.ones(n_batch, bool)]
    return np.stack([observed] + [rng.permutation(observed) for _ in range(permutations)])


def _p_value(statistics: np.ndarray) -> float:
    """Share of relabellings at least as extreme as the observed one, the observed counted too:
    (count + 1) / (permutations + 1), never 0, so a p-value is a valid test at any level."""
    return float((np.sum(statistics[1:] >= statistics[0]) + 1) / len(statistics))


def _rbf_kernel(points: np.ndarray) -> tuple[np.ndarray, float]:
    """RBF kernel matrix with the median heuristic: the bandwidth is the median squared pairwise
    distance of the pooled sample, so the test needs no tuning across encoders and scales."""
    squares = np.sum(points ** 2, axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2 * points @ points.T, 0.0)
    bandwidth = float(np.median(distances[np.triu_indices(len(points), 1)])) or 1.0
    return np.exp(-distances / bandwidth), bandwidth


def embedding_drift(reference: np.ndarray, batch: np.ndarray, *, alpha: float, permutations: int,
                    max_samples: int, seed: int) -> Signal:
    """MMD² between the two sets of embeddings with a permutation p-value. The kernel matrix is built
    once; each relabelling's MMD² is the quadratic form w'Kw of its ±1/n weights, so all permutations
    together cost one matrix product instead of a Python loop."""
    rng = np.random.default_rng(seed)
    ref = np.asarray(reference, np.float64)[subsample(len(reference), max_samples, rng)]
    new = np.asarray(batch, np.float64)[subsample(len(batch), max_samples, rng)]
    kernel, bandwidth = _rbf_kernel(np.vstack([ref, new]))
    weights = np.where(_relabellings(len(ref), len(new), permutations, rng), 1.0 / len(new), -1.0 / len(ref))
    mmd2 = np.sum((weights @ kernel) * weights, axis=1)
    p = _p_value(mmd2)
    return Signal("embedding", round(float(mmd2[0]), 6), p, p < alpha,
                  {"alpha": alpha, "reference_rows": len(ref), "batch_rows": len(new), "permutations": permutations,
                   "bandwidth": round(bandwidth, 4), "null_mmd2_mean": round(float(mmd2[1:].mean()), 6)})


def _describe_numbers(values: Sequence[float]) -> dict:
    values = np.asarray(values, np.float64)
    return {"mean": round(float(values.mean()), 2), "p10": float(np.percentile(values, 10)),
            "median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def length_drift(ref_lengths: Sequence[int], batch_lengths: Sequence[int], *, alpha: float) -> Signal:
    """Two-sample Kolmogorov–Smirnov on words per row: a cheap, readable sign of another genre."""
    result = stats.ks_2samp(ref_lengths, batch_lengths)
    p = float(result.pvalue)
    return Signal("length", round(float(result.statistic), 4), p, p < alpha,
                  {"alpha": alpha, "reference": _describe_numbers(ref_lengths),
                   "batch": _describe_numbers(batch_lengths)})


def _oov_rate(rows: Sequence[Sequence[str]], vocabulary: set[str]) -> float:
    words = [w for row in rows for w in row]
    return sum(w not in vocabulary for w in words) / max(len(words), 1)


def _vocabulary(rows: Sequence[Sequence[str]]) -> set[str]:
    return {w for row in rows for w in row}


def vocabulary_drift(ref_tokens: Sequence[Sequence[str]], batch_tokens: Sequence[Sequence[str]], *,
                     ref_unknown_rate: float, batch_unknown_rate: float, max_increase: float, top_k: int,
                     seed: int) -> Signal:
    """Out-of-vocabulary word rate of the batch beyond what same-domain data shows: rare words make any
    sample partly new, so a same-size random slice of the reference is held out and both it and the batch
    are measured against the rest of the reference (same vocabulary, same sample size). Words are
    lower-cased: casing varies by genre more than vocabulary does. Flags when the excess > max_increase."""
    ref = [[w.lower() for w in row] for row in ref_tokens]
    new = [[w.lower() for w in row] for row in batch_tokens]
    held = np.zeros(len(ref), bool)
    held[np.random.default_rng(seed).choice(len(ref), min(len(new), len(ref) // 2), replace=False)] = True
    rest = _vocabulary(r for r, h in zip(ref, held) if not h)
    expected = _oov_rate([r for r, h in zip(ref, held) if h], rest)
    observed = _oov_rate(new, rest)
    full = _vocabulary(ref)
    new_words = Counter(w for row in new for w in row if w not in full)
    increase = observed - expected
    return Signal("vocabulary", round(increase, 4), None, increase > max_increase,
                  {"max_increase": max_increase, "batch_oov_rate": round(observed, 4),
                   "expected_oov_rate": round(expected, 4), "batch_oov_rate_full_vocabulary":
                       round(_oov_rate(new, full), 4), "reference_vocabulary": len(full),
                   "reference_unknown_subword_rate": round(ref_unknown_rate, 4),
                   "batch_unknown_subword_rate": round(batch_unknown_rate, 4),
                   "top_new_tokens": [[w, n] for w, n in new_words.most_common(top_k)]})


def _row_counts(row: Row) -> Counter:
    """One class, or for a BIO tag list its entity mentions by type and its O tokens. A mention starts
    at B-X or at an I-X that does not continue X (model predictions can begin with I-)."""
    if isinstance(row, str) or not isinstance(row, (Sequence, np.ndarray)):
        return Counter([str(row)])
    counts, previous = Counter(), "O"
    for tag in row:
        if tag == "O":
            counts["O"] += 1
        elif tag.startswith("B-") or previous[2:] != tag[2:]:
            counts[tag[2:]] += 1
        previous = tag
    return counts


def label_counts(rows: Sequence[Row]) -> tuple[list[str], np.ndarray]:
    """Categories and a rows x categories count matrix (see `_row_counts`)."""
    per_row = [_row_counts(r) for r in rows]
    categories = sorted({c for counts in per_row for c in counts})
    return categories, np.array([[counts.get(c, 0) for c in categories] for counts in per_row], np.float64)


def _chi2(ref_totals: np.ndarray, new_totals: np.ndarray) -> np.ndarray:
    """Pearson chi-square of the 2 x K tables (reference, batch) x categories, one per input row."""
    table = np.stack([ref_totals, new_totals], axis=1)                  # P x 2 x K
    expected = table.sum(2, keepdims=True) * table.sum(1, keepdims=True) / table.sum((1, 2), keepdims=True)
    safe = np.where(expected > 0, expected, 1.0)
    return np.sum(np.where(expected > 0, (table - expected) ** 2 / safe, 0.0), axis=(1, 2))


def _shares(categories: list[str], totals: np.ndarray) -> dict[str, float]:
    return dict(zip(categories, (totals / max(totals.sum(), 1.0)).round(4).tolist()))


def mix_test(ref_rows: Sequence[Row], batch_rows: Sequence[Row], *, permutations: int, seed: int) -> dict:
    """Row-permutation test of the label mix; statistic: chi-square of the aggregated counts. Whole rows
    are relabelled, so correlated tags within a sentence do not inflate the evidence."""
    categories, counts = label_counts(list(ref_rows) + list(batch_rows))
    masks = _relabellings(len(ref_rows), len(batch_rows), permutations, np.random.default_rng(seed))
    new_totals = masks.astype(np.float64) @ counts
    chi2 = _chi2(counts.sum(0) - new_totals, new_totals)
    ref_totals, observed = counts.sum(0) - new_totals[0], new_totals[0]
    both = ref_totals.sum() > 0 and observed.sum() > 0
    return {"chi2": round(float(chi2[0]), 4), "p_value": _p_value(chi2), "permutations": permutations,
            "chi2_p_value_unpermuted": float(stats.chi2.sf(chi2[0], max(len(categories) - 1, 1))),
            "js_distance": round(float(jensenshannon(ref_totals, observed, base=2)), 4) if both else 0.0,
            "reference": _shares(categories, ref_totals), "batch": _shares(categories, observed)}


def label_drift(ref_labels: Sequence[Row], batch_labels: Sequence[Row], *, alpha: float, permutations: int,
                seed: int) -> Signal:
    """Has the mix of classes (or of entity types and O tokens per sentence) changed?"""
    mix = mix_test(ref_labels, batch_labels, permutations=permutations, seed=seed)
    return Signal("labels", mix["chi2"], mix["p_value"], mix["p_value"] < alpha, {"alpha": alpha, **mix})


def prediction_drift(ref_labels: Sequence[Row], batch_labels: Sequence[Row], ref_confidence: Sequence[float],
                     batch_confidence: Sequence[float], *, alpha: float, permutations: int, seed: int) -> Signal:
    """The promoted model's predicted mix (row-permutation test) and its per-row mean confidence (KS):
    a model meeting unfamiliar data predicts other things, or predicts them less surely. Flags when
    either test does; `flagged_by` says which; the reported p is the smaller one."""
    mix = mix_test(ref_labels, batch_labels, permutations=permutations, seed=seed)
    confidence = stats.ks_2samp(ref_confidence, batch_confidence)
    confidence_p = float(confidence.pvalue)
    flagged_by = [name for name, p in (("label mix", mix["p_value"]), ("confidence", confidence_p)) if p < alpha]
    return Signal("predictions", mix["chi2"], min(mix["p_value"], confidence_p), bool(flagged_by),
                  {"alpha": alpha, **mix, "flagged_by": flagged_by,
                   "confidence_ks": round(float(confidence.statistic), 4),
                   "confidence_p_value": confidence_p,
                   "reference_confidence": _describe_numbers(ref_confidence),
                   "batch_confidence": _describe_numbers(batch_confidence)})


def _compare(p: float, alpha: float) -> str:
    return f"p={p:.3g} {'<' if p < alpha else '>='} {alpha:g}"


def describe(signal: Signal) -> str:
    """One sentence with the figures behind a signal's flag (or its absence)."""
    d, name = signal.detail, signal.name
    alpha = d.get("alpha", 0.01)
    if name == "embedding" and signal.p_value is not None:
        return f"embedding MMD²={signal.statistic:.4g} {_compare(signal.p_value, alpha)}"
    if name == "length" and "batch" in d:
        return (f"length KS D={signal.statistic:.3f} {_compare(signal.p_value, alpha)} "
                f"(mean {d['batch']['mean']} vs {d['reference']['mean']} words)")
    if name == "vocabulary" and "batch_oov_rate" in d:
        return (f"vocabulary OOV rate {d['batch_oov_rate']:.1%} vs {d['expected_oov_rate']:.1%} expected "
                f"(+{signal.statistic:.1%} {'>' if signal.drifted else '<='} +{d['max_increase']:.1%})")
    if name == "labels" and "js_distance" in d:
        return (f"labels chi²={signal.statistic:.4g} permutation {_compare(signal.p_value, alpha)}, "
                f"JS distance {d['js_distance']}")
    if name == "predictions" and "confidence_p_value" in d:
        return (f"predictions label mix {_compare(d['p_value'], alpha)}, confidence KS "
                f"{_compare(d['confidence_p_value'], alpha)}")
    figure = f"p={signal.p_value:.3g}" if signal.p_value is not None else f"statistic={signal.statistic:.4g}"
    return f"{name} {figure}: {'flagged' if signal.drifted else 'not flagged'}"


def decide(signals: Sequence[Signal], decide_on: Sequence[str]) -> Verdict:
    """Drift when any signal named in `decide_on` flagged. Reasons: the deciding signals first (only
    the flagged ones when there is drift), then the others marked as reported only."""
    deciding = [s for s in signals if s.name in decide_on]
    drifted = any(s.drifted for s in deciding)
    shown = [s for s in deciding if s.drifted] if drifted else deciding
    reasons = [describe(s) for s in shown]
    reasons += [f"(reported only) {describe(s)}" for s in signals if s.name not in decide_on]
    return Verdict(drifted, reasons, list(signals))
