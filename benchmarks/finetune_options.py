"""The effect of each fine-tuning option on WNUT-17, measured in one run on the same data, seed
and threads: test/dev entity F1, wall time (finetune + evaluate), trainable parameters.

    python benchmarks/finetune_options.py [--only baseline,fgm] [--set finetune.epochs=3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, prepare_data, timed, write_json  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

OPTIONS = {
    "baseline": {},
    "random_order": {"finetune": {"batch_order": "random"}},
    "label_all_tokens": {"finetune": {"label_all_tokens": True}},
    "fgm": {"finetune": {"fgm_epsilon": 1.0}},
    "lora": {"finetune": {"peft": "lora", "learning_rate": 1e-3}},
    "bitfit": {"finetune": {"peft": "bitfit", "learning_rate": 1e-3}},
    "pretrain_continued": {"pretrain": {"enabled": True, "epochs": 3}},
}


def merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(OPTIONS), help="comma-separated option names")
    parser.add_argument("--set", action="append", default=[], help="base override, e.g. finetune.epochs=3")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/finetune_options.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain

    base = parse_sets(args.set)
    out = Path(args.out)
    # rows of earlier runs with the same base are kept, so options can be measured in batches
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    rows = [r for r in earlier.get("rows", []) if earlier.get("base_overrides") == base
            and r["option"] not in args.only.split(",")]
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory() as workdir:
            params = params_for(Path(workdir), merge(base, OPTIONS[name]))
            prepare_data(params)
            times: dict = {}
            with timed(times, "pretrain_seconds"):
                run_pretrain(params)
            with timed(times, "seconds"):
                trained = run_finetune(params)
                scores = run_evaluate(params)
        rows.append({"option": name, "test_f1": round(scores["test_entity_f1"], 4),
                     "dev_f1": round(scores["dev_entity_f1"], 4), **times,
                     "epochs_run": trained["epochs_run"], "trainable_parameters": trained["trainable_parameters"]})
        write_json(Path(args.out), {"threads": threads, "base_overrides": base, "rows": rows})
        print(markdown_table(rows, list(rows[0])), flush=True)


if __name__ == "__main__":
    main()
