"""The promotion gate: every evaluated variant is checked against budgets (quality drop from the
reference model, latency, size), and the best one that passes is promoted. Each refusal says why.
Also the quantize stage's pick among INT8 candidates, where timing noise must not decide."""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True)
class Budget:
    max_drop: float            # largest allowed drop of the gated metric below the reference
    latency_budget_ms: float   # batch-1 p50; 0 disables
    size_budget_mb: float      # 0 disables
    objective: str             # latency | quality | size: how passing variants are ranked


@dataclass(frozen=True)
class Decision:
    name: str
    passed: bool
    reasons: tuple[str, ...]   # why it was refused (empty when it passed)


def check(row: dict, reference_score: float, metric: str, budget: Budget) -> Decision:
    """`row` holds the variant's name, `metric`, latency_ms_p50, size_mb and `promotable`."""
    reasons = []
    drop = reference_score - row[metric]
    if drop > budget.max_drop + 1e-12:
        reasons.append(f"{metric} {row[metric]:.4f} is {drop:.4f} below the reference (max drop {budget.max_drop})")
    if budget.latency_budget_ms and row["latency_ms_p50"] > budget.latency_budget_ms:
        reasons.append(f"p50 latency {row['latency_ms_p50']:.2f} ms over the {budget.latency_budget_ms} ms budget")
    if budget.size_budget_mb and row["size_mb"] > budget.size_budget_mb:
        reasons.append(f"size {row['size_mb']:.1f} MB over the {budget.size_budget_mb} MB budget")
    if not row.get("promotable", True):
        reasons.append(row.get("not_promotable_because", "cannot be exported for serving"))
    return Decision(row["name"], not reasons, tuple(reasons))


_RANKING = {
    "latency": lambda row, metric: (row["latency_ms_p50"], -row[metric]),
    "quality": lambda row, metric: (-row[metric], row["latency_ms_p50"]),
    "size": lambda row, metric: (row["size_mb"], -row[metric]),
}


def choose(rows: list[dict], reference: str, metric: str, budget: Budget) -> tuple[str | None, list[Decision]]:
    """The variant to promote (None when nothing passes) and the decision on every variant."""
    by_name = {row["name"]: row for row in rows}
    if reference not in by_name:
        raise ValueError(f"the reference variant '{reference}' was not evaluated")
    reference_score = by_name[reference][metric]
    decisions = [check(row, reference_score, metric, budget) for row in rows]
    passing = [by_name[d.name] for d in decisions if d.passed]
    if not passing:
        return None, decisions
    return min(passing, key=lambda row: _RANKING[budget.objective](row, metric))["name"], decisions


def noise_band(latency_runs: dict[str, list[float]]) -> float:
    """The timing noise measured on these runs: the largest relative spread (max - min over the
    median) of one candidate's p50 across repeated, interleaved timings."""
    spreads = [(max(runs) - min(runs)) / median(runs) for runs in latency_runs.values() if len(runs) > 1]
    return max(spreads, default=0.0)


def pick_fastest(candidates: list[dict], max_drop: float, latency_runs: dict[str, list[float]]) -> tuple[dict, dict]:
    """The candidate to keep among those within `max_drop` of the reference dev score: the fastest,
    except that candidates the timing cannot tell from the fastest are a tie (a busy machine must not
    swap a less accurate graph in). A candidate ties when its median p50 lies within the measured noise
    band of the fastest's, or when the fastest did not beat it in every pass (passes are paired: the
    candidates take turns within each). A tie goes to the candidate whose outputs are closest to the
    float graph's (`dev_divergence`, where candidates have it), then to the better dev score: a change
    of accuracy counts a few flipped examples that may cancel out, the divergence measures them all.
    Each candidate has `name`, `dev_score` and `dev_drop`; `latency_runs` holds its p50 per pass. With
    none within budget, the most accurate is kept for the gate to judge. Returns the pick and how."""
    within = [c for c in candidates if c["dev_drop"] <= max_drop + 1e-12]
    if not within:
        return max(candidates, key=lambda c: c["dev_score"]), {"rule": "none within budget: most accurate"}
    p50 = {c["name"]: median(latency_runs[c["name"]]) for c in within}
    band = noise_band({c["name"]: latency_runs[c["name"]] for c in within})
    fastest = min(p50, key=p50.get)
    tied = [c for c in within if p50[c["name"]] <= p50[fastest] * (1 + band)
            or not _beaten_in_every_pass(latency_runs[fastest], latency_runs[c["name"]])]
    best = min(tied, key=lambda c: (c.get("dev_divergence", 0.0), -c["dev_score"], p50[c["name"]]))
    return best, {"rule": "fastest within budget; ties within the noise band go to the outputs closest to the "
                          "float graph's, then to the better dev score",
                  "noise_band": round(band, 4), "tied": [c["name"] for c in tied]}


def _beaten_in_every_pass(fastest: list[float], other: list[float]) -> bool:
    return len(fastest) == len(other) and all(f < o for f, o in zip(fastest, other))
