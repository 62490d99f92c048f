"""Which INT8 graph keeps the model's test score? Every candidate of one source model, built by the
quantize stage's own functions (dynamic / static, per-channel / per-tensor, and dynamic with the most
sensitive weight node left float), scored on dev and test (the metric, and the divergence of its
predicted distributions from the float graph's), timed side by side at batch 1, and judged by the
stage's pick rule (ties go to the smallest dev divergence) and by the rule before 2026-12-07 (no
float nodes; ties go to the better dev score), on the same timings.

Run it in a workspace where `dvc repro` has trained the source (any profile):

    python benchmarks/int8_fidelity.py [--source distill] [--repeats 3]

Writes reports/benchmarks/int8_fidelity.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from tinynlp import gate, modeling, quantization  # noqa: E402
from tinynlp.config import load_params  # noqa: E402
from tinynlp.inference import measure_speeds  # noqa: E402


def main() -> int:
    from tasks.quantize import SELECTION_LATENCY_SAMPLES, Selection, calibration_batches, float_graphs, scored_candidates
    from tinynlp.model_dir import load_model, variant_dirs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="distill")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing passes of 200 calls each")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks/int8_fidelity.json")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    threads = modeling.set_threads(params.evaluate.threads)
    tokenizer = modeling.load_tokenizer(params.paths.model)
    selection = Selection(params, tokenizer, threads)
    test = Selection(params, tokenizer, threads, "test")
    calibration = calibration_batches(params, tokenizer)

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model, _ = load_model(variant_dirs(params.paths)[args.source])
        exported, graph, _ = float_graphs(model, folder, params, calibration)
        dev_reference, candidates, sensitivity, runners = scored_candidates(args.source, graph, exported, folder,
                                                                            params, selection, calibration)
        test_reference, reference_logits, _ = test.score(quantization.OnnxRunner(graph, threads))
        for c in candidates:
            score, _, divergence = test.score(runners[c["name"]], reference_logits)
            c.update(test_score=round(score, 4), test_drop=round(test_reference - score, 4),
                     test_divergence=round(divergence, 6))
            c["file"] = Path(c["file"]).name
        stage_runs = selection.latencies(runners)   # what the stage's pick sees
        long_runs = {name: [] for name in runners}  # steadier p50s for the table
        for _ in range(args.repeats):
            for name, speed in measure_speeds(runners, test.features, selection.pad_id, 200, 20, 32,
                                              rounds=10).items():
                long_runs[name].append(speed.latency_ms_p50)
    max_drop = params.quantize.max_dev_drop
    rule, how = gate.pick_fastest(candidates, max_drop, stage_runs)
    before = [{k: v for k, v in c.items() if k != "dev_divergence"} for c in candidates if not c["fp32_nodes"]]
    old, _ = gate.pick_fastest(before, max_drop, {c["name"]: stage_runs[c["name"]] for c in before})
    fastest = min(median(r) for r in long_runs.values())
    print(f"\n{args.source}: float graph dev {dev_reference:.4f}, test {test_reference:.4f}; "
          f"SELECTION_LATENCY_SAMPLES={SELECTION_LATENCY_SAMPLES}, noise band {100 * how.get('noise_band', 0):.0f}%")
    print(f"float node ranked most sensitive: {', '.join(sensitivity['fp32_nodes']) or 'none'}\n")
    print(f"{'candidate':34} {'dev':>7} {'dev div':>8} {'test':>7} {'lost':>7} {'test div':>9} {'p50 ms':>7} "
          f"{'x fastest':>9}  pick")
    for c in candidates:
        p50 = median(long_runs[c["name"]])
        c["latency_ms_p50"], c["latency_ms_p50_runs"] = round(p50, 4), long_runs[c["name"]]
        mark = " ".join(m for m, pick in (("rule", rule), ("before", old)) if pick["name"] == c["name"])
        print(f"{c['name']:34} {c['dev_score']:7.4f} {c['dev_divergence']:8.5f} {c['test_score']:7.4f} "
              f"{100 * c['test_drop']:+7.2f} {c['test_divergence']:9.5f} {p50:7.3f} {p50 / fastest:9.2f}  {mark}")
    write_json(args.out, {"source": args.source, "dev_reference": round(dev_reference, 4),
                          "test_reference": round(test_reference, 4), "candidates": candidates,
                          "sensitivity": sensitivity, "stage_timing_runs": stage_runs, "pick": how,
                          "rule_pick": rule["name"], "old_rule_pick": old["name"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
