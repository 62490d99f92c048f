"""Our `finetune` + `evaluate` against the plain Hugging Face run_ner-style recipe, in one run:
same checkpoint (MiniLM-L6), same validated WNUT-17 data, same seed, same threads.

The plain recipe is what `run_ner.py` does with its defaults: Trainer, lr 5e-5, batch 8,
3 epochs, no warm-up, no weight decay, first-subtoken labels, dynamic padding, random sampling,
no evaluation during training, the last epoch's model scored on test at the end.

    python benchmarks/finetune_vs_hf.py [--set finetune.epochs=3 ...] [--out reports/benchmarks/finetune_vs_hf.json]
"""
from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, base_params, params_for, prepare_data, timed, write_json  # noqa: E402
from tinynlp.splits import read_labels, read_split  # noqa: E402
from tinynlp import modeling, ner  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from benchmarks.report import ner_comparison  # noqa: E402


def plain_recipe(params, seed: int, epochs: int = 3) -> dict:
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments, set_seed

    _, labels = read_labels(params.paths.ingested)
    label2id = {l: i for i, l in enumerate(labels)}
    source = params.paths.pretrained
    tokenizer = modeling.load_tokenizer(source)
    set_seed(seed)
    model = modeling.load_classifier(source, labels, seed=seed)

    def encode(split):  # run_ner's tokenize_and_align_labels: truncation at the model maximum
        batch = tokenizer(split["tokens"], is_split_into_words=True, truncation=True)
        features = []
        for i, tags in enumerate(split["tags"]):
            previous, row = None, []
            for word in batch.word_ids(i):
                row.append(-100 if word is None or word == previous else label2id[tags[word]])
                previous = word
            features.append({"input_ids": batch["input_ids"][i], "attention_mask": batch["attention_mask"][i], "labels": row})
        return features

    train, test = read_split(params.paths.ingested, "train"), read_split(params.paths.ingested, "test")
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=5e-5, per_device_train_batch_size=8,
                             per_device_eval_batch_size=8, num_train_epochs=epochs, seed=seed, use_cpu=True,
                             report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train),
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    trainer.train()
    prediction = trainer.predict(encode(test))
    gold, predicted = [], []
    for logits, label_row in zip(prediction.predictions, prediction.label_ids):
        keep = label_row != -100
        gold.append([labels[i] for i in label_row[keep]])
        predicted.append([labels[i] for i in np.argmax(logits, -1)[keep]])
    return ner.entity_scores(gold, predicted)


def parse_sets(pairs: list[str]) -> dict:
    overrides: dict = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        overrides.setdefault(section, {})[name] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, help="params file to start from (your own data and checkpoint); "
                        "its relative paths are read from its folder")
    parser.add_argument("--set", action="append", default=[], help="override ours, e.g. finetune.epochs=3")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/finetune_vs_hf.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    from tasks.evaluate import run_evaluate
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain

    with tempfile.TemporaryDirectory() as workdir:
        params = params_for(Path(workdir), parse_sets(args.set), **base_params(args, ROOT / "params.yaml"))
        prepare_data(params)
        run_pretrain(params)
        times: dict = {}
        with timed(times, "plain_seconds"):
            plain = plain_recipe(params, params.finetune.seed)
        with timed(times, "ours_seconds"):
            run_finetune(params)
            ours = run_evaluate(params)
    result = {"threads": threads, "overrides": parse_sets(args.set), **times,
              "plain_test_f1": round(plain["entity_f1"], 4), "ours_test_f1": round(ours["test_entity_f1"], 4),
              "ours_dev_f1": round(ours["dev_entity_f1"], 4),
              "time_ratio_ours_over_plain": round(times["ours_seconds"] / times["plain_seconds"], 3)}
    write_json(Path(args.out), result)
    print(ner_comparison(result))


if __name__ == "__main__":
    main()
