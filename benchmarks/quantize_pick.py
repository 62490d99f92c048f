"""Does the quantize stage keep the same INT8 graph every time? The pick among near-equal latencies
is timed afresh each run, so a rule that lets noise decide keeps different graphs on the same commit.

The candidates of one source model (the DAG's trained model: run `dvc repro` first) are built once
by the quantize stage's own functions and scored on dev. Then `--runs` fresh processes each time them
as the stage does (`SELECTION_REPEATS` interleaved passes), and each run's timings are judged by the
stage's rule (`tinynlp.gate.pick_fastest`, all passes) and, side by side, by the rule before
2026-12-06 (three passes, the noise band alone). A stable rule keeps one graph in every run.

    python benchmarks/quantize_pick.py [--source prune_structured] [--runs 6]

Writes reports/benchmarks/quantize_pick.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from tinynlp import gate, modeling, quantization  # noqa: E402
from tinynlp.config import load_params  # noqa: E402

OLD_PASSES = 3


def build(source: str, folder: Path) -> dict[str, dict]:
    """The source's candidate graphs in `folder`, with their dev scores, drops and divergences, as the stage makes them."""
    from tasks.quantize import Selection, calibration_batches, float_graphs, scored_candidates
    from tinynlp.model_dir import load_model, variant_dirs

    params = load_params(ROOT / "params.yaml")
    threads = modeling.set_threads(params.evaluate.threads)
    tokenizer = modeling.load_tokenizer(params.paths.model)
    selection = Selection(params, tokenizer, threads)
    calibration = calibration_batches(params, tokenizer)
    model, _ = load_model(variant_dirs(params.paths)[source])
    exported, graph, _ = float_graphs(model, folder, params, calibration)
    _, tried, _, _ = scored_candidates(source, graph, exported, folder, params, selection, calibration)
    return {t["name"]: {**t, "file": str(t["file"])} for t in tried}


def time_once(scored: dict[str, dict]) -> dict[str, list[float]]:
    """One stage-like timing of every candidate: each one's p50 per pass."""
    from tasks.quantize import Selection

    params = load_params(ROOT / "params.yaml")
    threads = modeling.set_threads(params.evaluate.threads)
    selection = Selection(params, modeling.load_tokenizer(params.paths.model), threads)
    return selection.latencies({name: quantization.OnnxRunner(c["file"], threads) for name, c in scored.items()})


def old_pick(candidates: list[dict], max_drop: float, runs: dict[str, list[float]]) -> str:
    """The rule before 2026-12-06: three passes; a tie only within the largest spread of any candidate."""
    within = [c for c in candidates if c["dev_drop"] <= max_drop + 1e-12]
    runs = {c["name"]: runs[c["name"]][:OLD_PASSES] for c in within}
    band, p50 = gate.noise_band(runs), {name: median(r) for name, r in runs.items()}
    tied = [c for c in within if p50[c["name"]] <= min(p50.values()) * (1 + band)]
    return max(tied, key=lambda c: (c["dev_score"], -p50[c["name"]]))["name"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="prune_structured")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--time-only", type=Path, help=argparse.SUPPRESS)  # a child process: time, print JSON
    args = parser.parse_args()
    if args.time_only:
        print(json.dumps(time_once(json.loads(args.time_only.read_text()))))
        return 0
    max_drop = load_params(ROOT / "params.yaml").quantize.max_dev_drop
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        scored = build(args.source, folder)
        (folder / "scored.json").write_text(json.dumps(scored))
        candidates = [{"name": name, **c} for name, c in scored.items()]
        rows = []
        for run in range(1, args.runs + 1):
            out = subprocess.run([sys.executable, __file__, "--time-only", str(folder / "scored.json")],
                                 check=True, capture_output=True, text=True).stdout
            runs = json.loads(out.strip().splitlines()[-1])
            new, how = gate.pick_fastest(candidates, max_drop, runs)
            rows.append({"run": run, "latency_ms_p50_runs": runs, "noise_band": how.get("noise_band"),
                         "tied": how.get("tied", []), "pick": new["name"], "old_pick": old_pick(candidates, max_drop, runs)})
            print(f"run {run}: pick {new['name']} (tied {', '.join(rows[-1]['tied'])}; band "
                  f"{100 * (how.get('noise_band') or 0):.0f}%); the old rule: {rows[-1]['old_pick']}", flush=True)
    picks, old = Counter(r["pick"] for r in rows), Counter(r["old_pick"] for r in rows)
    print(f"\n{'candidate':26} {'dev':>7} {'drop':>7} {'p50 ms (median of runs)':>24} {'kept: rule':>11} {'old rule':>9}")
    for name, c in scored.items():
        p50 = median(median(r["latency_ms_p50_runs"][name]) for r in rows)
        print(f"{name:26} {c['dev_score']:7.4f} {c['dev_drop']:7.4f} {p50:24.3f} {picks[name]:11d} {old[name]:9d}")
    print(f"\ndistinct graphs kept over {args.runs} runs: rule {len(picks)}, old rule {len(old)}")
    write_json(ROOT / "reports/benchmarks/quantize_pick.json",
               {"source": args.source, "candidates": {n: {k: v for k, v in c.items() if k != "file"} for n, c in scored.items()},
                "max_dev_drop": max_drop, "runs": rows, "distinct": {"rule": len(picks), "old_rule": len(old)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
