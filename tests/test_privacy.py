"""Differentially private fine-tuning (DP-SGD with Opacus): the accounting, what trains, and the
ways its guarantee could silently break, refused."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from conftest import ROOT
from tinynlp import privacy
from tinynlp.config import ConfigError, load_params
from test_training import run_training

DP = privacy.DpSettings(epsilon=8.0, delta=1e-3, max_grad_norm=1.0)


def test_a_smaller_budget_needs_more_noise_and_the_spent_epsilon_is_the_accountants():
    from opacus.accountants import RDPAccountant

    settings = dataclasses.replace(DP, delta=1e-5)
    loose, tight = privacy.plan(settings, 2000, 64, 3), privacy.plan(dataclasses.replace(settings, epsilon=1.0), 2000, 64, 3)
    assert tight.noise_multiplier > loose.noise_multiplier > 0
    assert loose.sample_rate == pytest.approx(0.032) and loose.planned_steps == 3 * 31
    reference = RDPAccountant()
    for _ in range(loose.planned_steps):  # Opacus' own accountant, stepped as the optimiser does
        reference.step(noise_multiplier=loose.noise_multiplier, sample_rate=loose.sample_rate)
    spent = privacy.spent_epsilon(loose, loose.planned_steps, settings.delta)
    assert spent == pytest.approx(reference.get_epsilon(settings.delta), rel=1e-6)
    assert 7.8 <= spent <= 8.0  # the whole plan spends the budget, within the search tolerance
    assert privacy.spent_epsilon(loose, loose.planned_steps // 3, settings.delta) < spent  # stopping early spends less
    assert privacy.spent_epsilon(loose, 0, settings.delta) == 0.0


def test_delta_must_be_below_one_over_the_train_size():
    with pytest.raises(ValueError, match=r"finetune.dp.delta 0.01 must be below 1 / train examples \(1/200"):
        privacy.plan(dataclasses.replace(DP, delta=0.01), 200, 8, 1)


def test_the_per_example_loss_is_a_mean_of_each_examples_own_mean():
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([[1, -100, -100], [0, 2, 3]])
    first = torch.nn.functional.cross_entropy(logits[0, :1], labels[0, :1])
    second = torch.nn.functional.cross_entropy(logits[1], labels[1])
    assert privacy.per_example_loss(logits, labels).item() == pytest.approx(((first + second) / 2).item(), rel=1e-5)


def test_private_training_spends_at_most_its_budget_and_trains_only_what_it_says(tiny_bert, tmp_path):
    from tinynlp import modeling
    from test_training import LABELS

    before = modeling.load_classifier(str(tiny_bert), LABELS, seed=7)
    # batch 1 over 24 sentences: about a third of the Poisson steps draw no sentence at all
    result = run_training(tiny_bert, tmp_path / "dp", dp=DP, batch_size=1, freeze_top_layers=1)
    assert result.privacy["epsilon"] <= DP.epsilon + 1e-6 and result.privacy["epsilon"] > 0
    assert result.privacy["steps"] == result.privacy["planned_steps"] > 0
    assert result.privacy["noise_multiplier"] > 0 and result.privacy["delta"] == DP.delta
    trained = dict(result.model.named_parameters())
    for name, parameter in before.named_parameters():
        changed = not torch.equal(parameter, trained[name].detach())
        frozen = ".embeddings." in name or ".layer.0." in name  # two layers, the top one trains
        assert changed != frozen, name
    assert not any(hasattr(p, "grad_sample") for p in result.model.parameters()), "Opacus' hooks were cleaned up"


def test_top_layers_zero_trains_the_output_layer_alone_pooler_frozen(tiny_bert):
    from tinynlp import modeling

    model = modeling.load_classifier(str(tiny_bert), ["neg", "pos"], "AutoModelForSequenceClassification", seed=0)
    said = privacy.freeze_for_private_training(model, top_layers=0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"} and "pooler" in said and "output layer only" in said


def _params_with(tmp_path, finetune: dict, **sections):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["finetune"].update(finetune)
    for name, values in sections.items():
        params[name].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return load_params(path, check_files=False)


def test_private_training_refuses_what_would_break_its_accounting(tmp_path):
    dp = {"enabled": True, "epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0, "top_layers": 0}
    assert _params_with(tmp_path, {"dp": dp}).finetune.dp.enabled
    for extra, named in (({"gradient_accumulation": 2}, "gradient_accumulation: 1"),
                         ({"fgm_epsilon": 0.5}, "fgm_epsilon"), ({"peft": "lora"}, "peft: lora")):
        with pytest.raises(ConfigError, match=named):
            _params_with(tmp_path, {"dp": dp, **extra})
    for section in ("pretrain", "augment"):  # both read the train texts outside the accountant
        with pytest.raises(ConfigError, match=f"{section}.enabled"):
            _params_with(tmp_path, {"dp": dp}, **{section: {"enabled": True}})
    with pytest.raises(ConfigError, match="epsilonn"):
        _params_with(tmp_path, {"dp": {**dp, "epsilonn": 1}})
    with pytest.raises(ConfigError, match="epsilon"):
        _params_with(tmp_path, {"dp": {**dp, "epsilon": 0}})


@pytest.mark.slow
def test_a_private_run_reports_its_epsilon_and_ships_only_a_private_variant(tmp_path, tiny_bert):
    """The DAG with finetune.dp on: ε spent in the finetune metrics, the guarantee beside the
    weights and in the card, and the gate refusing every variant that read training data again."""
    from huggingface_hub import ModelCard

    from conftest import make_workspace, quick_params, run
    from test_pipeline import DVC, set_param

    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    quick_params(workspace)
    set_param(workspace, "finetune", "dp", {"enabled": True, "epsilon": 8.0, "delta": 1e-3, "max_grad_norm": 1.0,
                                            "top_layers": 1})
    set_param(workspace, "finetune", "batch_size", 2)
    set_param(workspace, "finetune", "decoding", "viterbi")  # kept with the model down to the served one
    set_param(workspace, "evaluate", "gate", {**yaml.safe_load((workspace / "params.yaml").read_text())["evaluate"]
                                              ["gate"], "max_drop": 1.0})  # a noisy toy model: any score passes
    run(DVC + ["repro"], workspace)
    metrics = json.loads((workspace / "reports/finetune/metrics.json").read_text())
    assert 0 < metrics["dp"]["epsilon"] <= 8.0 and metrics["dp"]["delta"] == 1e-3
    assert json.loads((workspace / "models/finetune/privacy.json").read_text())["trained"].startswith("encoder layer 1")
    scores = json.loads((workspace / "reports/evaluate/scores.json").read_text())
    decisions = {d["name"]: d for d in scores["gate"]}
    for name in ("prune_structured", "distill", "distill_int8"):
        assert not decisions[name]["passed"] and "without DP" in " ".join(decisions[name]["reasons"]), decisions[name]
    promoted = json.loads((workspace / "reports/evaluate/metrics.json").read_text())["promoted"]
    assert promoted in ("finetune", "finetune_onnx", "finetune_int8"), promoted
    assert json.loads((workspace / "models/promoted/pipeline.json").read_text())["decoding"] == "viterbi"
    card = ModelCard.load(workspace / "models/promoted/README.md")
    assert "differential-privacy" in card.data.tags
    assert f"ε = {metrics['dp']['epsilon']}" in card.text and "encoder layer 1 of 2" in card.text
