"""Fine-tuning with and without the augment stage, side by side, at a share of the training data
(the first rows of train, each with its augmented copies), same seed and training recipe:
dev and test metric, training rows and time. A smaller share trains for more epochs (the same
for both runs: base epochs / fraction, at most `--max-epoch-scale` times the base), early-stopped
only at the base epoch count (longer runs train every epoch and keep the best on dev), so
small-data runs converge instead of stopping after a few dozen steps. Final dev and test scores are on the whole splits.

    python benchmarks/augmentation.py [--datasets wnut17,sst2] [--fractions 0.05,0.2,1.0]
                                      [--max-epoch-scale 10] [--set augment.copies=4]

WNUT-17 runs on params.yaml, SST-2 on examples/params/sst2.yaml (needs ../shared/data).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, timed, write_json  # noqa: E402
from benchmarks.finetune_options import merge  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from tinynlp import modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

PROFILES = {"wnut17": ROOT / "params.yaml", "sst2": ROOT / "examples/params/sst2.yaml"}


def score(params) -> dict:
    """The fine-tuned model's dev and test metric, through the evaluate stage's own scoring."""
    from tinynlp.model_dir import load_spec
    from tinynlp.splits import read_split
    from tasks.evaluate import score_variant, torch_variants
    from tinynlp.heads import head_for

    spec = load_spec(params.paths.model)
    head = head_for(spec.task)
    tokenizer = modeling.load_tokenizer(params.paths.model)
    splits = {name: read_split(params.paths.ingested, name) for name in ("dev", "test")}
    encoded = {name: head.encode(tokenizer, split, spec) for name, split in splits.items()}
    finetuned = next(v for v in torch_variants(params) if v.name == "finetune")
    row = score_variant(finetuned, spec, encoded, splits, params, modeling.available_cores(),
                        tokenizer.pad_token_id)["row"]
    return {"metric": head.metric, "dev": row["dev_score"], "test": row["test_score"]}


def epochs_for(base_epochs: int, fraction: float, max_scale: float) -> int:
    return max(base_epochs, min(round(base_epochs * max_scale), math.ceil(base_epochs / fraction)))


def patience_for(base_patience: int, base_epochs: int, epochs: int) -> int:
    """Runs given more epochs than the base train them all (the best dev epoch is kept): with a
    few hundred sentences a model tags everything O for many epochs before it starts to learn,
    and early stopping would end it there."""
    return epochs if epochs > base_epochs else base_patience


def run_dataset(name: str, fractions: list[float], overrides: dict, workdir: Path, max_scale: float,
                keep: Callable[[list[dict]], None]) -> list[dict]:
    """Both runs at each fraction; `keep` gets the rows so far after each pair, so an interrupted
    benchmark keeps what it measured."""
    from tasks.augment import run_augment
    from tasks.finetune import run_finetune
    from tasks.ingest import run_ingest
    from tasks.pretrain import run_pretrain

    base = params_for(workdir, merge(overrides, {"augment": {"enabled": False}}), PROFILES[name])
    train_rows = run_ingest(base)["train_sentences" if base.ingest.task == "ner" else "train_rows"]
    run_pretrain(base)  # disabled: the checkpoint passed through, as in the DAG
    augmented = {}
    for setting in (False, True):  # the whole train split augmented once; runs take the first rows
        params = params_for(workdir, merge(overrides, {"augment": {"enabled": setting},
                                                       "paths": {"augmented": str(workdir / f"augment_{setting}")}}),
                            PROFILES[name])
        augmented[setting] = params, run_augment(params)
    # what the augmented rows look like, kept next to the figures
    shutil.copyfile(Path(augmented[True][0].paths.reports) / "augment" / "report.md",
                    ROOT / "reports/benchmarks" / f"augmentation_{name}_examples.md")
    rows = []
    for fraction in fractions:
        limit = max(1, round(fraction * train_rows))
        epochs = epochs_for(base.finetune.epochs, fraction, max_scale)
        schedule = {"max_train_samples": limit, "epochs": epochs,
                    "patience": patience_for(base.finetune.patience, base.finetune.epochs, epochs)}
        for setting in (False, True):
            params = params_for(workdir, merge(overrides, {
                "augment": {"enabled": setting}, "finetune": schedule,
                "paths": {"augmented": augmented[setting][0].paths.augmented}}), PROFILES[name])
            times: dict = {}
            with timed(times, "train_seconds"):
                trained = run_finetune(params)
            scores = score(params)
            rows.append({"dataset": name, "fraction": fraction, "rows": limit, "augment": "on" if setting else "off",
                         "train_rows": _rows_used(params, limit), "metric": scores["metric"], "dev": scores["dev"],
                         "test": scores["test"], "epochs": epochs, "epochs_run": trained["epochs_run"], **times,
                         "overrides": overrides})
            shutil.rmtree(params.paths.model, ignore_errors=True)
        keep(rows)
    return rows


def _rows_used(params, limit: int) -> int:
    from tinynlp.splits import read_training_split

    return len(read_training_split(params.paths.augmented, limit)["line"])


def with_gains(rows: list[dict]) -> list[dict]:
    """Each 'on' row gets its gain over the 'off' row of the same dataset and fraction."""
    off = {(r["dataset"], r["fraction"]): r for r in rows if r["augment"] == "off"}
    for row in rows:
        base = off.get((row["dataset"], row["fraction"]))
        if row["augment"] == "on" and base:
            row["test_gain_pt"] = round(100 * (row["test"] - base["test"]), 2)
            row["dev_gain_pt"] = round(100 * (row["dev"] - base["dev"]), 2)
            row["time_ratio"] = round(row["train_seconds"] / base["train_seconds"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="wnut17,sst2")
    parser.add_argument("--fractions", default="0.05,0.2,1.0")
    parser.add_argument("--max-epoch-scale", type=float, default=10.0)
    parser.add_argument("--set", action="append", default=[], help="override, e.g. augment.copies=4")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/augmentation.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    overrides = parse_sets(args.set)
    fractions = [float(f) for f in args.fractions.split(",")]
    out = Path(args.out)
    # rows of other datasets and fractions measured earlier are kept (each row records its overrides),
    # so datasets can be run in turns
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    names = args.datasets.split(",")
    rows = [r for r in earlier.get("rows", []) if (r["dataset"], r["fraction"]) not in
            {(n, f) for n in names for f in fractions}]

    def keep(new_rows: list[dict]) -> None:
        measured = with_gains(sorted(rows + new_rows, key=lambda r: (r["dataset"], r["fraction"], r["augment"])))
        write_json(out, {"threads": threads, "rows": measured})
        print(markdown_table(measured, ["dataset", "fraction", "rows", "augment", "train_rows", "metric", "dev",
                                        "test", "test_gain_pt", "dev_gain_pt", "epochs", "epochs_run",
                                        "train_seconds", "time_ratio"]), flush=True)

    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"augment-bench-{name}-") as workdir:
            rows += run_dataset(name, fractions, overrides, Path(workdir), args.max_epoch_scale, keep)


if __name__ == "__main__":
    main()
