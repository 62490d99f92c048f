"""NER decoding (window logits -> word tags, Viterbi under BIO constraints) for batches of 1 to
256 test sentences: this checkout's `tinynlp/ner.py`, which decodes a batch together, against
the same module at `--baseline-ref` (by default the commit before, which decoded one sentence at a
time), side by side in one process, the two taking turns. The logits are random; the sentence
lengths (20 batches drawn per size) and tag set are the validated test split's. Both must give the same tags.

    python benchmarks/decode_speed.py [--baseline-ref aa50383] [--batches 1,2,8,32,256] [--rounds 5]
        [--out reports/benchmarks/decode_speed.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from tinynlp import ner  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402
from tinynlp.splits import read_split  # noqa: E402


def module_at(ref: str, path: str, workdir: Path):
    """`path` (a module of this repo) as it was at git `ref`, imported under a name of its own."""
    source = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    file = workdir / f"baseline_{Path(path).stem}.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


DRAWS = 20  # batches drawn per size, taken in turn: a size's figure is not one batch's lengths


def decode_all(module, sentences, labels) -> list[list[int]]:
    """The module's whole-batch entry point if it has one, else one sentence at a time."""
    if hasattr(module, "tag_ids"):
        return module.tag_ids(sentences, labels, "viterbi")
    return [module.word_tag_ids(totals, seen, labels, "viterbi") for totals, seen in sentences]


def per_call_ms(module, draws, labels, calls: int) -> float:
    started = time.perf_counter()
    for call in range(calls):
        decode_all(module, draws[call % len(draws)], labels)
    return (time.perf_counter() - started) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-ref", default="aa50383")
    parser.add_argument("--batches", default="1,2,8,32,256")
    parser.add_argument("--rounds", type=int, default=5, help="turns each; rows give the median")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/decode_speed.json"))
    args = parser.parse_args()
    paths = yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]
    test = read_split(paths["ingested"], "test")
    labels = sorted({tag for tags in test["tags"] for tag in tags}, key=lambda t: (t != "O", t[2:], t[:2]))
    lengths = [len(tokens) for tokens in test["tokens"]]
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        baseline = module_at(args.baseline_ref, "tinynlp/ner.py", Path(workdir))
        for batch in (int(b) for b in args.batches.split(",")):
            draws = [[(rng.normal(size=(n, len(labels))) * 3, np.ones(n, dtype=bool))
                      for n in rng.choice(lengths, size=batch)] for _ in range(DRAWS)]
            for sentences in draws:
                if decode_all(ner, sentences, labels) != decode_all(baseline, sentences, labels):
                    raise SystemExit(f"batch {batch}: the two decoders disagree")
            calls = max(DRAWS, 4000 // batch)
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(per_call_ms(ner, draws, labels, calls))
                theirs.append(per_call_ms(baseline, draws, labels, calls))
            mine, base = statistics.median(ours), statistics.median(theirs)
            rows.append({"sentences": batch, "words_mean": round(sum(len(t) for d in draws for t, _ in d) / DRAWS, 1),
                         "ours_ms": round(mine, 4), f"{args.baseline_ref}_ms": round(base, 4),
                         "speedup": round(base / mine, 2)})
            print(markdown_table(rows[-1:], list(rows[0])), flush=True)
    write_json(Path(args.out), {"baseline_ref": args.baseline_ref, "labels": len(labels), "rounds": args.rounds,
                                "rows": rows})
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
