"""LoRA and BitFit train what they should (counted) and merge into a plain model; FGM restores
the embeddings after each adversarial step."""
from __future__ import annotations

import pytest
import torch
import yaml
from pathlib import Path

from tinynlp import efficient, modeling
from tinynlp.tagging import bio_labels

LABELS = bio_labels(["location", "person"])


def classifier(tiny_bert):
    return modeling.load_classifier(str(tiny_bert), LABELS, seed=0)


def test_bitfit_trains_biases_and_head_only(tiny_bert):
    model = efficient.apply_bitfit(classifier(tiny_bert))
    expected = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias") or n.startswith("classifier."))
    assert efficient.trainable_parameters(model) == expected
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad
    assert model.classifier.weight.requires_grad


def test_lora_counts_and_merges_into_a_plain_model(tiny_bert):
    base = classifier(tiny_bert)
    total = modeling.parameter_count(base)
    model = efficient.apply_lora(base, "ner", r=4, alpha=8, dropout=0.0, targets=["query", "value"])
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    head = sum(p.numel() for n, p in model.named_parameters() if "modules_to_save" in n and p.requires_grad)
    assert lora == 2 * 2 * (32 * 4 + 4 * 32)  # 2 layers x (query, value) x (A + B)
    assert efficient.trainable_parameters(model) == lora + head
    with torch.no_grad():  # make the adapters matter before merging
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    inputs = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).logits
        plain = efficient.merged(model)
        assert type(plain).__name__ == "BertForTokenClassification"
        assert modeling.parameter_count(plain) == total
        torch.testing.assert_close(plain(**inputs).logits, expected, atol=1e-5, rtol=1e-4)


def test_fgm_perturbs_along_the_gradient_and_restores_exactly(tiny_bert):
    model = classifier(tiny_bert)
    embeddings = model.get_input_embeddings().weight
    original = embeddings.detach().clone()
    inputs = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
              "labels": torch.tensor([[-100, 1, 0, -100]])}
    model(**inputs).loss.backward()
    fgm = efficient.FGM(model, epsilon=0.5)
    assert fgm.attack()
    shift = embeddings.detach() - original
    assert torch.linalg.vector_norm(shift).item() == pytest.approx(0.5, rel=1e-4)
    fgm.restore()
    assert torch.equal(embeddings.detach(), original)


def test_fgm_without_gradient_is_a_no_op(tiny_bert):
    model = efficient.apply_bitfit(classifier(tiny_bert))  # embeddings frozen: no gradient
    assert not efficient.FGM(model, 1.0).attack()


@pytest.mark.parametrize("option", [{"peft": "lora"}, {"peft": "bitfit"}, {"fgm_epsilon": 1.0}])
def test_finetune_options_save_a_plain_model(workspace, option):
    from tasks.augment import run_augment
    from tasks.finetune import run_finetune
    from tasks.ingest import run_ingest
    from tasks.pretrain import run_pretrain
    from tinynlp.config import parse_params

    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["finetune"].update(epochs=2, **option)
    params = parse_params(raw)
    run_ingest(params)
    run_augment(params)
    run_pretrain(params)
    metrics = run_finetune(params)
    model = modeling.load_classifier("models/finetune", LABELS)
    assert type(model).__name__ == "BertForTokenClassification"
    assert not any("lora" in name for name in model.state_dict())
    if "peft" in option:
        assert metrics["trainable_parameters"] < modeling.parameter_count(model)
    else:
        assert metrics["trainable_parameters"] == modeling.parameter_count(model)
