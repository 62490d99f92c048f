"""From served traffic back to retraining, measured on real shifted data (needs ../shared/data and
the promoted model of a `dvc repro` on the default params: WNUT-17, trained on tweets).

(a) Drift without labels: WNUT-17 test's StackExchange, Reddit and (control) Twitter sentences are
    served by `tinynlp serve` (in-process, capture on), and `tinynlp drift` runs on each capture
    folder: the unlabelled verdict (drift.decide_on_unlabelled).
(b) False alarms: `--splits` random same-domain splits of WNUT-17 train, each a batch of
    `--batch-rows` tweets served and captured, tested against the rest of train as the reference.
(c) The labelling queue: Reddit + StackExchange sentences are split per seed into a pool that is
    served and captured (60%) and an evaluation set (40%). The drift check's queue
    (`--budget` texts: least sure, spread, distinct) and the same number of random pool sentences
    are labelled from the gold tags, each added to WNUT-17 train, and the model fine-tuned again
    with the default recipe; entity F1 on the evaluation set, side by side, per seed, with the
    model fine-tuned on train alone (the repo's models/finetune) as the base.

    python benchmarks/traffic_loop.py [--parts a,b,c] [--seeds 3] [--budget 100] [--splits 20]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, prepare_data, timed, write_json  # noqa: E402
from tinynlp import labelling, modeling  # noqa: E402
from tinynlp.capture import read_capture  # noqa: E402
from tinynlp.readers import conll_lines  # noqa: E402
from tinynlp.ingestion import records_table  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.predict import split_words  # noqa: E402
from tinynlp.readers import Sentence, read_conll  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

WNUT = ROOT.parent / "shared" / "data" / "ner" / "wnut17"
PROMOTED = ROOT / "models" / "promoted"
SHIFTED = ("stackexchange", "reddit")


def serve_and_capture(sentences: list[Sentence], folder: Path) -> None:
    """The sentences' texts through the real app, capture on; returns once the capture is written."""
    from fastapi.testclient import TestClient

    from cli import serve as serve_cli
    from tinynlp.config import ServeConfig

    cfg = ServeConfig(capture={"enabled": True, "dir": str(folder)})
    with TestClient(serve_cli.build_app(PROMOTED, cfg=cfg)) as client:
        for start in range(0, len(sentences), 32):
            texts = [" ".join(s.tokens) for s in sentences[start:start + 32]]
            assert client.post("/predict", json={"texts": texts}).status_code == 200


def drift_params(workdir: Path, reference: Path | None = None, queue_size: int = 50):
    paths = {"promoted": str(PROMOTED), "ingested": str(reference or ROOT / "data/ingest")}
    return params_for(workdir, {"paths": paths, "drift": {"queue_size": queue_size,
                                                          "queue_dir": str(workdir / "labelling")}})


def verdict_row(name: str, report: dict) -> dict:
    signals = {s["name"]: s for s in report["verdict"]["signals"]}
    figure = lambda n: "-" if n not in signals else (f"{signals[n]['p_value']:.2g}" if signals[n]["p_value"] is not None
                                                    else f"{signals[n]['statistic']:+.1%}") + (" *" if signals[n]["drifted"] else "")
    return {"served batch": name, "rows": report["batch_rows"], "embedding p": figure("embedding"),
            "predictions p": figure("predictions"), "length p": figure("length"), "OOV excess": figure("vocabulary"),
            "decided on": "+".join(report["decided_on"]), "verdict": "DRIFT" if report["verdict"]["drifted"] else "no drift"}


def part_a(workdir: Path) -> list[dict]:
    from tinynlp.drift_check import run_drift

    rows = []
    for source in (*SHIFTED, "twitter"):
        folder = workdir / f"capture-{source}"
        serve_and_capture(read_conll(WNUT / f"by_source/test_{source}.conll", "bio"), folder)
        report = run_drift(drift_params(workdir), folder, out_dir=workdir / f"report-{source}")
        rows.append(verdict_row(f"test {source}" + (" (control)" if source == "twitter" else ""), report))
    return rows


def part_b(workdir: Path, splits: int, batch_rows: int) -> dict:
    import pyarrow.parquet as pq

    from tinynlp.drift_check import run_drift

    train = read_conll(WNUT / "train.conll", "bio")
    flagged = []
    for split in range(splits):
        order = np.random.default_rng(1000 + split).permutation(len(train))
        reference = workdir / f"split-{split}"
        reference.mkdir()
        pq.write_table(records_table([train[i] for i in order[batch_rows:]], "ner"), reference / "train.parquet")
        folder = workdir / f"capture-split-{split}"
        serve_and_capture([train[i] for i in order[:batch_rows]], folder)
        report = run_drift(drift_params(workdir, reference), folder, out_dir=reference)
        flagged.append(report["verdict"]["drifted"])
        print(f"split {split}: {'DRIFT' if flagged[-1] else 'no drift'}", flush=True)
    return {"splits": splits, "batch_rows": batch_rows, "false_alarms": int(sum(flagged)),
            "rate": f"{sum(flagged)}/{splits}"}


