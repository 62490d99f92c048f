"""`tinynlp predict --file` under load: peak memory (RSS) and throughput at growing input sizes,
streaming in chunks (ours) against reading and predicting the whole file in one call (the
baseline, `--chunk` as large as the file), each in a fresh process.

    python benchmarks/predict_load.py [--sizes 1000,10000,40000] [--model models/promoted]
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from tinynlp.splits import read_split  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402


def sentences(ingested: str) -> list[str]:
    split = read_split(ingested, "test")
    return [" ".join(tokens) for tokens in split["tokens"]] if "tokens" in split else list(split["text"])


def run_predict(model: str, path: Path, chunk: int) -> dict:
    """One `tinynlp predict` process: wall time and its own peak RSS (from wait4)."""
    command = [sys.executable, "-m", "cli.main", "predict", "--model", model, "--file", str(path), "--json",
               "--chunk", str(chunk)]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,40000")
    parser.add_argument("--model", default="models/promoted")
    parser.add_argument("--ingested", default="data/ingest", help="validated splits whose test texts are cycled")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/predict_load.json"))
    args = parser.parse_args()
    texts = sentences(str(ROOT / args.ingested))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in (int(s) for s in args.sizes.split(",")):
            path = Path(scratch) / f"{size}.txt"
            path.write_text("\n".join(itertools.islice(itertools.cycle(texts), size)) + "\n", encoding="utf-8")
            ours, whole = run_predict(args.model, path, args.chunk), run_predict(args.model, path, size)
            rows.append({"texts": size, "streamed_rss_mb": ours["peak_rss_mb"], "whole_rss_mb": whole["peak_rss_mb"],
                         "rss_ratio": round(whole["peak_rss_mb"] / ours["peak_rss_mb"], 2),
                         "streamed_texts_per_s": round(size / ours["seconds"]),
                         "whole_texts_per_s": round(size / whole["seconds"]),
                         "speed_ratio": round(whole["seconds"] / ours["seconds"], 2)})
            print(markdown_table(rows, list(rows[0])), flush=True)
    write_json(Path(args.out), {"model": args.model, "chunk": args.chunk, "threads": os.cpu_count(), "rows": rows})


if __name__ == "__main__":
    main()
