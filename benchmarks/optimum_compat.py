"""The promoted model directory loads in Hugging Face Optimum, and says what our predictor says.

`ORTModelForTokenClassification` (NER) or `ORTModelForSequenceClassification` (classification, by
pipeline.json's `task`) opens model.onnx with config.json and the saved tokenizer, and
`transformers.pipeline` (NER: aggregation_strategy="first", our first-subtoken rule) runs it on a
dozen sentences. Our own `tinynlp.predict.Predictor` runs on the same texts; NER entities are
compared as (type, start_char, end_char) sets, classification as labels, with the score
differences. Expected differences are in words: ours keeps @mentions, #hashtags, URLs and hyphenated
words whole (tagged by their first subtoken), BERT's pre-tokenizer splits them and the pipeline tags
each part. optimum-onnx pins transformers 4.x (the project uses 5), so it runs in a virtualenv of
its own, built on first use and reused: never add it to pyproject.toml.

    python benchmarks/optimum_compat.py [--model models/promoted] [--file texts.txt] [--venv DIR]

Exits 1 when Optimum cannot load the directory; writes reports/benchmarks/optimum_compat.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# torch pinned: its CPU wheel is on disk; unpinned, pip pulls a multi-GB CUDA build. optimum-onnx
# resolves to transformers 4.57 beside it (checked with `pip install --dry-run`).
REQUIREMENTS = ["torch==2.13.0", "optimum-onnx[onnxruntime]"]
VERSIONS_OF = ["optimum-onnx", "optimum", "transformers", "tokenizers", "onnxruntime", "torch"]
ORT_CLASSES = {"ner": ("ORTModelForTokenClassification", "token-classification"),
               "classification": ("ORTModelForSequenceClassification", "text-classification")}
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "Apple is opening a new office in London next year.",
    "My sister just moved from Chicago to Seattle for a job at Amazon.",
    "Barack Obama spoke at Harvard University last night.",
    "Watching the Lakers beat the Boston Celtics with @mike_j tonight #NBA",
    "Google and Microsoft are both hiring engineers in Dublin.",
    "Lionel Messi signed a new contract with Inter Miami.",
    "We flew from Tokyo to Sydney with Qantas and it was great.",
    "Taylor Swift announced three more concerts in Berlin.",
    "Elon Musk says Tesla will build a factory near Mexico City.",
    "Had dinner with Anne-Marie at a tiny Italian place in Brooklyn.",
    "The United Nations held an emergency meeting in New York today.",
]


def hf_side(model_dir: str, texts_path: str, out_path: str) -> None:
    """Runs in the Optimum virtualenv (stdlib, optimum, transformers 4.x only: no tinynlp here)."""
    from importlib.metadata import PackageNotFoundError, version

    import optimum.onnxruntime as ort
    from transformers import AutoTokenizer, pipeline

    meta = json.loads((Path(model_dir) / "pipeline.json").read_text(encoding="utf-8"))
    class_name, pipeline_task = ORT_CLASSES[meta["task"]]
    model = getattr(ort, class_name).from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = json.loads(Path(texts_path).read_text(encoding="utf-8"))
    if meta["task"] == "ner":
        pipe = pipeline(pipeline_task, model=model, tokenizer=tokenizer, aggregation_strategy="first")
        results = [[{"type": e["entity_group"], "start": int(e["start"]), "end": int(e["end"]),
                     "score": float(e["score"]), "word": e["word"]} for e in entities] for entities in pipe(texts)]
    else:
        pipe = pipeline(pipeline_task, model=model, tokenizer=tokenizer)
        results = [{row["label"]: float(row["score"]) for row in rows}
                   for rows in pipe(texts, top_k=None, truncation=True, max_length=meta["max_length"])]

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    Path(out_path).write_text(json.dumps({"class": class_name, "model_file": Path(model.path).name,
                                          "tokenizer": type(tokenizer).__name__, "results": results,
                                          "versions": {n: installed(n) for n in VERSIONS_OF}}), encoding="utf-8")


def compare_ner(texts: list[str], ours: list, theirs: list[list[dict]]) -> tuple[dict, list[dict]]:
    """Entities as (type, start_char, end_char): agreement = shared / all distinct entities (1.0:
    identical sets), score difference over the shared ones."""
    rows, shared, union, diffs = [], 0, 0, []
    for text, our_entities, their_entities in zip(texts, ours, theirs):
        a = {(e.type, e.char_start, e.char_end): e.score for e in our_entities}
        b = {(e["type"], e["start"], e["end"]): e["score"] for e in their_entities}
        both = a.keys() & b.keys()
        shared, union = shared + len(both), union + len(a.keys() | b.keys())
        differences = [abs(a[k] - b[k]) for k in both]
        diffs += differences
        show = lambda spans: ", ".join(f"{text[s:e]}/{t}" for t, s, e in sorted(spans, key=lambda k: k[1])) or "-"
        rows.append({"text": text, "ours": show(a), "optimum": show(b), "same": a.keys() == b.keys(),
                     "score_diff": round(max(differences, default=0.0), 4),
                     "only_ours": show(a.keys() - b.keys()), "only_optimum": show(b.keys() - a.keys())})
    summary = {"entities_ours": sum(len(o) for o in ours), "entities_optimum": sum(len(t) for t in theirs),
               "entities_shared": shared, "agreement": round(shared / union, 4) if union else 1.0,
               "texts_identical": sum(r["same"] for r in rows),
               "score_max_abs_diff": round(max(diffs), 6) if diffs else None}
    return summary, rows


def compare_classification(texts: list[str], ours: list, theirs: list[dict]) -> tuple[dict, list[dict]]:
    """Top labels agree on how many texts; the largest difference of any class's probability."""
    rows = []
    for text, label, probabilities in zip(texts, ours, theirs):
        best = max(probabilities, key=probabilities.get)
        rows.append({"text": text, "ours": f"{label.label} {label.score:.4f}",
                     "optimum": f"{best} {probabilities[best]:.4f}", "same": label.label == best,
                     "prob_diff": round(max(abs(label.scores[n] - probabilities[n]) for n in label.scores), 6)})
    summary = {"agreement": round(sum(r["same"] for r in rows) / len(rows), 4),
               "texts_identical": sum(r["same"] for r in rows),
               "probability_max_abs_diff": max(r["prob_diff"] for r in rows)}
    return summary, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/promoted", help="a promoted model directory")
    parser.add_argument("--file", type=Path, help="texts, one per line (default: a dozen built-in sentences)")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/tinynlp-optimum-venv"))
    parser.add_argument("--batch-size", type=int, default=1,
                        help="our predictor's batch; 1 like the pipeline's: a dynamic-INT8 graph scales activations "
                             "per batch, so a text's scores shift with its batch-mates")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks/optimum_compat.json")
    parser.add_argument("--hf-side", nargs=3, metavar=("MODEL", "TEXTS_JSON", "OUT_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_side:  # this script, re-run by the venv's interpreter
        hf_side(*args.hf_side)
        return 0

    sys.path.insert(0, str(ROOT))
    from importlib.metadata import version

    from benchmarks.common import ensure_venv, write_json
    from tinynlp.predict import Predictor
    from tinynlp.reporting import markdown_table

    model_dir = str(Path(args.model).resolve())
    texts = ([line.strip() for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
             if args.file else TEXTS)
    python = ensure_venv(args.venv, REQUIREMENTS, "optimum.onnxruntime")
    with tempfile.TemporaryDirectory() as scratch:
        texts_path, out_path = Path(scratch) / "texts.json", Path(scratch) / "optimum.json"
        texts_path.write_text(json.dumps(texts), encoding="utf-8")
        loaded = subprocess.run([python, __file__, "--hf-side", model_dir, str(texts_path), str(out_path)],
                                capture_output=True, text=True)
        if loaded.returncode != 0:
            print(f"Optimum could not load {model_dir}:\n{loaded.stderr[-4000:]}", file=sys.stderr)
            write_json(args.out, {"model": args.model, "loaded": False, "error": loaded.stderr[-4000:]})
            return 1
        theirs = json.loads(out_path.read_text(encoding="utf-8"))

    predictor = Predictor(model_dir, batch_size=args.batch_size)
    ours = predictor.predict(texts)
    task = predictor.meta["task"]
    compare = compare_ner if task == "ner" else compare_classification
    summary, rows = compare(texts, ours, theirs["results"])
    print(markdown_table(rows, ["text", "ours", "optimum", "same", "score_diff" if task == "ner" else "prob_diff"]))
    print(f"\n{theirs['class']} + pipeline (transformers {theirs['versions']['transformers']}, optimum "
          f"{theirs['versions']['optimum']}) against tinynlp Predictor: "
          + ", ".join(f"{k} {v}" for k, v in summary.items()))
    write_json(args.out, {"model": args.model, "loaded": True, "task": task, "ort_class": theirs["class"],
                          "model_file": theirs["model_file"], "tokenizer_class": theirs["tokenizer"],
                          "texts": len(texts), "our_batch_size": args.batch_size, **summary,
                          "venv_versions": theirs["versions"],
                          "project_versions": {n: version(n) for n in ("transformers", "onnxruntime")},
                          "requirements": REQUIREMENTS, "rows": rows, "optimum_results": theirs["results"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
