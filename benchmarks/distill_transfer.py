"""The distilled student with and without a transfer set, in one run: one teacher fine-tuned once,
then a student distilled from it per option (distill.transfer), each scored on test with the
teacher beside it. Per row: the student's test and dev F1 (accuracy for classification), its share
of the teacher's test score, the transfer rows and the distillation time.

    python benchmarks/distill_transfer.py [--params FILE] [--corpus ../shared/data/corpus/webtext.txt]
        [--only none,augmented,corpus] [--set distill.epochs=6]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, base_params, params_for, prepare_data, timed, write_json  # noqa: E402
from benchmarks.finetune_options import merge  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

OPTIONS = {
    "none": {"augmented_copies": 0, "corpus_texts": 0},
    "augmented": {"augmented_copies": 1, "corpus_texts": 0},
    "corpus": {"augmented_copies": 0, "corpus_texts": 3000},
    "both": {"augmented_copies": 1, "corpus_texts": 3000},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, help="params file to start from (default: the repo's params.yaml)")
    parser.add_argument("--corpus", default="../shared/data/corpus/webtext.txt",
                        help="unlabelled text for the corpus options (paths.corpus)")
    parser.add_argument("--only", default="none,augmented,corpus", help=f"comma-separated: {', '.join(OPTIONS)}")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. distill.epochs=6")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/distill_transfer.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    from tasks.distill import run_distill
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain

    corpus = str(Path(args.corpus).resolve())
    base = merge(parse_sets(args.set), {"prune": {"unstructured": {"enabled": False}, "structured": {"enabled": False}},
                                        "quantize": {"sources": []}})
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        params = params_for(Path(workdir), base, **base_params(args, ROOT / "params.yaml"))
        prepare_data(params)
        run_pretrain(params)
        teacher_times: dict = {}
        with timed(teacher_times, "seconds"):
            run_finetune(params)
        for name in args.only.split(","):
            overrides = merge(base, {"distill": {"transfer": OPTIONS[name]}})
            if OPTIONS[name]["corpus_texts"]:  # a corpus outside the workspace: allowed by name
                allowed = yaml.safe_load((args.params or ROOT / "params.yaml").read_text())["paths"]["allow_outside"]
                overrides = merge(overrides, {"paths": {"corpus": corpus, "allow_outside": [
                    *allowed, workdir, str(Path(corpus).parent)]}})
            params = params_for(Path(workdir), overrides, **base_params(args, ROOT / "params.yaml"))
            times: dict = {}
            with timed(times, "distill_seconds"):
                distilled = run_distill(params)
            scores = run_evaluate(params)["variants"]
            teacher, student = scores["finetune"]["test_score"], scores["distill"]["test_score"]
            rows.append({"transfer": name, "student_test": student, "teacher_test": teacher,
                         "share_of_teacher": round(student / teacher, 3),
                         "student_dev": distilled.get(next(k for k in distilled if k.startswith("dev_"))),
                         "augmented_rows": distilled["transfer"]["augmented"],
                         "corpus_texts": distilled["transfer"]["corpus"], **times,
                         "speedup": scores["distill"]["speedup"]})
            write_json(Path(args.out), {"threads": threads, "base_overrides": base, "corpus": args.corpus,
                                        "teacher_seconds": teacher_times["seconds"], "rows": rows})
            print(markdown_table(rows, list(rows[0])), flush=True)


if __name__ == "__main__":
    main()
