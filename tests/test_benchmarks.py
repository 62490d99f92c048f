"""The side-by-side benchmarks run end to end (on the tiny workspace, through `--params`): a
benchmark that breaks when a stage is added to the DAG is caught here, not in a user's hands."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run, use_classification


def _benchmark(script: str, workspace: Path, *args: str) -> dict:
    out = workspace / "bench.json"
    run([sys.executable, str(ROOT / "benchmarks" / script), "--params", str(workspace / "params.yaml"),
         "--out", str(out), *args], cwd=workspace)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_ner_benchmark_runs_ours_and_the_plain_recipe_side_by_side(workspace):
    result = _benchmark("finetune_vs_hf.py", workspace, "--set", "finetune.epochs=4")
    # ours learns the tiny set in 4 epochs (the quick DAG's 0.8 test F1); the plain recipe's lr 5e-5
    # teaches the randomly initialised tiny BERT nothing in its 3 epochs, so its F1 is only range-checked
    assert result["ours_test_f1"] >= 0.6 and result["ours_dev_f1"] >= 0.6, result
    assert 0.0 <= result["plain_test_f1"] <= 1.0
    assert result["ours_seconds"] > 0 and result["plain_seconds"] > 0
    assert result["time_ratio_ours_over_plain"] == round(result["ours_seconds"] / result["plain_seconds"], 3)
    assert result["overrides"] == {"finetune": {"epochs": 4}}


@pytest.mark.slow
def test_classification_benchmark_runs_ours_and_the_plain_recipe_side_by_side(workspace):
    use_classification(workspace)
    result = _benchmark("classification_vs_hf.py", workspace, "--set", "finetune.epochs=2", "--plain-padding", "dynamic")
    recipes = {row["recipe"]: row for row in result["rows"]}
    assert set(recipes) == {"plain run_glue-style Trainer (dynamic padding)", "ours (finetune + evaluate)"}
    assert all(0.0 <= row[f"{split} accuracy"] <= 1.0 and row["seconds"] > 0
               for row in recipes.values() for split in ("dev", "test"))
    assert result["time_ratio_ours_over_plain"] > 0
