"""Does WNUT-17's test split reward recall where its dev split does not? The fine-tuned model's
word logits on dev and test, decoded as the model decodes them, with the `O` logit lowered by b
(b = 0: the model as it is); entity F1, precision and recall per b and split. A diagnostic: b is
not an option, since only dev may choose it, and dev chooses 0.

    python benchmarks/outside_bias.py [--model models/finetune] [--biases 0,0.5,1,1.5,2,2.5,3]
        [--out reports/benchmarks/outside_bias.json]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from tinynlp import modeling, ner  # noqa: E402
from tinynlp.heads import head_for  # noqa: E402
from tinynlp.inference import TorchRunner, predict_logits  # noqa: E402
from tinynlp.model_dir import load_model  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402
from tinynlp.splits import read_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models/finetune"))
    parser.add_argument("--biases", default="0,0.5,1,1.5,2,2.5,3")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/outside_bias.json"))
    args = parser.parse_args()
    model, spec = load_model(args.model)
    tokenizer, head = modeling.load_tokenizer(args.model), head_for(spec.task)
    labels = list(spec.labels)
    outside = np.eye(len(labels))[labels.index("O")]
    ingested = ROOT / yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]["ingested"]
    rows = []
    for split in ("dev", "test"):
        data = read_split(ingested, split)
        encoded = head.encode(tokenizer, data, spec)
        logits = predict_logits(TorchRunner(model.eval()), head.features(encoded), 64, tokenizer.pad_token_id)
        words = ner.word_logits(encoded, logits, len(labels))
        for bias in (float(b) for b in args.biases.split(",")):
            ids = ner.tag_ids([(totals - bias * outside, seen) for totals, seen in words], labels, spec.decoding)
            scores = ner.entity_scores(data["tags"], [[labels[i] for i in row] for row in ids])
            rows.append({"split": split, "bias": bias, "entity_f1": round(scores["entity_f1"], 4),
                         "precision": round(scores["micro"]["precision"], 4),
                         "recall": round(scores["micro"]["recall"], 4)})
    write_json(Path(args.out), {"model": args.model, "decoding": spec.decoding, "rows": rows})
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
