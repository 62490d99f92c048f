"""Stage `evaluate`: every model variant (fp32 fine-tuned, pruned, distilled, each INT8 flavour) scored
on the same dev and test splits in one run, with batch-1 latency p50/p95, batch throughput, size
and parameter count at one thread count; the gate promotes the best variant within budget to
`paths.promoted` (ONNX + tokenizer + pipeline.json + model card)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinynlp import (error_analysis, error_report, figures, gate, lineage, model_card, modeling, ner, privacy,
                     progress, quantization)
from tinynlp.atomic import atomic_write_json, atomic_write_text
from tinynlp.config import Params
from tinynlp.errors import ConfigError
from tinynlp.fingerprints import validated_data_version
from tinynlp.heads import head_for
from tinynlp.inference import SHAPE_INPUT, Speed, TorchRunner, measure_speeds, predict_logits
from tinynlp.ingestion import pii_masker
from tinynlp.reporting import markdown_table, metrics_table
from tinynlp.model_dir import is_model_dir, load_model, load_spec, read_meta, variant_dirs
from tinynlp.promotion import promote
from tinynlp.splits import read_split

log = logging.getLogger(__name__)
REFERENCE = "finetune"   # the fp32 fine-tuned model every variant is compared with
_WHERE = {"ner": "by entity type, length, seen in train, casing, sentence length",
          "classification": "by label, text length, calibration"}


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str                      # torch | onnx | inc
    location: Path                 # model directory (torch, inc) or .onnx file
    source: Path                   # the PyTorch model directory it was made from
    parameters: int
    size_mb: float
    load: Callable                 # (threads, for_timing) -> runner
    method: str = "torch"          # how it was made from `source` (quantize's method names)


def torch_variants(params: Params) -> list[Variant]:
    """The PyTorch models the training stages wrote (disabled stages write none)."""
    variants = []
    for name, directory in variant_dirs(params.paths).items():
        if not is_model_dir(directory):
            continue
        model, _ = load_model(directory)
        size = sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 2 ** 20
        variants.append(Variant(name, "torch", directory, directory, modeling.parameter_count(model), round(size, 2),
                                lambda threads, for_timing, model=model: TorchRunner(model)))
    return variants


def quantized_variants(params: Params) -> list[Variant]:
    """The ONNX and INC variants listed by the quantize stage."""
    index = Path(params.paths.quantized) / "variants.json"
    if not index.is_file():
        return []
    variants, sources = [], variant_dirs(params.paths)
    for entry in json.loads(index.read_text(encoding="utf-8")):
        location = Path(params.paths.quantized) / entry["file"]
        if entry["kind"] == "onnx":
            load = lambda threads, for_timing, location=location: quantization.OnnxRunner(location, threads)
        else:  # compiling costs seconds per input shape: only the timed runner pays it (same INT8 program)
            load = lambda threads, for_timing, location=location: quantization.load_inc(location, threads,
                                                                                       compile=for_timing)
        variants.append(Variant(entry["name"], entry["kind"], location, sources[entry["source"]], entry["parameters"],
                                round(quantization.file_size_mb(location), 2), load, entry["method"]))
    return variants


def score_variant(variant: Variant, spec, encoded: dict, splits: dict, params: Params, threads: int,
                  pad_id: int) -> dict:
    """Quality on every split; speed is measured for all variants together (`time_variants`)."""
    head = head_for(spec.task)
    runner = variant.load(threads, False)
    scores, logits = {}, {}
    for split_name, split in splits.items():
        logits[split_name] = predict_logits(runner, head.features(encoded[split_name]), params.evaluate.batch_size,
                                            pad_id)
        scores[split_name] = head.score(encoded[split_name], logits[split_name], split, spec)
    row = {"name": variant.name, "kind": variant.kind, "test_score": round(scores["test"][head.metric], 4),
           "dev_score": round(scores["dev"][head.metric], 4), "size_mb": variant.size_mb,
           "parameters": variant.parameters, "promotable": variant.kind != "inc"}
    if variant.kind == "inc":
        row["not_promotable_because"] = "an INC-compiled PyTorch program has no ONNX form to serve"
    log.info("evaluate %s: test %s %.4f, %.1f MB", variant.name, head.metric, row["test_score"], variant.size_mb)
    return {"row": row, "scores": scores, "logits": logits}


def score_without_shapes(runner, spec, encoded, split, batch_size: int, pad_id: int) -> float:
    """A word-shape model's metric when fed token types 0, as a plain transformers or Optimum
    pipeline feeds it (its tokenizer's token types)."""
    head = head_for(spec.task)
    plain = [{k: v for k, v in f.items() if k != SHAPE_INPUT} for f in head.features(encoded)]
    logits = predict_logits(runner, plain, batch_size, pad_id)
    return round(float(head.score(encoded, logits, split, spec)[head.metric]), 4)


def timing_runners(variants: dict[str, Variant], timed: list[dict], params: Params, threads: int) -> dict:
    """Each variant's runner as it is timed (compiled programs with every timed shape built)."""
    cfg = params.evaluate
    runners = {}
    for name, variant in variants.items():
        runner = variant.load(threads, True)
        if hasattr(runner, "warm_up"):  # compiled programs: build every timed shape before the clock starts
            runner.warm_up([len(f["input_ids"]) for f in timed[: cfg.latency_samples]], (1, cfg.throughput_batch))
        runners[name] = runner
    return runners


def time_variants(variants: dict[str, Variant], timed: list[dict], params: Params, threads: int,
                  pad_id: int) -> dict[str, Speed]:
    """Every variant timed on the same test windows at the same thread count, taking turns
    (`evaluate.timing_rounds`, each turn warmed by `evaluate.turn_warmup` untimed calls), so the
    speed-ups compare like with like."""
    cfg = params.evaluate
    speeds = measure_speeds(timing_runners(variants, timed, params, threads), timed, pad_id, cfg.latency_samples,
                            cfg.warmup, cfg.throughput_batch, cfg.timing_rounds, cfg.turn_warmup)
    for name, speed in speeds.items():
        log.info("evaluate %s: p50 %.2f ms, p95 %.2f ms, %.0f/s at batch %d", name, speed.latency_ms_p50,
                 speed.latency_ms_p95, speed.throughput_per_s, cfg.throughput_batch)
    return speeds


def run_evaluate(params: Params) -> dict:
    paths, cfg = params.paths, params.evaluate
    threads = modeling.set_threads(cfg.threads)
    spec = load_spec(paths.model)
    head = head_for(spec.task)
    tokenizer = modeling.load_tokenizer(paths.model)
    splits = {name: read_split(paths.ingested, name) for name in ("dev", "test")}
    encoded = {name: head.encode(tokenizer, split, spec) for name, split in splits.items()}
    variants = {v.name: v for v in torch_variants(params) + quantized_variants(params)}
    results = {name: score_variant(variants[name], spec, encoded, splits, params, threads, tokenizer.pad_token_id)
               for name in progress.track(list(variants), "evaluate: variants scored")}
    speeds = time_variants(variants, head.features(encoded["test"]), params, threads, tokenizer.pad_token_id)
    for name, result in results.items():
        result["row"].update(vars(speeds[name]))
    rows = [r["row"] for r in results.values()]
    _only_private_variants_promotable(params, variants, results)
    reference_row = results[REFERENCE]["row"]
    for row in rows:  # ratios against the fp32 fine-tuned model, measured in this same run
        row["speedup"] = round(reference_row["latency_ms_p50"] / row["latency_ms_p50"], 2)
        row["smaller"] = round(reference_row["size_mb"] / row["size_mb"], 2)
    budget = gate.Budget(cfg.gate.max_drop, cfg.gate.latency_budget_ms, cfg.gate.size_budget_mb, cfg.gate.objective)
    chosen, decisions = gate.choose(rows, REFERENCE, f"{cfg.gate.split}_score", budget)
    reference = results[REFERENCE]["scores"]
    train = read_split(paths.ingested, "train")
    shown = pii_masker(params.ingest.pii)   # example texts in reports: personal data masked
    analysis, shipped = error_report.summarise(spec, splits, encoded, {n: r["logits"] for n, r in results.items()},
                                               train, REFERENCE, chosen or REFERENCE, cfg, shown)
    verdicts = _gate_column(rows, decisions, chosen)
    without_shapes = None
    if chosen and spec.casing == "shape":
        from transformers import AutoConfig

        without_shapes = {"test_score": score_without_shapes(variants[chosen].load(threads, False), spec,
                                                             encoded["test"], splits["test"], cfg.batch_size,
                                                             tokenizer.pad_token_id),
                          "shape_dropout": ner.shape_dropout_of(AutoConfig.from_pretrained(paths.model))}
        log.info("evaluate %s fed token types 0 (a plain pipeline): test %s %.4f against %.4f with its shapes",
                 chosen, head.metric, without_shapes["test_score"], results[chosen]["row"]["test_score"])
    if chosen:
        card = _card_inputs(params, variants[chosen], verdicts, analysis, spec, train, splits, without_shapes)
        promote(params, variants[chosen], results[chosen]["row"], tokenizer, spec, card,
                {"chosen": chosen, "decisions": [vars(d) for d in decisions], "budget": vars(budget)})
    else:
        log.warning("evaluate: %s", _kept_note(paths.promoted))
    _write_error_analysis(params, analysis, shipped)
    _write_explanations(params, variants[chosen or REFERENCE].source, splits["dev"], spec, shown)
    return _report(params, head.metric, rows, decisions, verdicts, chosen, {"task": spec.task, **reference}, threads,
                   without_shapes)


def _only_private_variants_promotable(params: Params, variants: dict[str, Variant], results: dict) -> None:
    """With DP fine-tuning, a variant that read training data again (pruning recovery, distillation,
    static calibration) is not private: the gate must not ship it."""
    if not privacy.guarantee(params.paths.model):
        return
    stages = {Path(directory): name for name, directory in variant_dirs(params.paths).items()}
    for name, result in results.items():
        why = privacy.loses_guarantee(stages[Path(variants[name].source)], variants[name].method)
        if why and result["row"]["promotable"]:
            result["row"].update(promotable=False, not_promotable_because=why)


def _gate_column(rows: list[dict], decisions, chosen: str | None) -> list[dict]:
    """Every row with the gate's verdict in words."""
    decided = {d.name: d for d in decisions}
    return [{**row, "gate": "promoted" if row["name"] == chosen else
             ("pass" if decided[row["name"]].passed else "; ".join(decided[row["name"]].reasons))} for row in rows]


def _card_inputs(params: Params, variant: Variant, rows: list[dict], analysis: dict, spec, train: dict,
                 splits: dict, without_shapes: dict | None = None) -> model_card.CardInputs:
    state = lineage.code_state(ignore=[params.paths.reports])
    source_stage = next(n for n, d in variant_dirs(params.paths).items() if Path(d) == Path(variant.source))
    chain = ["ingest", "pretrain", "finetune", *([source_stage.split("_")[0]] if source_stage != REFERENCE else []),
             *(["quantize"] if variant.kind != "torch" else [])]
    recorded = lineage.locked_params()
    return model_card.CardInputs(
        variant=variant.name, task=spec.task, labels=spec.labels, rows=rows, analysis=analysis,
        train_labels=list(train["tags" if spec.task == "ner" else "label"]),
        sizes={"train": len(train["tags" if spec.task == "ner" else "label"]),
               **{name: len(split["tags" if spec.task == "ner" else "label"]) for name, split in splits.items()}},
        data_version=validated_data_version(params.paths.ingested),
        data_source=params.paths.raw_splits(), procedure=[(stage, recorded.get(stage, {})) for stage in chain],
        drift=params.drift.model_dump(), code=lineage.describe_code(state), commit=state["commit"],
        privacy=privacy.guarantee(params.paths.model), pii_mode=params.ingest.pii.mode, casing=spec.casing,
        without_shapes=without_shapes)


def _write_error_analysis(params: Params, analysis: dict, shipped: dict) -> None:
    """JSON for machines, markdown for people, the shipped model's confusion and calibration for
    `dvc plots` (rows) and as pictures."""
    reports = Path(params.paths.reports) / "evaluate"
    atomic_write_json(reports / "error_analysis.json", analysis)
    atomic_write_text(reports / "error_analysis.md", error_report.markdown(analysis))
    atomic_write_text(reports / "worst_examples.md", error_report.worst_markdown(analysis))
    atomic_write_json(reports / "confusion.json", shipped["confusion"])
    atomic_write_json(reports / "calibration.json", shipped["calibration"]["bins"])
    what = "entity type, overlapping spans" if analysis["task"] == "ner" else "label"
    figures.confusion_png(error_analysis.confusion_counts(shipped["confusion"]), reports / "confusion.png",
                          f"{analysis['shipped']} on test: gold against predicted {what}")
    figures.reliability_png(shipped["calibration"]["bins"], shipped["calibration"]["ece"], reports / "calibration.png",
                            f"{analysis['shipped']} on test, per {shipped['calibration']['unit']}")


def _write_explanations(params: Params, source: Path, dev: dict, spec, shown) -> None:
    """Integrated-gradients explanations of the first `evaluate.explain_examples` dev examples that fit
    one window (NER: those with a gold entity) and hold no personal data that `shown` would mask, from
    the PyTorch model behind the shipped variant."""
    from tinynlp.explain import Explainer, as_page, as_terminal

    reports = Path(params.paths.reports) / "evaluate"
    count = params.evaluate.explain_examples
    if spec.task == "ner":
        candidates = [" ".join(words) for words, tags in zip(dev["tokens"], dev["tags"]) if any(t != "O" for t in tags)]
    else:
        candidates = list(dev["text"])
    explainer, explained = (Explainer(source) if count else None), []
    for text in candidates:
        if len(explained) == count:
            break
        if shown(text) != text:  # explaining a masked text would explain another input
            continue
        try:
            explained.append((text, explainer.explain(text)))
        except ConfigError:  # longer than one window: integrated gradients need the whole text at once
            continue
    body = "\n\n".join(as_terminal(text, explanations) for text, explanations in explained)
    atomic_write_text(reports / "explanations.md",
                      f"# Explanations of {len(explained)} dev examples\n\nLayer integrated gradients on the input "
                      f"embeddings of `{source}`; the five words with the largest attributions, signed; delta is "
                      "the convergence delta. The same as a page: explanations.html.\n\n```\n" + body + "\n```\n")
    atomic_write_text(reports / "explanations.html", as_page(explained))


def _kept_note(promoted: str) -> str:
    """What a run that promotes nothing leaves in `paths.promoted`, said in the log and the report."""
    if not is_model_dir(promoted):
        return f"no variant passed the gate; nothing has been promoted to {promoted} yet"
    return (f"no variant passed the gate; {promoted} keeps the last promoted model "
            f"({read_meta(promoted).get('variant', 'unknown variant')})")


def _report(params: Params, metric: str, rows: list[dict], decisions, table_rows: list[dict], chosen: str | None,
            reference: dict, threads: int, without_shapes: dict | None = None) -> dict:
    reports = Path(params.paths.reports) / "evaluate"
    by_name = {row["name"]: row for row in rows}
    head = head_for(reference["task"])
    metrics = {f"test_{metric}": reference["test"][metric], f"dev_{metric}": reference["dev"][metric],
               "test": head.summary(reference["test"]), "dev": head.summary(reference["dev"]),
               "promoted": chosen or "none", "threads": threads,
               "variants": {r["name"]: {k: r[k] for k in ("test_score", "latency_ms_p50", "speedup", "size_mb")}
                            for r in rows}}
    if chosen:
        metrics["promoted_speedup"] = round(by_name[REFERENCE]["latency_ms_p50"] / by_name[chosen]["latency_ms_p50"], 2)
    if without_shapes:  # what a plain pipeline, feeding token types 0, gets from the promoted model
        metrics["promoted_test_score_types_0"] = without_shapes["test_score"]
    variants_table = markdown_table(table_rows, ["name", "kind", "test_score", "dev_score", "latency_ms_p50",
                                                 "latency_ms_p95", "speedup", "throughput_per_s", "size_mb",
                                                 "smaller", "parameters", "gate"])
    detail = metrics_table(reference)
    atomic_write_json(reports / "scores.json", {**reference, "variants": rows,
                                                "gate": [vars(d) for d in decisions], "promoted": chosen})
    plotted = ("name", "kind", "test_score", "dev_score", "latency_ms_p50", "latency_ms_p95", "speedup",
               "throughput_per_s", "size_mb", "smaller", "parameters")
    atomic_write_json(reports / "variants.json", [{k: row[k] for k in plotted} for row in rows])  # uniform rows: dvc plots needs them
    atomic_write_json(reports / "metrics.json", metrics)
    text = (f"## Variants ({metric}; batch-1 latency, throughput at batch {params.evaluate.throughput_batch}, "
            f"{threads} threads)\n\n{variants_table}\n\nPromoted: **{chosen or 'none'}**"
            f"{'' if chosen else ': ' + _kept_note(params.paths.promoted)}. What each variant lost against "
            f"{REFERENCE}, and where ({_WHERE[reference['task']]}): [error_analysis.md](error_analysis.md); "
            "the worst examples: [worst_examples.md](worst_examples.md).\n\n"
            f"## {REFERENCE} (fp32) in detail\n\n{detail}\n")
    atomic_write_text(reports / "metrics.md", text)
    log.info("evaluate: promoted %s\n%s\n%s", chosen or "nothing", variants_table, detail)
    return metrics
