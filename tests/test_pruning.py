"""Magnitude pruning reaches (and keeps) its sparsity through training and saving; structured
pruning really shrinks the encoder, is exact when nothing is removed, and reloads from shapes."""
from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from tinynlp import modeling, pruning

LABELS = ["O", "B-person", "I-person"]
TOKEN, SEQUENCE = "AutoModelForTokenClassification", "AutoModelForSequenceClassification"
TOTAL = 2 * (4 * 32 * 32 + 2 * 32 * 64)  # 2 layers x (q, k, v, attn out + intermediate, output)


def classifier(tiny_bert, model_class: str = TOKEN):
    return modeling.load_classifier(str(tiny_bert), LABELS, model_class, seed=0).eval()


def batches(model, count: int = 2, size: int = 4, length: int = 8) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    token_level = "TokenClassification" in type(model).__name__
    out = []
    for _ in range(count):
        ids = torch.randint(5, model.config.vocab_size, (size, length), generator=generator)
        shape = (size, length) if token_level else (size,)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "labels": torch.randint(0, len(LABELS), shape, generator=generator)})
    return out


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_schedule_is_cubic_monotone_and_ends_at_target():
    schedule = pruning.sparsity_schedule(0.8, 5)
    assert len(schedule) == 5 and schedule[-1] == 0.8
    assert all(a < b for a, b in zip(schedule, schedule[1:]))
    steps = [b - a for a, b in zip([0.0] + schedule, schedule)]
    assert all(a > b for a, b in zip(steps, steps[1:]))  # prunes most early
    assert pruning.sparsity_schedule(0.5, 1) == [0.5]
    with pytest.raises(ValueError):
        pruning.sparsity_schedule(1.0, 3)


def test_prunable_weights_are_the_encoder_linears_only(tiny_bert):
    names = [name for name, _ in pruning.prunable_weights(classifier(tiny_bert))]
    assert len(names) == 12 and all(name.startswith("bert.encoder.layer.") for name in names)
    assert sum(linear.weight.numel() for _, linear in pruning.prunable_weights(classifier(tiny_bert))) == TOTAL


def test_global_magnitude_reaches_sparsity_and_survives_saving(tiny_bert, tmp_path):
    model = pruning.apply_global_magnitude(classifier(tiny_bert), 0.6)
    report = pruning.sparsity_report(model)
    assert report["zeros"] == round(0.6 * TOTAL) and report["total"] == TOTAL
    assert abs(report["sparsity"] - 0.6) < 3 / TOTAL
    assert 0 < report["model_sparsity"] < report["sparsity"]  # embeddings and head stay dense
    assert len(set(report["layers"].values())) > 1  # global ranking: layers differ
    pruning.make_permanent(model)
    assert not any(key.endswith(("_orig", "_mask")) for key in model.state_dict())
    assert pruning.sparsity_report(model)["zeros"] == report["zeros"]
    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert pruning.sparsity_report(reloaded)["zeros"] == report["zeros"]
    assert torch.equal(logits(reloaded, batches(model)[0]), logits(model, batches(model)[0]))


def test_raising_sparsity_extends_masks_to_the_new_overall_target(tiny_bert):
    model = pruning.apply_global_magnitude(classifier(tiny_bert), 0.3)
    first = [linear.weight_mask.clone() for _, linear in pruning.prunable_weights(model)]
    pruning.apply_global_magnitude(model, 0.6)
    assert pruning.sparsity_report(model)["zeros"] == round(0.6 * TOTAL)  # not 1 - 0.7 * 0.4
    for old, (_, linear) in zip(first, pruning.prunable_weights(model)):
        assert torch.all(linear.weight_mask <= old)  # once pruned, stays pruned
        assert len(linear._forward_pre_hooks) == 1  # no stacked containers
    with pytest.raises(ValueError, match="cannot lower"):
        pruning.apply_global_magnitude(model, 0.5)


def test_masks_hold_while_training(tiny_bert):
    model = pruning.apply_global_magnitude(classifier(tiny_bert), 0.5).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for batch in batches(model):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model(**batches(model)[0])  # the pre-hook re-derives weights from the updated originals
    assert pruning.sparsity_report(model)["zeros"] >= round(0.5 * TOTAL)


