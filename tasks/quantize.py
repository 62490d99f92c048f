"""Stage `quantize`: each chosen model (fine-tuned, distilled, structurally pruned) exported to ONNX,
checked against PyTorch, fused, then quantized to INT8 by every candidate config (ONNX Runtime
dynamic / static, per-channel / per-tensor, and dynamic with the `fp32_fallback` weight nodes whose
INT8 error moves the outputs most kept float). Accuracy-aware: the fastest candidate within
`max_dev_drop` of the fp32 graph's dev metric is kept, where latencies within the measured timing
noise are a tie that the candidate closest to the fp32 graph's outputs wins (`tinynlp.gate.pick_fastest`).
Intel Neural Compressor variants are built alongside for the side-by-side comparison in `evaluate`."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from statistics import median
from typing import Sequence

import numpy as np

from tinynlp import gate, modeling, quantization
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params
from tinynlp.heads import head_for
from tinynlp.inference import measure_speeds, pad_batch, predict_logits
from tinynlp.model_dir import is_model_dir, load_model, load_spec, variant_dirs
from tinynlp.splits import read_split

log = logging.getLogger(__name__)
SELECTION_LATENCY_SAMPLES = 60   # enough to rank candidates; evaluate times the kept ones properly
SELECTION_REPEATS = 5            # interleaved, paired timing passes: their spread is the tie-break's noise band


class Selection:
    """Scoring on one split (dev for the stage's pick) and quick timing of candidate graphs, shared by
    every source."""

    def __init__(self, params: Params, tokenizer, threads: int, split: str = "dev"):
        spec = load_spec(params.paths.model)
        self.head, self.spec, self.threads = head_for(spec.task), spec, threads
        self.pad_id, self.batch_size = tokenizer.pad_token_id, params.evaluate.batch_size
        self.rows = read_split(params.paths.ingested, split)
        self.encoded = self.head.encode(tokenizer, self.rows, spec)
        self.features = self.head.features(self.encoded)

    def score(self, runner, reference: list | None = None) -> tuple[float, list, float | None]:
        """The split's metric, the logits, and their divergence from `reference` logits when given."""
        logits = predict_logits(runner, self.features, self.batch_size, self.pad_id)
        score = float(self.head.score(self.encoded, logits, self.rows, self.spec)[self.head.metric])
        return score, logits, None if reference is None else quantization.output_divergence(reference, logits)

    def latencies(self, runners: dict) -> dict[str, list[float]]:
        """Each runner's p50 in SELECTION_REPEATS passes, the runners taking turns within each pass, so
        a slow spell of the machine hits them alike and the spread of one runner's p50s is the noise."""
        runs: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(SELECTION_REPEATS if runners else 0):
            speeds = measure_speeds(runners, self.features, self.pad_id, SELECTION_LATENCY_SAMPLES, 10, 8, rounds=3)
            for name, speed in speeds.items():
                runs[name].append(round(speed.latency_ms_p50, 4))
        return runs


def calibration_batches(params: Params, tokenizer, batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """Training examples spread over the split (seeded), padded into small batches."""
    spec = load_spec(params.paths.model)
    head = head_for(spec.task)
    features = head.features(head.encode(tokenizer, read_split(params.paths.ingested, "train"), spec))
    rng = np.random.default_rng(params.finetune.seed)
    chosen = rng.choice(len(features), size=min(params.quantize.calibration_samples, len(features)), replace=False)
    sample = [features[i] for i in sorted(chosen)]
    batches = [pad_batch(sample[i:i + batch_size], tokenizer.pad_token_id) for i in range(0, len(sample), batch_size)]
    return [dict(zip(quantization.FEED_ORDER, arrays)) for arrays in batches]


def candidate_name(method: str, per_channel: bool, fp32_nodes: Sequence[str] = ()) -> str:
    return f"{method}-{'per_channel' if per_channel else 'per_tensor'}" + (f"-fp32x{len(fp32_nodes)}" if fp32_nodes else "")


def _candidates(params: Params, graph: Path, unfused: Path, directory: Path, calibration: list[dict],
                fp32_nodes: Sequence[str]) -> list[dict]:
    """Dynamic INT8 from the fused graph (ORT quantizes its fused Attention); static QDQ from the
    unfused one, since the QDQ quantizer skips fused nodes and leaves them fp32 (a 3x larger file).
    With `fp32_nodes`, dynamic is also tried with those nodes left float."""
    cfg = params.quantize
    made = []
    for method in (m for m in cfg.methods if m.startswith("ort_")):
        for per_channel in cfg.per_channel:
            for kept_float in ([(), fp32_nodes] if method == "ort_dynamic" and fp32_nodes else [()]):
                target = directory / f"{candidate_name(method, per_channel, kept_float)}.onnx"
                if method == "ort_dynamic":
                    quantization.quantize_dynamic_onnx(graph, target, per_channel=per_channel, fp32_nodes=kept_float)
                else:
                    quantization.quantize_static_onnx(unfused, target, calibration, per_channel=per_channel)
                made.append({"method": method, "per_channel": per_channel, "fp32_nodes": list(kept_float),
                             "file": target})
    return made


def sensitive_nodes(name: str, graph: Path, params: Params, calibration: list[dict], threads: int) -> dict:
    """The `fp32_fallback` weight nodes whose INT8 error moves the outputs on the calibration texts most
    (leave-one-out, per-tensor weights: the coarser scales show the damage), with the whole ranking."""
    cfg = params.quantize
    if not cfg.fp32_fallback or "ort_dynamic" not in cfg.methods:
        return {"fp32_nodes": []}
    full, ranking = quantization.rank_sensitivity(graph, calibration, per_channel=False, threads=threads)
    chosen = [node for node, _ in ranking[: cfg.fp32_fallback]]
    log.info("quantize %s: output divergence of dynamic INT8 %.5f; leaving %s float: %s", name, full,
             ", ".join(chosen), ", ".join(f"{d:.5f}" for _, d in ranking[: cfg.fp32_fallback]))
    return {"full_int8_divergence": round(full, 6), "fp32_nodes": chosen,
            "ranking": [{"node": node, "divergence_with_it_float": round(d, 6)} for node, d in ranking]}


def float_graphs(model, directory: Path, params: Params, calibration: list[dict]) -> tuple[Path, Path, float]:
    """The model exported to ONNX, and the graph the INT8 candidates start from (fused when
    `quantize.fuse`), each checked against PyTorch's outputs; with the export's largest difference."""
    cfg = params.quantize
    exported = quantization.export_onnx(model, directory / "fp32.onnx", cfg.opset)
    difference = quantization.check_matches(model, exported, calibration[:4], cfg.export_tolerance)
    if not cfg.fuse:
        return exported, exported, difference
    graph = directory / "fp32-fused.onnx"
    fused = quantization.optimize_onnx(exported, graph, *quantization.fusion_geometry(model))
    log.info("quantize %s: fused operators %s", directory.name, fused or "none")
    quantization.check_matches(model, graph, calibration[:4], cfg.export_tolerance)
    return exported, graph, difference


def scored_candidates(name: str, graph: Path, unfused: Path, directory: Path, params: Params, selection: Selection,
                      calibration: list[dict]) -> tuple[float, list[dict], dict, dict]:
    """The float graph's dev metric, every INT8 candidate built in `directory` with its dev metric and
    divergence from the float graph's outputs, the sensitivity ranking that chose its float nodes, and
    an open runner per candidate (by name)."""
    reference_score, reference_logits, _ = selection.score(quantization.OnnxRunner(graph, selection.threads))
    sensitivity = sensitive_nodes(name, graph, params, calibration, selection.threads)
    tried, runners = [], {}
    for candidate in _candidates(params, graph, unfused, directory, calibration, sensitivity["fp32_nodes"]):
        named = candidate_name(candidate["method"], candidate["per_channel"], candidate["fp32_nodes"])
        runners[named] = quantization.OnnxRunner(candidate["file"], selection.threads)
        score, _, divergence = selection.score(runners[named], reference_logits)
        tried.append({"source": name, "name": named,
                      "method": candidate["method"], "per_channel": candidate["per_channel"],
                      "fp32_nodes": candidate["fp32_nodes"], "dev_score": round(score, 4),
                      "dev_drop": round(reference_score - score, 4), "dev_divergence": round(divergence, 6),
                      "file": candidate["file"]})
    return reference_score, tried, sensitivity, runners


def quantize_source(name: str, model_dir: Path, params: Params, selection: Selection, calibration: list[dict],
                    staging: Path) -> tuple[list[dict], list[dict], dict]:
    """The variants kept for one source model, every candidate tried and the sensitivity ranking (reports)."""
    cfg = params.quantize
    model, _ = load_model(model_dir)
    directory = staging / name
    directory.mkdir(parents=True)
    exported, graph, difference = float_graphs(model, directory, params, calibration)
    reference_score, tried, sensitivity, runners = scored_candidates(name, graph, exported, directory, params,
                                                                     selection, calibration)
    runs = selection.latencies(runners)
    for t in tried:
        t["latency_ms_p50"], t["latency_ms_p50_runs"] = round(median(runs[t["name"]]), 4), runs[t["name"]]
        log.info("quantize %s %s: dev %.4f (fp32 %.4f), divergence from fp32 %.5f, p50 %.2f ms (runs %s)", name,
                 t["name"], t["dev_score"], reference_score, t["dev_divergence"], t["latency_ms_p50"], runs[t["name"]])
    parameters = modeling.parameter_count(model)
    kept = [{"name": f"{name}_onnx", "kind": "onnx", "file": f"{name}/{graph.name}", "source": name,
             "method": "fp32" + ("-fused" if cfg.fuse else ""), "parameters": parameters,
             "export_max_abs_difference": difference}] if name == "finetune" else []
    if tried:
        best, how = gate.pick_fastest(tried, cfg.max_dev_drop, runs)
        if "tied" not in how:
            log.warning("quantize %s: no INT8 candidate within %.3f of the fp32 dev metric; keeping the most "
                        "accurate (%s) for the gate to judge", name, cfg.max_dev_drop, best["name"])
        else:
            log.info("quantize %s: kept %s; noise band %.1f%%, tied: %s", name, best["name"],
                     100 * how["noise_band"], ", ".join(how["tied"]))
        shutil.copyfile(best["file"], directory / "int8.onnx")
        kept.append({"name": f"{name}_int8", "kind": "onnx", "file": f"{name}/int8.onnx", "source": name,
                     "method": best["method"], "per_channel": best["per_channel"], "fp32_nodes": best["fp32_nodes"],
                     "parameters": parameters})
        for t in tried:
            t["kept"] = t is best
        best["pick"] = how
    for t in tried:
        t["file"] = Path(t["file"]).name
    kept_files = {Path(v["file"]).name for v in kept}
    for path in directory.iterdir():  # candidates not kept, intermediate graphs, calibration leftovers
        if path.name not in kept_files:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return kept, tried, sensitivity


def inc_variant(name: str, model_dir: Path, params: Params, calibration: list[dict], staging: Path) -> dict:
    model, _ = load_model(model_dir)
    runner = quantization.inc_quantize(model, calibration, params.quantize.inc_method)
    quantization.save_inc(runner, staging / f"{name}_inc")
    return {"name": f"{name}_inc", "kind": "inc", "file": f"{name}_inc", "source": name,
            "method": f"inc_{params.quantize.inc_method}", "parameters": modeling.parameter_count(model)}


def run_quantize(params: Params) -> dict:
    cfg, paths = params.quantize, params.paths
    threads = modeling.set_threads(params.evaluate.threads)
    tokenizer = modeling.load_tokenizer(paths.model)
    selection = Selection(params, tokenizer, threads)
    calibration = calibration_batches(params, tokenizer)
    available = {n: d for n, d in variant_dirs(params.paths).items() if is_model_dir(d)}
    variants, tried, sensitivity = [], [], {}
    with atomic_dir(paths.quantized) as staging:
        for name in cfg.sources:
            if name not in available:
                log.info("quantize: %s has no model (stage disabled?); skipped", name)
                continue
            kept, candidates, sensitivity[name] = quantize_source(name, available[name], params, selection,
                                                                  calibration, staging)
            variants += kept
            tried += candidates
        for name in cfg.inc_sources:
            if name in available:
                variants.append(inc_variant(name, available[name], params, calibration, staging))
        atomic_write_json(staging / "variants.json", variants)
    reports = Path(paths.reports) / "quantize"
    atomic_write_json(reports / "candidates.json", tried)
    atomic_write_json(reports / "sensitivity.json", sensitivity)
    metrics = {t["source"]: {"method": t["method"], "per_channel": t["per_channel"], "fp32_nodes": len(t["fp32_nodes"]),
                             "dev_drop": t["dev_drop"], "dev_divergence": t["dev_divergence"],
                             "latency_ms_p50": t["latency_ms_p50"], "noise_band": t["pick"].get("noise_band"),
                             "tied": t["pick"].get("tied", [])} for t in tried if t.get("kept")}
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("quantize: kept %s", ", ".join(v["name"] for v in variants))
    return metrics
