"""MLM throughput: our `pretrain` stage against the plain Hugging Face run_mlm-style recipe, in
one run, on the same corpus slice, checkpoint (MiniLM-L6), seed and threads.

run_mlm's defaults: texts concatenated and cut into blocks of min(1024, model max) tokens
(512 for MiniLM), batch 8, Trainer defaults, 15% masking. Ours: the `pretrain` params as they
are (by default dynamic padding with length-grouped batches of up to 128 tokens, batch 32) and
`pretrain.packing=group_texts` for the packed variant. Throughput is tokens trained per second
of training (every token of a packed block counts; padding does not).

    python benchmarks/pretrain_vs_hf.py [--corpus ../shared/data/corpus/webtext.txt] [--texts 2000]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, write_json  # noqa: E402
from tinynlp import mlm, modeling  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared/data/corpus/webtext.txt"


def plain_run_mlm(params, block: int = 512, batch: int = 8) -> dict:
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

    cfg = params.pretrain
    source = modeling.resolve_checkpoint(cfg.checkpoint)
    tokenizer = modeling.load_tokenizer(source)
    corpus = mlm.load_corpus(params.paths.corpus, cfg.eval_fraction, cfg.seed, cfg.max_texts)
    tokenized = corpus.map(lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True,
                           remove_columns=["text"])
    blocks = mlm.pack(tokenized, block)
    set_seed(cfg.seed)
    model = AutoModelForMaskedLM.from_pretrained(source)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=cfg.learning_rate, seed=cfg.seed, use_cpu=True, report_to="none",
                             save_strategy="no", eval_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=blocks["train"], eval_dataset=blocks["test"],
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = len(blocks["train"]) * block
    return {"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_second": round(tokens / seconds, 1),
            "perplexity_after": round(math.exp(trainer.evaluate()["eval_loss"]), 3)}


def ours(params) -> dict:
    from tasks.pretrain import run_pretrain

    metrics = run_pretrain(params)
    return {"tokens": metrics["train_tokens"], "seconds": metrics["train_seconds"],
            "tokens_per_second": metrics["tokens_per_second"], "perplexity_after": metrics["perplexity_after"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--texts", type=int, default=2000, help="corpus lines used (same for all)")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/pretrain_vs_hf.json"))
    args = parser.parse_args()
    configure_logging()
    threads = modeling.set_threads()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        base = {"pretrain": {"enabled": True, "epochs": 1, "max_texts": args.texts}}
        for name, packing in (("ours, dynamic padding", "dynamic"), ("ours, group_texts", "group_texts")):
            params = params_for(Path(workdir) / packing, {"paths": {"corpus": args.corpus},
                                                           "pretrain": {**base["pretrain"], "packing": packing}})
            rows.append({"recipe": name, **ours(params)})
        rows.insert(0, {"recipe": "plain run_mlm-style (block 512, batch 8)", **plain_run_mlm(params)})
    for row in rows[1:]:
        row["speedup_vs_plain"] = round(row["tokens_per_second"] / rows[0]["tokens_per_second"], 2)
    write_json(Path(args.out), {"threads": threads, "corpus": args.corpus, "texts": args.texts, "rows": rows})
    print(markdown_table(rows, ["recipe", "tokens", "seconds", "tokens_per_second", "perplexity_after", "speedup_vs_plain"]))
    print(f"torch threads: {threads}; corpus: {args.corpus} (first {args.texts} lines, 5% held out)")


if __name__ == "__main__":
    main()
