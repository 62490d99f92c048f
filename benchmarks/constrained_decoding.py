"""Constrained (Viterbi, BIO) decoding against per-word argmax, on the same logits: every NER
variant the last `dvc repro` left (finetune, pruned, distilled, INT8), dev and test entity F1,
how many argmax sentences break BIO, and the decoding time per sentence.

    python benchmarks/constrained_decoding.py [--params params.yaml]

The logits are computed once per variant and split, so the two decodings differ only in decoding:
no training noise between them. Run it after `dvc repro` (it reads models/ and data/ingest/).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from tinynlp import modeling, ner  # noqa: E402
from tinynlp.config import load_params  # noqa: E402
from tinynlp.heads import head_for  # noqa: E402
from tinynlp.inference import predict_logits  # noqa: E402
from tinynlp.model_dir import load_spec  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402
from tinynlp.splits import read_split  # noqa: E402
from tinynlp.tagging import valid_bio_pairs  # noqa: E402


def broken_sentences(tags: list[list[str]], labels: list[str]) -> int:
    allowed = set(valid_bio_pairs(labels))
    return sum(any((prev, tag) not in allowed for prev, tag in zip(["O", *row], row)) for row in tags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/constrained_decoding.json"))
    args = parser.parse_args()
    from tasks.evaluate import quantized_variants, torch_variants

    params = load_params(args.params)
    threads = modeling.set_threads()
    spec = load_spec(params.paths.model)
    if spec.task != "ner":
        raise SystemExit("constrained decoding is for NER models; this run's task is " + spec.task)
    head = head_for("ner")
    tokenizer = modeling.load_tokenizer(params.paths.model)
    splits = {name: read_split(params.paths.ingested, name) for name in ("dev", "test")}
    encoded = {name: head.encode(tokenizer, split, spec) for name, split in splits.items()}
    id2label = dict(enumerate(spec.labels))
    rows = []
    for variant in torch_variants(params) + [v for v in quantized_variants(params) if v.kind == "onnx"]:
        runner = variant.load(threads, False)
        row = {"variant": variant.name}
        for name, split in splits.items():
            logits = predict_logits(runner, head.features(encoded[name]), params.evaluate.batch_size,
                                    tokenizer.pad_token_id)
            for decoding in ner.DECODINGS:
                started = time.perf_counter()
                predicted = ner.decode(encoded[name], logits, id2label, decoding)
                seconds = time.perf_counter() - started
                row[f"{name}_{decoding}"] = round(ner.entity_scores(split["tags"], predicted)["entity_f1"], 4)
                row[f"{name}_{decoding}_ms_per_sentence"] = round(1000 * seconds / len(predicted), 3)
                if decoding == "argmax":
                    row[f"{name}_argmax_broken_sentences"] = broken_sentences(predicted, spec.labels)
            row[f"{name}_gain"] = round(row[f"{name}_viterbi"] - row[f"{name}_argmax"], 4)
        rows.append(row)
        print(markdown_table(rows, list(rows[0])), flush=True)
    mean = {f"mean_{s}_gain": round(sum(r[f"{s}_gain"] for r in rows) / len(rows), 4) for s in splits}
    write_json(Path(args.out), {"threads": threads, "rows": rows, **mean})
    print(mean)


if __name__ == "__main__":
    main()
