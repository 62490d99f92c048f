"""Differentially private fine-tuning (DP-SGD) with Opacus, as pieces the one training routine
plugs in: which parameters may train, Poisson-sampled batches (the sampling the accounting
assumes), the noise multiplier the RDP accountant gives for the planned steps, and what was spent.
Imports neither Prefect nor DVC."""
from __future__ import annotations

from dataclasses import dataclass

import torch


GUARANTEE_FILE = "privacy.json"  # in a model directory trained with DP-SGD
# ways of making a variant from the DP model that read no training data (post-processing keeps the
# guarantee); static INT8 calibrates on train examples, pruning and distillation train on them
DATA_FREE_METHODS = ("torch", "fp32-fused", "ort_dynamic", "inc_dynamic")


@dataclass(frozen=True)
class DpSettings:
    epsilon: float          # budget for the planned steps
    delta: float
    max_grad_norm: float    # per-example clipping bound


@dataclass(frozen=True)
class DpPlan:
    """What the accountant was asked for: these numbers, with the steps actually taken, give ε."""
    sample_rate: float
    planned_steps: int
    noise_multiplier: float


def freeze_for_private_training(model: torch.nn.Module, top_layers: int = 2) -> str:
    """Freezes the embeddings (Opacus computes no per-example gradients for Hugging Face position
    embeddings, opacus issue #841, and the word embeddings would cost a vocabulary-sized gradient
    per example) and every encoder layer below the top `top_layers` (0: only the output layer trains).
    Fewer trained parameters means less noise in all: DP-SGD's noise grows with their number.
    Returns what still trains, in words, for the log and the model card."""
    base = model.base_model
    for parameter in base.embeddings.parameters():
        parameter.requires_grad_(False)
    layers = list(base.encoder.layer)
    if top_layers > len(layers):
        raise ValueError(f"finetune.dp.top_layers is {top_layers} but the model has {len(layers)} encoder layers")
    for layer in layers[: len(layers) - top_layers]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
    first = len(layers) - top_layers
    if top_layers == 0:
        # the pooler (a 384x384 dense layer on [CLS] in BERT-like classifiers) would hold nearly all
        # the trained parameters, and the noise with them: frozen, the head is one linear layer
        pooler = getattr(base, "pooler", None)
        for parameter in pooler.parameters() if pooler is not None else ():
            parameter.requires_grad_(False)
        return f"the output layer only; embeddings, all {len(layers)} encoder layers and any pooler frozen"
    which = f"encoder layers {first}-{len(layers) - 1}" if top_layers > 1 else f"encoder layer {first}"
    return f"{which} of {len(layers)} and the head; embeddings frozen"


def check_delta(delta: float, examples: int) -> None:
    # δ is the chance the guarantee fails outright; at 1/n or more one example may leak whole
    if delta >= 1 / examples:
        raise ValueError(f"finetune.dp.delta {delta:g} must be below 1 / train examples (1/{examples} = "
                         f"{1 / examples:.2g})")


def plan(settings: DpSettings, examples: int, batch_size: int, epochs: int) -> DpPlan:
    """The noise multiplier that spends `settings.epsilon` over `epochs` of Poisson batches of
    expected size `batch_size` (the RDP accountant, as Opacus' make_private_with_epsilon)."""
    from opacus.accountants.utils import get_noise_multiplier

    check_delta(settings.delta, examples)
    sample_rate = min(1.0, batch_size / examples)
    steps = epochs * steps_per_epoch(sample_rate)
    sigma = get_noise_multiplier(target_epsilon=settings.epsilon, target_delta=settings.delta,
                                 sample_rate=sample_rate, steps=steps, accountant="rdp")
    return DpPlan(sample_rate, steps, float(sigma))


def steps_per_epoch(sample_rate: float) -> int:
    return max(1, int(1 / sample_rate))  # as Opacus' UniformWithReplacementSampler


def poisson_batches(examples: int, sample_rate: float, seed: int):
    """Each step's batch takes every example independently with probability `sample_rate`, so a
    batch's size varies and may be empty; the privacy amplification the accountant counts on."""
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    return UniformWithReplacementSampler(num_samples=examples, sample_rate=sample_rate,
                                         generator=torch.Generator().manual_seed(seed))


def spent_epsilon(dp_plan: DpPlan, steps_taken: int, delta: float) -> float:
    """ε after the steps actually taken (early stopping takes fewer than planned, so spends less)."""
    from opacus.accountants import RDPAccountant

    if steps_taken == 0:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [(dp_plan.noise_multiplier, dp_plan.sample_rate, steps_taken)]
    return float(accountant.get_epsilon(delta))


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over examples of each example's own mean loss (over its labelled tokens for NER): a
    sum of per-example terms, so each example's gradient is its own and clipping bounds it.
    (The default loss divides by the batch's token count, which couples the examples.)"""
    from torch.nn import functional as F

    if labels.dim() == 1:  # one label per example
        return F.cross_entropy(logits.float(), labels)
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100,
                             reduction="none").view(labels.shape)
    counted = (labels != -100).sum(dim=1).clamp(min=1)
    return (losses.sum(dim=1) / counted).mean()


def summary(settings: DpSettings, dp_plan: DpPlan, steps_taken: int) -> dict:
    return {"epsilon": round(spent_epsilon(dp_plan, steps_taken, settings.delta), 4),
            "epsilon_target": settings.epsilon, "delta": settings.delta, "max_grad_norm": settings.max_grad_norm,
            "noise_multiplier": round(dp_plan.noise_multiplier, 4), "sample_rate": round(dp_plan.sample_rate, 6),
            "steps": steps_taken, "planned_steps": dp_plan.planned_steps, "accountant": "rdp"}


def guarantee(model_dir) -> dict | None:
    """The DP guarantee a fine-tuned model directory carries, None if it was trained without DP."""
    import json
    from pathlib import Path

    path = Path(model_dir) / GUARANTEE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def loses_guarantee(source_stage: str, method: str) -> str | None:
    """Why a variant made from the DP-trained model is not private itself (None: it keeps ε)."""
    if source_stage != "finetune":
        return f"{source_stage} trained on the train split again without DP (finetune.dp.enabled)"
    if method not in DATA_FREE_METHODS:
        return f"{method} calibrates on train examples outside the DP accounting (finetune.dp.enabled)"
    return None
