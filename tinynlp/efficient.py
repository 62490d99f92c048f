"""Training variants that change what is trained, not the routine: parameter-efficient
fine-tuning (LoRA through `peft`, BitFit) and FGM adversarial training on the embeddings."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _head_names(model: torch.nn.Module) -> list[str]:
    return [name for name in ("classifier", "score") if hasattr(model, name)]


def apply_bitfit(model: torch.nn.Module) -> torch.nn.Module:
    """BitFit (Ben Zaken et al. 2022): train only bias terms, plus the new task head."""
    heads = tuple(f"{name}." for name in _head_names(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.endswith(".bias") or name.startswith(heads)
    return model


def apply_lora(model: torch.nn.Module, task: str, r: int, alpha: int, dropout: float, targets: list[str]):
    """LoRA adapters on the attention projections; the task head is trained in full."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.TOKEN_CLS if task == "ner" else TaskType.SEQ_CLS, r=r, lora_alpha=alpha,
                        lora_dropout=dropout, target_modules=list(targets), modules_to_save=_head_names(model))
    return get_peft_model(model, config)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """A plain transformers model for later stages: LoRA weights folded into the base matrices."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    for parameter in model.parameters():
        parameter.requires_grad = True
    return model


class FGM:
    """Fast Gradient Method (Miyato et al. 2017): after the normal backward pass, move the input
    embedding matrix by epsilon along its normalised gradient, add the adversarial loss's
    gradients, then put the embeddings back exactly."""

    def __init__(self, model: torch.nn.Module, epsilon: float):
        self.weight = model.get_input_embeddings().weight
        self.epsilon = epsilon
        self.backup: torch.Tensor | None = None

    def attack(self) -> bool:
        grad = self.weight.grad
        if grad is None:
            return False  # embeddings frozen (e.g. LoRA): nothing to perturb along
        norm = torch.linalg.vector_norm(grad)
        if not torch.isfinite(norm) or norm == 0:
            return False
        self.backup = self.weight.data.clone()
        self.weight.data.add_(self.epsilon * grad / norm)
        return True

    def restore(self) -> None:
        if self.backup is not None:
            self.weight.data.copy_(self.backup)
            self.backup = None
