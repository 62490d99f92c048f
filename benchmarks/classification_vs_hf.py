"""SST-2: our `finetune` + `evaluate` (profile examples/params/sst2.yaml) against the plain
Hugging Face run_glue-style recipe, in one run: same checkpoint (MiniLM-L6), same validated
data, same seed, same threads. Needs ../shared/data.

run_glue's defaults: every sentence padded to max_seq_length 128, batch 32, lr 2e-5, 1 epoch,
no warm-up. `--plain-padding dynamic` is run_glue with `--pad_to_max_length False`: each shuffled
batch padded to its longest sentence (DataCollatorWithPadding), far faster on SST-2's short ones.
Both recipes are scored at the end on our dev split (6,735 sentences held out of GLUE's train) and
our test split (GLUE's validation set, 872 sentences).

    python benchmarks/classification_vs_hf.py [--plain-padding max_length|dynamic]
                                              [--set finetune.learning_rate=5e-5 ...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, base_params, params_for, prepare_data, timed, write_json  # noqa: E402
from benchmarks.finetune_vs_hf import parse_sets  # noqa: E402
from tinynlp.splits import read_labels, read_split  # noqa: E402
from tinynlp import modeling, textclf  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

PROFILE = ROOT / "examples/params/sst2.yaml"


def plain_run_glue(params, seed: int, padding: str = "max_length") -> dict[str, dict]:
    from transformers import (DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator,
                              set_seed)

    _, labels = read_labels(params.paths.ingested)
    label2id = {l: i for i, l in enumerate(labels)}
    tokenizer = modeling.load_tokenizer(params.paths.pretrained)
    set_seed(seed)
    model = modeling.load_classifier(params.paths.pretrained, labels, "AutoModelForSequenceClassification", seed=seed)

    # run_glue: max_seq_length 128, capped by what the model takes
    max_length = min(128, tokenizer.model_max_length, model.config.max_position_embeddings)

    fixed = padding == "max_length"  # otherwise DataCollatorWithPadding pads each batch

    def encode(split):
        batch = tokenizer(split["text"], padding="max_length" if fixed else False, max_length=max_length,
                          truncation=True)
        return [{"input_ids": i, "attention_mask": m, "labels": label2id[l]}
                for i, m, l in zip(batch["input_ids"], batch["attention_mask"], split["label"])]

    train = read_split(params.paths.ingested, "train")
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=2e-5, per_device_train_batch_size=32,
                             per_device_eval_batch_size=32, num_train_epochs=1, seed=seed, use_cpu=True,
                             report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True)
    collator = default_data_collator if fixed else DataCollatorWithPadding(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train), data_collator=collator)
    trainer.train()
    scores = {}
    for name in ("dev", "test"):
        split = read_split(params.paths.ingested, name)
        logits = trainer.predict(encode(split)).predictions
        scores[name] = textclf.scores(split["label"], textclf.decode(list(np.asarray(logits)), dict(enumerate(labels))),
                                      labels)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, help="params file to start from (your own data and checkpoint); "
                        "its relative paths are read from its folder")
    parser.add_argument("--set", action="append", default=[], help="override ours, e.g. finetune.epochs=1")
    parser.add_argument("--plain-padding", choices=("max_length", "dynamic"), default="max_length",
                        help="the plain recipe's padding: run_glue's default (every sentence to 128 tokens) or "
                             "--pad_to_max_length False (each batch to its longest)")
    parser.add_argument("--skip-plain", action="store_true", help="only ours (the plain recipe takes ~20 min)")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/classification_vs_hf.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain

    with tempfile.TemporaryDirectory() as workdir:
        params = params_for(Path(workdir), parse_sets(args.set), **base_params(args, PROFILE))
        prepare_data(params)
        run_pretrain(params)
        times: dict = {}
        with timed(times, "ours_seconds"):
            run_finetune(params)
            ours = run_evaluate(params)
        rows = [{"recipe": "ours (finetune + evaluate)", "dev accuracy": round(ours["dev_accuracy"], 4),
                 "test accuracy": round(ours["test_accuracy"], 4), "seconds": times["ours_seconds"]}]
        if not args.skip_plain:
            with timed(times, "plain_seconds"):
                plain = plain_run_glue(params, params.finetune.seed, args.plain_padding)
            rows.insert(0, {"recipe": f"plain run_glue-style Trainer ({args.plain_padding} padding)",
                            "dev accuracy": round(plain["dev"]["accuracy"], 4),
                            "test accuracy": round(plain["test"]["accuracy"], 4), "seconds": times["plain_seconds"]})
    result = {"threads": threads, "overrides": parse_sets(args.set), "plain_padding": args.plain_padding, **times,
              "rows": rows}
    if not args.skip_plain:
        result["time_ratio_ours_over_plain"] = round(times["ours_seconds"] / times["plain_seconds"], 3)
    write_json(Path(args.out), result)
    print(markdown_table(rows, ["recipe", "dev accuracy", "test accuracy", "seconds"]))
    if not args.skip_plain:
        dev, test = (100 * (rows[1][f"{s} accuracy"] - rows[0][f"{s} accuracy"]) for s in ("dev", "test"))
        print(f"accuracy difference (ours - plain): dev {dev:+.2f}, test {test:+.2f} points; "
              f"time ratio ours/plain: {result['time_ratio_ours_over_plain']:.2f}x; torch threads: {threads}")


if __name__ == "__main__":
    main()
