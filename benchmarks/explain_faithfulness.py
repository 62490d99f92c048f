"""Do the attributions of `tinynlp explain` mean something? Comprehensiveness against a random
baseline (DeYoung et al. 2020, ERASER): on dev examples, replacing the top-k attributed words by
[PAD] must lower the explained prediction's probability more than replacing k random words, for
k = 1, 3, 5. One explanation per example (its first predicted entity, or its label).

    python benchmarks/explain_faithfulness.py [--model models/promoted] [--examples 200] [--seed 0]

Prints the drop of each and their ratio (ours / random: above 1 means the attributions find the
words the prediction rests on), and writes reports/benchmarks/explain_faithfulness.json."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from tinynlp.explain import Explainer  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.progress import Meter  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402
from tinynlp.splits import read_split  # noqa: E402

KS = (1, 3, 5)


def texts(ingested: str, split: str) -> list[str]:
    columns = read_split(ingested, split)
    return [" ".join(tokens) for tokens in columns["tokens"]] if "tokens" in columns else list(columns["text"])


def measure(explainer: Explainer, candidates: list[str], examples: int, seed: int) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    drops = {k: {"top": [], "random": []} for k in KS}
    meter, used, skipped = Meter(examples, "explained", "examples"), 0, 0
    for text in candidates:
        if used == examples:
            break
        explanations = explainer.explain(text)
        if not explanations or len(explanations[0].words) <= max(KS):
            skipped += 1  # nothing predicted, or too short to remove k words and keep some
            continue
        e = explanations[0]
        base = explainer.score_without(e, set())
        ranked = [int(i) for i in np.argsort(e.attributions)[::-1]]  # most supporting first
        for k in KS:
            drops[k]["top"].append(base - explainer.score_without(e, set(ranked[:k])))
            randomly = set(int(i) for i in rng.choice(len(e.words), size=k, replace=False))
            drops[k]["random"].append(base - explainer.score_without(e, randomly))
        used += 1
        meter.advance()
    rows = [{"k": k, "examples": len(d["top"]), "drop top-k": round(float(np.mean(d["top"])), 4),
             "drop random k": round(float(np.mean(d["random"])), 4),
             "ratio": round(float(np.mean(d["top"]) / max(np.mean(d["random"]), 1e-9)), 2)} for k, d in drops.items()]
    return rows, {"skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/promoted", help="promoted or stage model directory")
    parser.add_argument("--ingested", default="data/ingest", help="validated splits (the ingest stage's output)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=32, help="integration steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/explain_faithfulness.json"))
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    explainer = Explainer(args.model, args.steps)
    started = time.perf_counter()
    rows, extra = measure(explainer, texts(args.ingested, args.split), args.examples, args.seed)
    seconds = round(time.perf_counter() - started, 1)
    print(markdown_table(rows, list(rows[0])))
    print(f"task {explainer.spec.task}; model {args.model}; {args.split} split; {seconds} s; "
          f"{extra['skipped']} examples skipped (no prediction to explain, or ≤ {max(KS)} words)")
    write_json(Path(args.out), {"task": explainer.spec.task, "model": args.model, "split": args.split,
                                "steps": args.steps, "seed": args.seed, "seconds": seconds, "rows": rows, **extra})
    return 0


if __name__ == "__main__":
    sys.exit(main())
