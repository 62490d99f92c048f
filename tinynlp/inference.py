"""Running any model variant the same way: a runner maps (input_ids, attention_mask[,
token_type_ids]) numpy arrays to logits, whether it wraps PyTorch, ONNX Runtime or a compiled INC model. Predictions, latency
and throughput are measured through that one interface so variants compare fairly."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

# (input_ids, attention_mask) or, for a model with word shapes, (input_ids, attention_mask, token_type_ids)
Runner = Callable[..., np.ndarray]
INPUT_NAMES = ("input_ids", "attention_mask")
SHAPE_INPUT = "token_type_ids"  # word shapes (finetune.casing: shape)
FEED_ORDER = (*INPUT_NAMES, SHAPE_INPUT)  # runners' and forward()'s positional order


def torch_logits(model: torch.nn.Module, *arrays: np.ndarray) -> np.ndarray:
    """A PyTorch model's logits for (input_ids, attention_mask[, token_type_ids]) numpy arrays."""
    with torch.inference_mode():
        out = model(**{name: torch.as_tensor(np.asarray(array, dtype=np.int64))
                       for name, array in zip(FEED_ORDER, arrays)})
    return out.logits.float().numpy()


class TorchRunner:
    """A PyTorch model as a runner (eval mode, no autograd)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        return torch_logits(self.model, *arrays)


def pad_batch(features: Sequence[dict], pad_id: int) -> tuple[np.ndarray, ...]:
    """Right-padded int64 input_ids and attention_mask for a list of features, and token_type_ids
    (padded with 0) when the features carry them."""
    length = max(len(f["input_ids"]) for f in features)
    ids = np.full((len(features), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(features), length), dtype=np.int64)
    types = np.zeros((len(features), length), dtype=np.int64) if "token_type_ids" in features[0] else None
    for row, feature in enumerate(features):
        ids[row, : len(feature["input_ids"])] = feature["input_ids"]
        mask[row, : len(feature["input_ids"])] = 1
        if types is not None:
            types[row, : len(feature["input_ids"])] = feature["token_type_ids"]
    return (ids, mask) if types is None else (ids, mask, types)


def predict_logits(runner: Runner, features: Sequence[dict], batch_size: int, pad_id: int) -> list[np.ndarray]:
    """Logits per example (per window for NER), unpadded. Batches are formed by length so little
    compute goes to padding; results come back in input order."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out: list[np.ndarray | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        logits = runner(*pad_batch([features[i] for i in chunk], pad_id))
        for row, index in enumerate(chunk):
            out[index] = logits[row, : len(features[index]["input_ids"])] if logits.ndim == 3 else logits[row]
    return out


@dataclass(frozen=True)
class Speed:
    latency_ms_p50: float      # batch 1, per call
    latency_ms_p95: float
    throughput_per_s: float    # examples per second at the throughput batch size


def measure_speed(runner: Runner, features: Sequence[dict], pad_id: int, samples: int, warmup: int,
                  throughput_batch: int) -> Speed:
    """One runner's speed (see `measure_speeds`)."""
    return measure_speeds({"only": runner}, features, pad_id, samples, warmup, throughput_batch)["only"]


def measure_speeds(runners: dict[str, Runner], features: Sequence[dict], pad_id: int, samples: int, warmup: int,
                   throughput_batch: int, rounds: int = 1, turn_warmup: int = 0) -> dict[str, Speed]:
    """Batch-1 latency over the first `samples` examples (warm-up calls untimed), and throughput over
    the same examples in full batches in their given order, padding included, as a server would see
    them. With several runners the work is cut into `rounds` chunks and the runners take turns on each
    chunk (the order rotating), so a slow spell of a shared machine hits every runner alike and the
    ratios between them hold. A turn starts with `turn_warmup` untimed calls: the calls just after
    another runtime has run are slower for a while (its threads still hold the cores, its weights
    the caches), which a deployed model, alone on its machine, never pays."""
    chosen = [features[i % len(features)] for i in range(samples)]
    batched = chosen[: max(throughput_batch, len(chosen) // throughput_batch * throughput_batch)]
    batches = [pad_batch(batched[i:i + throughput_batch], pad_id) for i in range(0, len(batched), throughput_batch)]
    singles = [pad_batch([feature], pad_id) for feature in chosen]
    names = list(runners)
    for runner in runners.values():
        for arrays in singles[:warmup]:
            runner(*arrays)
        runner(*batches[0])  # warm-up at the batch shape
    timings: dict[str, list[float]] = {name: [] for name in names}
    elapsed = dict.fromkeys(names, 0.0)
    rounds = max(1, min(rounds, len(singles)))
    for turn in range(rounds):
        order = names[turn % len(names):] + names[: turn % len(names)]
        for name in order:
            runner = runners[name]
            for arrays in singles[turn::rounds][:turn_warmup]:
                runner(*arrays)
            for arrays in singles[turn::rounds]:
                started = time.perf_counter()
                runner(*arrays)
                timings[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            for arrays in batches[turn::rounds]:
                runner(*arrays)
            elapsed[name] += time.perf_counter() - started
    speeds = {}
    for name in names:
        milliseconds = np.asarray(timings[name]) * 1000
        speeds[name] = Speed(round(float(np.percentile(milliseconds, 50)), 3),
                             round(float(np.percentile(milliseconds, 95)), 3), round(len(batched) / elapsed[name], 1))
    return speeds
