"""Distillation with teacher logits cached once against computed on the fly, in one run on the same
teacher, data, seed and threads: wall time of the distill stage, student dev metric, and the ratio.

    python benchmarks/distill_teacher_logits.py [--teacher models/finetune] [--set distill.epochs=3]

The teacher is an existing fine-tuned model directory (default: the pipeline's `models/finetune`).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, prepare_data, timed, write_json  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from benchmarks.finetune_options import merge  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

MODES = ("cached", "on_the_fly")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=str(ROOT / "models/finetune"))
    parser.add_argument("--set", action="append", default=[], help="override, e.g. distill.epochs=1")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/distill_teacher_logits.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    from tasks.distill import run_distill

    base = parse_sets(args.set)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for mode in MODES:
            params = params_for(Path(workdir), merge(base, {"distill": {"teacher_logits": mode}}))
            if not Path(params.paths.ingested).exists():
                prepare_data(params)
                shutil.copytree(args.teacher, params.paths.model)
            times: dict = {}
            with timed(times, "seconds"):
                result = run_distill(params)
            metric = next(k for k in result if k.startswith("dev_"))
            rows.append({"teacher_logits": mode, metric: result[metric], **times,
                         "train_seconds": result["train_seconds"],
                         "teacher_logits_seconds": result["teacher_logits_seconds"]})
    ratio = round(rows[1]["seconds"] / rows[0]["seconds"], 2)
    write_json(Path(args.out), {"threads": threads, "overrides": base, "rows": rows,
                                "on_the_fly_over_cached": ratio})
    print(markdown_table(rows, list(rows[0])))
    print(f"threads: {threads}; on-the-fly / cached wall time: {ratio}x")


if __name__ == "__main__":
    main()
