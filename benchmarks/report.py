"""Print the README's benchmark tables from the JSON files the benchmark scripts wrote
(reports/benchmarks/*.json), so the README quotes exactly what was measured.

    python benchmarks/report.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinynlp.reporting import markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ner_comparison(result: dict) -> str:
    """The finetune_vs_hf table and its one-line verdict."""
    table = markdown_table([
        {"recipe": "plain run_ner-style Trainer", "test entity F1": result["plain_test_f1"], "seconds": result["plain_seconds"]},
        {"recipe": "ours (finetune + evaluate)", "test entity F1": result["ours_test_f1"], "seconds": result["ours_seconds"]},
    ], ["recipe", "test entity F1", "seconds"])
    return (f"{table}\n\nF1 difference (ours - plain) {100 * (result['ours_test_f1'] - result['plain_test_f1']):+.2f} "
            f"points; time ratio ours/plain {result['time_ratio_ours_over_plain']:.2f}x; torch threads {result['threads']}")


def main() -> None:
    if (options := load("finetune_options")):
        print(f"### Fine-tuning options on WNUT-17 (threads: {options['threads']}, base: {options['base_overrides']})\n")
        print(markdown_table(options["rows"], ["option", "test_f1", "dev_f1", "seconds", "pretrain_seconds",
                                               "epochs_run", "trainable_parameters"]) + "\n")
    if (ner := load("finetune_vs_hf")):
        print("### Ours vs the plain run_ner-style recipe\n")
        print(ner_comparison(ner) + "\n")
    if (mlm := load("pretrain_vs_hf")):
        print(f"### MLM throughput (threads: {mlm['threads']}, {mlm['texts']} lines of {Path(mlm['corpus']).name})\n")
        print(markdown_table(mlm["rows"], ["recipe", "tokens", "seconds", "tokens_per_second", "perplexity_after",
                                           "speedup_vs_plain"]) + "\n")
    if (clf := load("classification_vs_hf")):
        print(f"### SST-2 (threads: {clf['threads']})\n")
        print(markdown_table(clf["rows"], ["recipe", "test accuracy", "seconds"]))
        if "time_ratio_ours_over_plain" in clf:
            print(f"\ntime ratio ours/plain {clf['time_ratio_ours_over_plain']:.2f}x\n")


if __name__ == "__main__":
    main()
