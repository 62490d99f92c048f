"""Pruning for BERT-style encoders: global magnitude sparsity (masks, then plain zeros) and
structured removal of attention heads and FFN neurons that physically shrinks the matrices."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

IMPORTANCE_METHODS = ("gradient", "magnitude")


# --- unstructured: global magnitude pruning -------------------------------------------------

def _layers(model: nn.Module) -> nn.ModuleList:
    return model.base_model.encoder.layer


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The encoder's Linear layers (attention q/k/v/output, intermediate, output) with full names;
    embeddings, pooler and the task head are left dense."""
    prefix = f"{model.base_model_prefix}.encoder." if model.base_model is not model else "encoder."
    return [(prefix + name, module) for name, module in model.base_model.encoder.named_modules()
            if isinstance(module, nn.Linear)]


def sparsity_schedule(target: float, steps: int) -> list[float]:
    """Cubic gradual schedule (Zhu & Gupta 2017) from 0: prunes fast while many weights are
    redundant, slowly near the target; the last value is exactly `target`."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [target * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps)] + [target]


def _mask(linear: nn.Linear) -> torch.Tensor:
    return linear.weight_mask if hasattr(linear, "weight_mask") else torch.ones_like(linear.weight)


def _live_magnitudes(linear: nn.Linear, mask: torch.Tensor) -> torch.Tensor:
    weight = linear.weight_orig if hasattr(linear, "weight_orig") else linear.weight
    # already-pruned entries score -1 so they are always among the removed, whatever their stored value
    return torch.where(mask.bool(), weight.detach().abs(), torch.full_like(weight, -1.0)).flatten()


def apply_global_magnitude(model: nn.Module, sparsity: float) -> nn.Module:
    """Mask the smallest-|w| encoder weights, ranked globally, so that exactly round(sparsity * total)
    are zero. Masks stay applied (forward pre-hooks) while training continues; calling again with a
    higher sparsity extends the existing masks to the new overall target rather than compounding."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    linears = [linear for _, linear in prunable_weights(model)]
    with torch.no_grad():
        masks = [_mask(linear) for linear in linears]
        scores = torch.cat([_live_magnitudes(linear, mask) for linear, mask in zip(linears, masks)])
        target = round(sparsity * scores.numel())
        already = int((scores < 0).sum())
        if target < already:
            raise ValueError(f"model is already {already / scores.numel():.4f} sparse; pruning cannot lower it "
                             f"to {sparsity} (make_permanent and fine-tune a fresh copy instead)")
        keep = torch.ones_like(scores)
        keep[torch.argsort(scores)[:target]] = 0.0
    pointer = 0
    for linear, mask in zip(linears, masks):
        new_mask = keep[pointer:pointer + mask.numel()].view_as(mask)
        pointer += mask.numel()
        if hasattr(linear, "weight_mask"):
            # update the buffer in place: re-running torch's prune would stack one mask copy per call
            with torch.no_grad():
                linear.weight_mask.copy_(new_mask)
            linear.weight = linear.weight_orig * linear.weight_mask
        else:
            prune.custom_from_mask(linear, "weight", new_mask)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight and drop the reparametrisation, leaving plain
    parameters with zeros: the state dict is then an ordinary `save_pretrained` one."""
    for module in model.modules():
        names = [hook._tensor_name for hook in module._forward_pre_hooks.values()
                 if isinstance(hook, prune.BasePruningMethod)]
        for name in names:
            prune.remove(module, name)
    return model


def _effective_parameters(model: nn.Module) -> Iterable[torch.Tensor]:
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue  # tied weights count once
            seen.add(id(parameter))
            # a masked parameter's real value is the derived attribute, not the `_orig` copy
            yield getattr(module, name[:-len("_orig")]) if name.endswith("_orig") else parameter


def sparsity_report(model: nn.Module) -> dict:
    """Sparsity measured from real zeros: overall and per layer over the prunable weights, plus
    `model_sparsity` over every parameter (embeddings and head included)."""
    layers, zeros, total = {}, 0, 0
    for name, linear in prunable_weights(model):
        weight = linear.weight
        layer_zeros = int((weight == 0).sum())
        layers[name] = layer_zeros / weight.numel()
        zeros, total = zeros + layer_zeros, total + weight.numel()
    all_zeros, all_total = 0, 0
    for tensor in _effective_parameters(model):
        all_zeros, all_total = all_zeros + int((tensor == 0).sum()), all_total + tensor.numel()
    return {"sparsity": zeros / total if total else 0.0, "zeros": zeros, "total": total,
            "layers": layers, "model_sparsity": all_zeros / all_total if all_total else 0.0}


# --- structured: importance of heads and FFN neurons ----------------------------------------

def _gate_input(gate: torch.Tensor, repeat: int):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0] * gate.repeat_interleave(repeat),) + tuple(args[1:])
    return hook


def _gradient_scores(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Michel et al. (2019): a gate of ones multiplies each head's context (the input of
    attention.output.dense) and each FFN activation (the input of output.dense); importance is
    |d loss / d gate| summed over batches (absolute per batch, as in the paper's code)."""
    device = next(model.parameters()).device
    head_gates, neuron_gates, handles = [], [], []
    for layer in _layers(model):
        attention = layer.attention.self
        head_gates.append(torch.ones(attention.num_attention_heads, device=device, requires_grad=True))
        neuron_gates.append(torch.ones(layer.output.dense.in_features, device=device, requires_grad=True))
        handles.append(layer.attention.output.dense.register_forward_pre_hook(
            _gate_input(head_gates[-1], attention.attention_head_size)))
        handles.append(layer.output.dense.register_forward_pre_hook(_gate_input(neuron_gates[-1], 1)))
    heads = [torch.zeros_like(g, requires_grad=False) for g in head_gates]
    neurons = [torch.zeros_like(g, requires_grad=False) for g in neuron_gates]
    was_training, seen = model.training, 0
    model.eval()  # dropout off: scores describe the model that will be deployed
    try:
        with torch.enable_grad():
            for batch in batches:
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                if loss is None:
                    raise ValueError("gradient importance needs batches with `labels`")
                # autograd.grad leaves the parameters' .grad untouched
                grads = torch.autograd.grad(loss, head_gates + neuron_gates)
                for total, grad in zip(heads + neurons, grads):
                    total += grad.abs()
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("gradient importance needs at least one batch")
    return [h.cpu() for h in heads], [n.cpu() for n in neurons]


