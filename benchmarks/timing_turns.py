"""Does taking turns bias the variants' latencies? Every variant of a `dvc repro` workspace, timed as
`evaluate` times them (all loaded, taking turns on chunks of the test windows) with and without
untimed calls at the start of each turn, and each variant alone (no other runtime running between
its calls: what a deployed model sees), in alternating passes on the same windows and threads.

Run it in a workspace where `dvc repro` has run (any profile):

    python benchmarks/timing_turns.py [--warmups 0,10] [--repeats 3]

Prints each variant's batch-1 p50 and speed-up over the fp32 model under each protocol, and the
p50 as a multiple of the alone figure (1.00: no bias). Writes reports/benchmarks/timing_turns.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.config import load_params  # noqa: E402
from tinynlp.inference import measure_speeds  # noqa: E402

ALONE = "alone"


def main() -> int:
    from tasks.evaluate import REFERENCE, head_for, load_spec, quantized_variants, read_split, timing_runners, \
        torch_variants

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmups", default="0,10", help="turn_warmup values to compare (0: evaluate before the option)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of every protocol, alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks/timing_turns.json")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    cfg = params.evaluate
    threads = modeling.set_threads(cfg.threads)
    spec = load_spec(params.paths.model)
    head = head_for(spec.task)
    tokenizer = modeling.load_tokenizer(params.paths.model)
    timed = head.features(head.encode(tokenizer, read_split(params.paths.ingested, "test"), spec))
    variants = {v.name: v for v in torch_variants(params) + quantized_variants(params)}
    runners = timing_runners(variants, timed, params, threads)
    protocols = [f"turns, {w} untimed per turn" for w in args.warmups.split(",")] + [ALONE]
    warmups = {name: int(w) for name, w in zip(protocols, args.warmups.split(","))}
    p50s = {p: {name: [] for name in runners} for p in protocols}

    def measure(protocol: str) -> None:
        if protocol == ALONE:  # one runner at a time, the others idle
            for name, runner in runners.items():
                speed = measure_speeds({name: runner}, timed, tokenizer.pad_token_id, cfg.latency_samples,
                                       cfg.warmup, cfg.throughput_batch, cfg.timing_rounds)[name]
                p50s[protocol][name].append(speed.latency_ms_p50)
            return
        speeds = measure_speeds(runners, timed, tokenizer.pad_token_id, cfg.latency_samples, cfg.warmup,
                                cfg.throughput_batch, cfg.timing_rounds, warmups[protocol])
        for name, speed in speeds.items():
            p50s[protocol][name].append(speed.latency_ms_p50)

    for repeat in range(args.repeats):
        for protocol in protocols[repeat % len(protocols):] + protocols[: repeat % len(protocols)]:
            measure(protocol)
            print(f"pass {repeat + 1}/{args.repeats} {protocol}: "
                  + ", ".join(f"{n} {v[-1]:.2f}" for n, v in p50s[protocol].items()), flush=True)

    rows = []
    for name in runners:
        row = {"variant": name}
        for protocol in protocols:
            p50 = median(p50s[protocol][name])
            row[f"{protocol}: p50 ms"] = round(p50, 3)
            row[f"{protocol}: speed-up"] = round(median(p50s[protocol][REFERENCE]) / p50, 2)
            if protocol != ALONE:
                row[f"{protocol}: p50 / alone"] = round(p50 / median(p50s[ALONE][name]), 2)
        rows.append(row)
    print(f"\nbatch-1 p50 (median of {args.repeats} passes; {threads} threads; {cfg.timing_rounds} turns of "
          f"{cfg.latency_samples} calls)")
    for protocol in protocols:
        print(f"\n{protocol}")
        print(f"{'variant':24} {'p50 ms':>8} {'speed-up':>9} {'p50 / alone':>12}")
        for row in rows:
            bias = row.get(f"{protocol}: p50 / alone", 1.0)
            print(f"{row['variant']:24} {row[f'{protocol}: p50 ms']:8.3f} {row[f'{protocol}: speed-up']:8.2f}x "
                  f"{bias:12.2f}")
    write_json(args.out, {"command": " ".join(sys.argv), "threads": threads, "repeats": args.repeats,
                          "passes": p50s, "rows": rows})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
