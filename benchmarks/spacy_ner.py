"""spaCy 3.8's efficiency NER pipeline (CNN, no vectors) against our model variants, trained and
timed here on the same validated splits, in one run.

spaCy side, in a virtualenv of its own (built on first use and reused; spaCy is not a dependency
of the project): the validated train/dev/test sentences become spaCy Docs with their BIO tags
(what `spacy convert -c ner` makes of the CoNLL files); `spacy init config --pipeline ner
--optimize efficiency`; `spacy train` with that config's defaults; test entity F1 from
`nlp.evaluate`; words/s of `nlp.pipe` on the raw test texts.

Our side: each ONNX variant that `dvc repro` wrote (models/quantize/variants.json) run by the
promoted model's predictor on the same raw texts (our word splitting and subword tokenization
included, as spaCy's tokenizer is on its side); its test F1 from the same run's
reports/evaluate/metrics.json. Both sides: batch 32, the machine's cores, the median of 3 passes
after a warm-up pass.

Goal (issue 24): the fastest variant that keeps >= 90% of the teacher's (fine-tuned fp32) F1 at
>= 50% of spaCy's words/s and >= 3x its F1.

    python benchmarks/spacy_ner.py [--venv /tmp/tinynlp-spacy-venv] [--passes 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ["spacy>=3.8,<3.9"]
BATCH = 32


def spacy_side(workdir: str, passes: int) -> None:
    """Runs in the spaCy virtualenv (stdlib and spaCy only: no tinynlp here)."""
    import spacy
    from spacy.tokens import Doc, DocBin
    from spacy.training import Example

    work = Path(workdir)
    splits = json.loads((work / "splits.json").read_text(encoding="utf-8"))
    blank = spacy.blank("en")
    for name, split in splits.items():
        bin_ = DocBin()
        for tokens, tags in zip(split["tokens"], split["tags"]):
            bin_.add(Doc(blank.vocab, words=tokens, ents=tags))
        bin_.to_disk(work / f"{name}.spacy")
    python = [sys.executable, "-m", "spacy"]
    subprocess.run([*python, "init", "config", str(work / "config.cfg"), "--lang", "en", "--pipeline", "ner",
                    "--optimize", "efficiency", "--force"], check=True, capture_output=True)
    started = time.perf_counter()
    trained = subprocess.run([*python, "train", str(work / "config.cfg"), "--output", str(work / "model"),
                              "--paths.train", str(work / "train.spacy"), "--paths.dev", str(work / "dev.spacy")],
                             capture_output=True, text=True)
    train_seconds = time.perf_counter() - started
    if trained.returncode != 0:
        raise SystemExit(f"spacy train failed:\n{trained.stderr[-4000:]}")
    nlp = spacy.load(work / "model" / "model-best")
    test = splits["test"]
    examples = [Example(nlp.make_doc(" ".join(tokens)), Doc(nlp.vocab, words=tokens, ents=tags))
                for tokens, tags in zip(test["tokens"], test["tags"])]
    scores = nlp.evaluate(examples, batch_size=BATCH)
    texts = [" ".join(tokens) for tokens in test["tokens"]]
    rates = []
    for index in range(passes + 1):  # the first pass warms up
        start = time.perf_counter()
        words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=BATCH))
        if index:
            rates.append(words / (time.perf_counter() - start))
    (work / "spacy.json").write_text(json.dumps({
        "version": spacy.__version__, "test_f1": round(scores["ents_f"], 4), "train_seconds": round(train_seconds, 1),
        "words_per_s": round(statistics.median(rates), 1), "words_per_s_passes": [round(r, 1) for r in rates],
        "train_log_tail": trained.stdout[-1500:]}), encoding="utf-8")


def our_side(texts: list[str], passes: int) -> list[dict]:
    """Words/s of each ONNX variant through the promoted model's predictor, with its test F1."""
    from tinynlp.modeling import available_cores
    from tinynlp.predict import Predictor, split_words
    from tinynlp.quantization import OnnxRunner

    metrics = json.loads((ROOT / "reports/evaluate/metrics.json").read_text(encoding="utf-8"))["variants"]
    listed = json.loads((ROOT / "models/quantize/variants.json").read_text(encoding="utf-8"))
    predictor = Predictor(ROOT / "models/promoted", batch_size=BATCH)
    words = sum(len(split_words(t)) for t in texts)
    rows = []
    for variant in [v for v in listed if v["kind"] == "onnx"]:
        predictor.runner = OnnxRunner(ROOT / "models/quantize" / variant["file"], available_cores())
        rates = []
        for index in range(passes + 1):
            start = time.perf_counter()
            predictor.predict(texts)
            if index:
                rates.append(words / (time.perf_counter() - start))
        rows.append({"variant": variant["name"], "test_f1": metrics[variant["name"]]["test_score"],
                     "words_per_s": round(statistics.median(rates), 1)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/tinynlp-spacy-venv"))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks/spacy_ner.json")
    parser.add_argument("--spacy-side", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spacy_side:  # this script, re-run by the venv's interpreter
        spacy_side(args.spacy_side, args.passes)
        return 0

    sys.path.insert(0, str(ROOT))
    from benchmarks.common import ensure_venv, write_json
    from tinynlp.config import load_params
    from tinynlp.modeling import available_cores
    from tinynlp.reporting import markdown_table
    from tinynlp.splits import read_split

    params = load_params(ROOT / "params.yaml")
    splits = {name: read_split(ROOT / params.paths.ingested, name) for name in ("train", "dev", "test")}
    python = ensure_venv(args.venv, REQUIREMENTS, "spacy")
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "splits.json").write_text(json.dumps({n: {"tokens": s["tokens"], "tags": s["tags"]}
                                                            for n, s in splits.items()}), encoding="utf-8")
        subprocess.run([python, __file__, "--spacy-side", workdir, "--passes", str(args.passes)], check=True)
        theirs = json.loads(Path(workdir, "spacy.json").read_text(encoding="utf-8"))
    ours = our_side([" ".join(tokens) for tokens in splits["test"]["tokens"]], args.passes)
    teacher = json.loads((ROOT / "reports/evaluate/metrics.json").read_text(encoding="utf-8"))["variants"]["finetune"]
    rows = [{"model": f"spaCy {theirs['version']} efficiency NER", "test_f1": theirs["test_f1"],
             "words_per_s": theirs["words_per_s"]}]
    for row in ours:
        rows.append({"model": row["variant"], "test_f1": row["test_f1"], "words_per_s": row["words_per_s"]})
    for row in rows:
        row["f1_vs_spacy"] = round(row["test_f1"] / theirs["test_f1"], 2) if theirs["test_f1"] else None
        row["speed_vs_spacy"] = round(row["words_per_s"] / theirs["words_per_s"], 2)
        row["share_of_teacher_f1"] = round(row["test_f1"] / teacher["test_score"], 3)
    keeping = [r for r in rows[1:] if r["share_of_teacher_f1"] >= 0.90]
    fastest = max(keeping, key=lambda r: r["words_per_s"]) if keeping else None
    goal = {"fastest_variant_keeping_90pct": fastest and fastest["model"],
            "met": bool(fastest and fastest["speed_vs_spacy"] >= 0.5 and (fastest["f1_vs_spacy"] or 0) >= 3)}
    write_json(args.out, {"threads": available_cores(), "batch": BATCH, "passes": args.passes,
                          "test_sentences": len(splits["test"]["tokens"]), "spacy": theirs, "rows": rows,
                          "goal": goal, "teacher_test_f1": teacher["test_score"]})
    print(markdown_table(rows, list(rows[0])))
    print(f"spaCy trained in {theirs['train_seconds']} s; goal (>= 0.5x spaCy's words/s at >= 3x its F1, "
          f"fastest variant keeping 90% of the teacher's F1 = {goal['fastest_variant_keeping_90pct']}): "
          f"{'met' if goal['met'] else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