def _magnitude_scores(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Data-free fallback: L1 norm of all weights that read from or write to a head / neuron."""
    heads, neurons = [], []
    with torch.no_grad():
        for layer in _layers(model):
            attention, size = layer.attention.self, layer.attention.self.attention_head_size
            rows = sum(getattr(attention, p).weight.abs().sum(1) for p in ("query", "key", "value"))
            cols = layer.attention.output.dense.weight.abs().sum(0)
            heads.append((rows + cols).view(-1, size).sum(1).cpu())
            neurons.append((layer.intermediate.dense.weight.abs().sum(1)
                            + layer.output.dense.weight.abs().sum(0)).cpu())
    return heads, neurons


def importance_scores(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]] = (),
                      importance: str = "gradient") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer head and neuron scores in one pass (higher = more important, all >= 0)."""
    if importance == "gradient":
        return _gradient_scores(model, batches)
    if importance == "magnitude":
        return _magnitude_scores(model)
    raise ValueError(f"importance must be one of {IMPORTANCE_METHODS}, got {importance!r}")


def head_importance(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]] = (),
                    importance: str = "gradient") -> torch.Tensor:
    """Head scores as a [layers, heads] tensor (layers must have equal head counts)."""
    heads, _ = importance_scores(model, batches, importance)
    if len({h.numel() for h in heads}) > 1:
        raise ValueError("layers have different head counts; use importance_scores for per-layer lists")
    return torch.stack(heads)


def neuron_importance(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]] = (),
                      importance: str = "gradient") -> list[torch.Tensor]:
    """Per layer, one score per intermediate (FFN) neuron."""
    return importance_scores(model, batches, importance)[1]


# --- structured: choosing and removing ------------------------------------------------------

