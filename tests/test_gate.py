"""The promotion gate refuses variants over a budget (saying why) and promotes the best within."""
from __future__ import annotations

import pytest

from tinynlp.gate import Budget, choose

ROWS = [
    {"name": "finetune", "entity_f1": 0.50, "latency_ms_p50": 10.0, "size_mb": 90.0},
    {"name": "finetune_int8", "entity_f1": 0.495, "latency_ms_p50": 2.5, "size_mb": 23.0},
    {"name": "distill_int8", "entity_f1": 0.46, "latency_ms_p50": 1.2, "size_mb": 12.0},
    {"name": "prune_structured", "entity_f1": 0.49, "latency_ms_p50": 6.0, "size_mb": 60.0},
    {"name": "finetune_inc", "entity_f1": 0.499, "latency_ms_p50": 2.0, "size_mb": 30.0, "promotable": False,
     "not_promotable_because": "an INC program is not an ONNX file"},
]


def test_fastest_within_the_quality_budget_is_promoted():
    chosen, decisions = choose(ROWS, "finetune", "entity_f1", Budget(0.02, 0, 0, "latency"))
    assert chosen == "finetune_int8"
    refused = {d.name: d.reasons for d in decisions if not d.passed}
    assert set(refused) == {"distill_int8", "finetune_inc"}
    assert "0.0400 below the reference (max drop 0.02)" in refused["distill_int8"][0]
    assert "not an ONNX file" in refused["finetune_inc"][0]


def test_latency_and_size_budgets_refuse_with_reasons():
    chosen, decisions = choose(ROWS, "finetune", "entity_f1", Budget(0.1, 2.0, 20.0, "latency"))
    assert chosen == "distill_int8"
    reasons = {d.name: " ".join(d.reasons) for d in decisions}
    assert "p50 latency 2.50 ms over the 2.0 ms budget" in reasons["finetune_int8"]
    assert "size 23.0 MB over the 20.0 MB budget" in reasons["finetune_int8"]


def test_objectives_rank_passing_variants_differently():
    assert choose(ROWS, "finetune", "entity_f1", Budget(0.1, 0, 0, "quality"))[0] == "finetune"
    assert choose(ROWS, "finetune", "entity_f1", Budget(0.1, 0, 0, "size"))[0] == "distill_int8"


def test_nothing_passes_means_nothing_is_promoted():
    chosen, decisions = choose(ROWS, "finetune", "entity_f1", Budget(0.0, 0.5, 0, "latency"))
    assert chosen is None and not any(d.passed for d in decisions)
    with pytest.raises(ValueError, match="reference variant 'teacher'"):
        choose(ROWS, "teacher", "entity_f1", Budget(0.0, 0, 0, "latency"))