@pytest.mark.parametrize("importance", ["gradient", "magnitude"])
def test_importance_scores_have_the_right_shapes(tiny_bert, importance):
    model = classifier(tiny_bert).train()
    heads = pruning.head_importance(model, batches(model), importance)
    neurons = pruning.neuron_importance(model, batches(model), importance)
    assert heads.shape == (2, 2) and torch.all(heads >= 0) and heads.sum() > 0
    assert [n.shape for n in neurons] == [(64,), (64,)] and all(torch.all(n >= 0) for n in neurons)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_gradient_importance_needs_labels(tiny_bert):
    model = classifier(tiny_bert)
    unlabeled = [{k: v for k, v in batches(model)[0].items() if k != "labels"}]
    with pytest.raises(ValueError, match="labels"):
        pruning.head_importance(model, unlabeled)


def test_select_structure_is_uniform_and_never_empties_a_layer():
    heads = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6]])
    neurons = [torch.arange(8.0), torch.arange(8.0).flip(0)]
    structure = pruning.select_structure(heads, neurons, 0.5, 0.25)
    assert structure.heads == [[1, 2], [2, 3]]
    assert structure.neurons == [[2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5]]
    everything = pruning.select_structure(heads, neurons, 1.0, 1.0)
    assert everything.heads == [[1], [2]] and everything.neurons == [[7], [0]]
    assert pruning.Structure.from_dict(json.loads(json.dumps(structure.to_dict()))) == structure


def test_shrink_makes_matrices_smaller_and_the_model_still_runs(tiny_bert):
    model = classifier(tiny_bert)
    before = modeling.parameter_count(model)
    structure = pruning.select_structure(*pruning.importance_scores(model, batches(model)), 0.5, 0.5)
    pruning.shrink(model, structure)
    for layer in model.bert.encoder.layer:
        attention = layer.attention.self
        assert attention.query.out_features == attention.key.out_features == attention.value.out_features == 16
        assert layer.attention.output.dense.in_features == 16 and attention.num_attention_heads == 1
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == 32
    assert modeling.parameter_count(model) < before
    batch = batches(model)[0]
    sdpa = logits(model, batch)
    assert sdpa.shape == (4, 8, len(LABELS))
    model.set_attn_implementation("eager")
    assert torch.allclose(logits(model, batch), sdpa, atol=1e-5)  # both attention kernels accept fewer heads


def test_shrink_keeping_everything_changes_nothing(tiny_bert):
    model = classifier(tiny_bert)
    batch = batches(model)[0]
    expected = logits(model, batch)
    pruning.shrink(model, pruning.Structure(heads=[[0, 1], [0, 1]], neurons=[list(range(64))] * 2))
    assert torch.equal(logits(model, batch), expected)


def test_shrink_refuses_masks_and_bad_structures(tiny_bert):
    model = classifier(tiny_bert)
    with pytest.raises(ValueError, match="at least one head"):
        pruning.shrink(model, pruning.Structure(heads=[[], [0]], neurons=[[0], [0]]))
    with pytest.raises(ValueError, match="invalid"):
        pruning.shrink(classifier(tiny_bert), pruning.Structure(heads=[[0, 2], [0]], neurons=[[0], [0]]))
    with pytest.raises(ValueError, match="make_permanent"):
        pruning.shrink(pruning.apply_global_magnitude(classifier(tiny_bert), 0.2),
                       pruning.Structure(heads=[[0], [0]], neurons=[[0], [0]]))


@pytest.mark.parametrize("model_class", [TOKEN, SEQUENCE])
def test_shapes_round_trip_through_a_fresh_model(tiny_bert, tmp_path, model_class):
    model = classifier(tiny_bert, model_class)
    structure = pruning.select_structure(*pruning.importance_scores(model, batches(model)), 0.5, 0.75)
    pruning.shrink(model, structure)
    pruning.make_permanent(pruning.apply_global_magnitude(model, 0.4))  # both kinds together
    model.save_pretrained(tmp_path)
    shapes = json.loads(json.dumps(pruning.structure_shapes(model)))
    assert shapes == {"layers": [{"heads": 1, "intermediate_size": 16}] * 2}
    assert pruning.describe_widths(shapes) == "heads per layer [1, 1], FFN neurons per layer [16, 16]"

    fresh = getattr(transformers, model_class).from_config(model.config)
    pruning.shrink_to_shapes(fresh, shapes)
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    batch = batches(model)[0]
    assert torch.equal(logits(fresh.eval(), batch), logits(model, batch))
    assert logits(model, batch).shape == ((4, 8, 3) if model_class == TOKEN else (4, 3))