@dataclass
class Structure:
    """What survives, per encoder layer: kept head indices and kept FFN neuron indices (sorted)."""
    heads: list[list[int]]
    neurons: list[list[int]]

    def to_dict(self) -> dict:
        return {"heads": [list(h) for h in self.heads], "neurons": [list(n) for n in self.neurons]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Structure":
        return cls(heads=[[int(i) for i in h] for h in data["heads"]],
                   neurons=[[int(i) for i in n] for n in data["neurons"]])


def _keep_top(scores: torch.Tensor, remove_fraction: float) -> list[int]:
    if not 0.0 <= remove_fraction <= 1.0:
        raise ValueError(f"fractions to remove must be in [0, 1], got {remove_fraction}")
    count = scores.numel()
    # round half up, and never empty a layer: a layer with no heads / neurons cannot run
    remove = min(math.floor(remove_fraction * count + 0.5), count - 1)
    kept = torch.topk(scores.float(), count - remove).indices
    return sorted(int(i) for i in kept)


def select_structure(head_scores: torch.Tensor | Sequence[torch.Tensor], neuron_scores: Sequence[torch.Tensor],
                     heads_fraction: float, neurons_fraction: float) -> Structure:
    """Remove the given fraction of heads and of neurons from every layer (uniform per layer, so
    every layer gets the same speed-up), lowest scores first, keeping at least one of each."""
    if len(head_scores) != len(neuron_scores):
        raise ValueError(f"{len(head_scores)} layers of head scores but {len(neuron_scores)} of neuron scores")
    return Structure(heads=[_keep_top(s, heads_fraction) for s in head_scores],
                     neurons=[_keep_top(s, neurons_fraction) for s in neuron_scores])


def _sliced(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear holding only the given output rows (dim 0) or input columns (dim 1)."""
    index = index.to(linear.weight.device)
    weight = linear.weight.detach().index_select(dim, index)
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            # input slicing leaves every output, hence the bias, in place
            new.bias.copy_(linear.bias.detach().index_select(0, index) if dim == 0 else linear.bias.detach())
    new.weight.requires_grad_(linear.weight.requires_grad)
    if linear.bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def _checked(indices: Sequence[int], available: int, what: str, layer: int) -> torch.Tensor:
    if not indices:
        raise ValueError(f"layer {layer}: at least one {what} must be kept")
    if len(set(indices)) != len(indices) or min(indices) < 0 or max(indices) >= available:
        raise ValueError(f"layer {layer}: {what} indices {list(indices)} invalid for {available} {what}s")
    return torch.tensor(sorted(indices), dtype=torch.long)


def _shrink_layer(layer: nn.Module, heads: Sequence[int], neurons: Sequence[int], index: int) -> None:
    attention, output = layer.attention.self, layer.attention.output
    size = attention.attention_head_size
    kept = _checked(heads, attention.num_attention_heads, "head", index)
    rows = (kept[:, None] * size + torch.arange(size)).flatten()
    for name in ("query", "key", "value"):
        setattr(attention, name, _sliced(getattr(attention, name), rows, 0))
    output.dense = _sliced(output.dense, rows, 1)
    # forward reshapes with -1 heads, but keep the bookkeeping honest for anything that reads it
    attention.num_attention_heads, attention.all_head_size = len(kept), len(kept) * size
    ffn = _checked(neurons, layer.intermediate.dense.out_features, "neuron", index)
    layer.intermediate.dense = _sliced(layer.intermediate.dense, ffn, 0)
    layer.output.dense = _sliced(layer.output.dense, ffn, 1)


def shrink(model: nn.Module, structure: Structure) -> nn.Module:
    """Physically drop the heads and FFN neurons not in `structure` (new, smaller Linear layers).
    The config is not changed: save `structure_shapes(model)` next to the weights for reloading."""
    layers = _layers(model)
    if len(structure.heads) != len(layers) or len(structure.neurons) != len(layers):
        raise ValueError(f"structure describes {len(structure.heads)}/{len(structure.neurons)} layers, "
                         f"model has {len(layers)}")
    if any(prune.is_pruned(linear) for _, linear in prunable_weights(model)):
        raise ValueError("model carries pruning masks; call make_permanent before shrink")
    for index, layer in enumerate(layers):
        _shrink_layer(layer, structure.heads[index], structure.neurons[index], index)
    return model


def shrink_least_important(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], heads_fraction: float,
                           neurons_fraction: float, importance: str = "gradient") -> dict:
    """Score, select and remove in one step (structured pruning, and a narrower distilled student):
    the given share of each layer's heads and FFN neurons, least important first. Returns the new
    `structure_shapes`."""
    heads, neurons = importance_scores(model, batches, importance)
    shrink(model, select_structure(heads, neurons, heads_fraction, neurons_fraction))
    return structure_shapes(model)


def structure_shapes(model: nn.Module) -> dict:
    """JSON-ready per-layer head count and intermediate size: enough to rebuild the shapes."""
    return {"layers": [{"heads": layer.attention.self.num_attention_heads,
                        "intermediate_size": layer.intermediate.dense.out_features}
                       for layer in _layers(model)]}


def describe_widths(shapes: Mapping) -> str:
    """`structure_shapes` for a log line: "heads per layer [..], FFN neurons per layer [..]"."""
    layers = shapes["layers"]
    return (f"heads per layer {[int(s['heads']) for s in layers]}, "
            f"FFN neurons per layer {[int(s['intermediate_size']) for s in layers]}")


def shrink_to_shapes(model: nn.Module, shapes: Mapping) -> nn.Module:
    """Give a freshly built model (same config) the shapes in `shapes`, so a shrunk state dict
    loads with `load_state_dict(strict=True)`; which rows are kept does not matter, they are overwritten."""
    layers = shapes["layers"]
    return shrink(model, Structure(heads=[list(range(int(s["heads"]))) for s in layers],
                                   neurons=[list(range(int(s["intermediate_size"]))) for s in layers]))