def finetune_with(workdir: Path, added: list[Sentence], name: str, eval_file: Path) -> tuple[float, float]:
    """Entity F1 on `eval_file` of the default recipe fine-tuned on WNUT-17 train plus `added`."""
    from benchmarks.drift_detection import pipeline_model
    from tasks.finetune import run_finetune
    from tasks.pretrain import run_pretrain
    from tinynlp import retraining

    run_dir = workdir / name
    run_dir.mkdir()
    raw = run_dir / "train.conll"
    raw.write_text((WNUT / "train.conll").read_text(encoding="utf-8").rstrip("\n") + "\n\n"
                   + conll_lines([(s.tokens, s.tags) for s in added]), encoding="utf-8")
    params = params_for(run_dir, {"paths": {"train": str(raw)}, "augment": {"enabled": False},
                                  "ingest": {"max_overlap": 1.0}})
    times: dict = {}
    with timed(times, "seconds"):
        prepare_data(params)
        run_pretrain(params)
        run_finetune(params)
    pipeline_model(Path(params.paths.model), run_dir / "served", modeling.available_cores())  # ONNX, as served
    sentences = read_conll(eval_file, "bio")
    split = {"tokens": [s.tokens for s in sentences], "tags": [s.tags for s in sentences]}
    scores = retraining.score_model_dir(run_dir / "served" / Path(params.paths.model).name, split,
                                        modeling.available_cores())
    return round(scores[scores["metric"]], 4), times["seconds"]


def pool_and_held(seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """Reddit + StackExchange test sentences split per seed: 60% served and captured, 40% to score."""
    shifted = [s for source in SHIFTED for s in read_conll(WNUT / f"by_source/test_{source}.conll", "bio")]
    order = np.random.default_rng(seed).permutation(len(shifted))
    cut = int(0.6 * len(shifted))
    return [shifted[i] for i in order[:cut]], [shifted[i] for i in order[cut:]]


def base_f1(workdir: Path, held: list[Sentence]) -> float:
    """Entity F1 on `held` of the model fine-tuned on WNUT-17 train alone (the repo's models/finetune
    from `dvc repro`: the same recipe, nothing added)."""
    from benchmarks.drift_detection import pipeline_model
    from tinynlp import retraining

    served = workdir / "base-served"
    if not served.is_dir():
        pipeline_model(ROOT / "models/finetune", served, modeling.available_cores())
    split = {"tokens": [s.tokens for s in held], "tags": [s.tags for s in held]}
    scores = retraining.score_model_dir(served / "finetune", split, modeling.available_cores())
    return round(scores[scores["metric"]], 4)


def part_c(workdir: Path, seeds: int, budget: int) -> list[dict]:
    from tinynlp.drift_check import run_drift

    rows = []
    for seed in range(seeds):
        pool, held = pool_and_held(seed)
        seed_dir = workdir / f"seed-{seed}"
        seed_dir.mkdir()
        eval_file = seed_dir / "eval.conll"
        eval_file.write_text(conll_lines([(s.tokens, s.tags) for s in held]), encoding="utf-8")
        folder = seed_dir / "capture"
        serve_and_capture(pool, folder)
        params = drift_params(seed_dir, queue_size=budget)
        params = params.model_copy(update={"drift": params.drift.model_copy(update={"seed": seed})})
        report = run_drift(params, folder, out_dir=seed_dir)
        if "labelling_queue" not in report:
            raise SystemExit(f"seed {seed}: the captured pool did not drift, so no labelling queue was written")
        captured = read_capture(folder, split_words)
        index = {origin: i for i, origin in enumerate(captured.origins)}   # served in pool order
        queued = [pool[index[tuple(_origin(r["origin"]))]] for r in report["labelling_queue"]["rows"]]
        random = [pool[i] for i in labelling.random_queue(captured.texts, len(queued), seed)]
        row = {"seed": seed, "pool": len(pool), "eval sentences": len(held), "labelled": len(queued),
               "base F1": base_f1(workdir, held)}
        for name, added in (("uncertainty", queued), ("random", random)):
            f1, seconds = finetune_with(seed_dir, added, name, eval_file)
            row[f"{name} F1"], row[f"{name} s"] = f1, seconds
            row[f"{name} entities"] = sum(t.startswith("B-") for s in added for t in s.tags)
        row["uncertainty - random"] = round(row["uncertainty F1"] - row["random F1"], 4)
        rows.append(row)
        print(markdown_table([row], list(row)), flush=True)
    return rows


def _origin(text: str) -> tuple[str, int]:
    path, line = text.rsplit(":", 1)
    return path, int(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--batch-rows", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=100, help="sentences labelled per strategy")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/traffic_loop.json"))
    args = parser.parse_args()
    configure_logging()
    if not (PROMOTED / "model.onnx").is_file():
        sys.exit(f"{PROMOTED}: no promoted model; run `dvc repro` first")
    out, result = Path(args.out), {"threads": modeling.set_threads(), "promoted": str(PROMOTED)}
    with tempfile.TemporaryDirectory(prefix="traffic-bench-") as workdir:
        workdir = Path(workdir)
        if "a" in args.parts:
            result["shifts"] = part_a(workdir)
            write_json(out, result)
            print(markdown_table(result["shifts"], list(result["shifts"][0])), flush=True)
        if "b" in args.parts:
            result["false_alarms"] = part_b(workdir, args.splits, args.batch_rows)
            write_json(out, result)
            print(f"false alarms: {result['false_alarms']['rate']} same-domain splits", flush=True)
        if "c" in args.parts:
            rows = part_c(workdir, args.seeds, args.budget)
            mean = lambda key: round(float(np.mean([r[key] for r in rows])), 4)
            result["labelling"] = {"rows": rows, "base_f1_mean": mean("base F1"), "uncertainty_f1_mean": mean("uncertainty F1"),
                                   "random_f1_mean": mean("random F1"), "difference_mean": mean("uncertainty - random")}
            write_json(out, result)
            print(markdown_table(rows, list(rows[0])))
            print(f"mean F1: uncertainty {result['labelling']['uncertainty_f1_mean']}, random "
                  f"{result['labelling']['random_f1_mean']}", flush=True)


if __name__ == "__main__":
    main()
