"""Distillation: the student keeps the requested teacher layers, the loss is the documented mix,
cached teacher logits are padded with the batch, and the loss falls when the student trains."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinynlp import distill, modeling
from tinynlp.tagging import bio_labels

LABELS = bio_labels(["location", "person"])


def teacher(tiny_bert):
    return modeling.load_classifier(str(tiny_bert), LABELS, seed=0)


def test_evenly_spaced_layers_start_at_the_bottom_or_end_at_the_top():
    assert distill.evenly_spaced_layers(6, 3) == [0, 2, 4]
    assert distill.evenly_spaced_layers(12, 4) == [0, 3, 6, 9]
    assert distill.evenly_spaced_layers(6, 6) == list(range(6))
    assert distill.evenly_spaced_layers(6, 3, "top") == [1, 3, 5]
    assert distill.evenly_spaced_layers(12, 4, "top") == [2, 5, 8, 11]
    assert distill.evenly_spaced_layers(2, 1, "top") == [1]
    with pytest.raises(ValueError, match="layer spread"):
        distill.evenly_spaced_layers(6, 3, "middle")
    with pytest.raises(ValueError, match="between 1 and 2"):
        distill.evenly_spaced_layers(2, 3)


def test_student_has_the_requested_layers_copied_from_the_teacher(tiny_bert):
    model = teacher(tiny_bert)
    student = distill.student_from_teacher(model, [1])
    assert len(student.base_model.encoder.layer) == 1 and student.config.num_hidden_layers == 1
    assert len(model.base_model.encoder.layer) == 2  # the teacher is untouched
    torch.testing.assert_close(student.base_model.encoder.layer[0].attention.self.query.weight,
                               model.base_model.encoder.layer[1].attention.self.query.weight)
    ids = torch.tensor([[2, 10, 11, 3]])
    assert student(input_ids=ids).logits.shape == (1, 4, len(LABELS))
    assert modeling.parameter_count(student) < modeling.parameter_count(model)


def test_loss_is_the_weighted_mix_of_label_and_soft_target_terms():
    torch.manual_seed(0)
    student, teacher_logits = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    labels = torch.tensor([[0, 1, -100, 2, 0], [1, 1, 0, -100, 2]])
    hard = torch.nn.functional.cross_entropy(student.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(distill.distillation_loss(student, teacher_logits, labels, 1.0, 2.0), hard)
    # identical logits: nothing to learn from the teacher
    assert distill.distillation_loss(student, student.clone(), labels, 0.0, 3.0).item() == pytest.approx(0, abs=1e-6)
    masked = distill.distillation_loss(student, teacher_logits, None, 0.0, 2.0, mask=torch.zeros(2, 5))
    assert torch.isnan(masked) or masked.item() == 0  # no real positions, no signal


def test_cached_teacher_logits_are_padded_to_the_batch(tiny_bert):
    tokenizer = modeling.load_tokenizer(str(tiny_bert))
    from transformers import DataCollatorForTokenClassification

    collate = distill.padding_teacher_logits(DataCollatorForTokenClassification(tokenizer))
    features = distill.with_teacher_logits(
        [{"input_ids": [2, 10, 3], "attention_mask": [1, 1, 1], "labels": [-100, 0, -100]},
         {"input_ids": [2, 10, 11, 12, 3], "attention_mask": [1] * 5, "labels": [-100, 0, 1, 0, -100]}],
        [np.ones((3, 5)), np.full((5, 5), 2.0)])
    batch = collate(features)
    assert batch[distill.TEACHER_LOGITS].shape == (2, 5, 5)
    assert batch[distill.TEACHER_LOGITS][0, 3:].abs().sum() == 0 and batch[distill.TEACHER_LOGITS][1, 4, 0] == 2


def test_distillation_loss_falls_and_cached_equals_on_the_fly(tiny_bert):
    model = teacher(tiny_bert)
    student = distill.student_from_teacher(model, [1])
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(5, 40, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long),
             "labels": torch.randint(0, len(LABELS), (4, 7))}
    loss_fn = distill.make_loss_fn(model, alpha=0.5, temperature=2.0, token_level=True)
    with torch.no_grad():
        cached = {**batch, distill.TEACHER_LOGITS: model(input_ids=batch["input_ids"]).logits}
    torch.testing.assert_close(loss_fn(student, batch)[0], loss_fn(student, cached)[0])
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student.train()
    losses = []
    for _ in range(20):
        loss, _ = loss_fn(student, cached)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # the labels are random: CE has a floor


def test_hidden_state_loss_is_zero_for_the_copied_layers_at_start(tiny_bert):
    model = teacher(tiny_bert).eval()
    student = distill.student_from_teacher(model, [0]).eval()  # the first layer sees the same input
    ids, mask = torch.tensor([[2, 10, 11, 3]]), torch.ones(1, 4, dtype=torch.long)
    s = student(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    t = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert distill.hidden_state_loss(s, t, [0], mask).item() == pytest.approx(0, abs=1e-10)


def test_hidden_state_loss_path_returns_logits_only(tiny_bert):
    """The training routine's evaluation takes every output tensor as a prediction."""
    model = teacher(tiny_bert)
    student = distill.student_from_teacher(model, [1])
    batch = {"input_ids": torch.randint(5, 40, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long),
             "labels": torch.randint(0, len(LABELS), (2, 6))}
    loss_fn = distill.make_loss_fn(model, 0.5, 2.0, token_level=True, hidden_weight=1.0, layer_map=[1])
    loss, outputs = loss_fn(student, batch)
    assert loss.requires_grad and outputs.hidden_states is None and len(outputs.to_tuple()) == 1


def test_a_batch_of_unlabelled_transfer_text_learns_from_the_teacher_alone():
    torch.manual_seed(0)
    student, teacher_logits = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    unlabelled = torch.full((2, 5), -100)
    loss = distill.distillation_loss(student, teacher_logits, unlabelled, 0.5, 2.0)
    assert torch.isfinite(loss)  # cross-entropy over no labels would be NaN
    torch.testing.assert_close(loss, 0.5 * distill.distillation_loss(student, teacher_logits, None, 0.0, 2.0))


def test_transfer_texts_are_a_seeded_sample_of_sentences_or_lines(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alice went to Paris . She liked it there a lot !\n\nNo .\n", encoding="utf-8")
    (corpus / "b.txt").write_text("Bob wrote a long letter to Carol yesterday evening .\n", encoding="utf-8")
    sentences = distill.transfer_texts(str(corpus), 10, seed=0, as_sentences=True)
    assert sentences == [["Alice", "went", "to", "Paris", "."], ["She", "liked", "it", "there", "a", "lot", "!"],
                         ["Bob", "wrote", "a", "long", "letter", "to", "Carol", "yesterday", "evening", "."]]
    two = distill.transfer_texts(str(corpus), 2, seed=0, as_sentences=True)
    assert len(two) == 2 and two == distill.transfer_texts(str(corpus), 2, seed=0, as_sentences=True)
    assert all(s in sentences for s in two) and sentences.index(two[0]) < sentences.index(two[1])  # corpus order
    lines = distill.transfer_texts(str(corpus / "a.txt"), 10, seed=0, as_sentences=False)
    assert lines == ["Alice went to Paris . She liked it there a lot !", "No ."]


def test_a_narrower_student_keeps_its_most_important_neurons_and_reloads(tiny_bert, tmp_path):
    """distill.neurons_fraction / heads_fraction: the student's layers lose their least important FFN
    neurons and heads (the structured pruning routine), and the saved student reloads at its shapes."""
    from tinynlp import pruning
    from tinynlp.model_dir import load_model, save_model
    from tinynlp.heads import ModelSpec

    teacher = modeling.load_classifier(str(tiny_bert), ["O", "B-x", "I-x"])
    student = distill.student_from_teacher(teacher, [0])
    batch = {"input_ids": torch.tensor([[2, 5, 6, 7, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long),
             "labels": torch.tensor([[-100, 1, 2, 0, -100]])}
    _, neurons = pruning.importance_scores(student, [batch])
    before = student.base_model.encoder.layer[0].intermediate.dense.weight.detach().clone()
    width = before.shape[0]
    shapes = pruning.shrink_least_important(student, [batch], heads_fraction=0.5, neurons_fraction=0.5)
    layer = student.base_model.encoder.layer[0]
    assert shapes["layers"][0]["intermediate_size"] == layer.intermediate.dense.out_features == width // 2
    kept = sorted(torch.topk(neurons[0], width // 2).indices.tolist())  # the highest scores survive, in order
    assert torch.equal(layer.intermediate.dense.weight, before[kept])
    spec = ModelSpec(task="ner", labels=["O", "B-x", "I-x"], max_length=16)
    save_model(tmp_path / "student", student, modeling.load_tokenizer(str(tiny_bert)), spec, str(tiny_bert), shapes)
    again, _ = load_model(tmp_path / "student")
    with torch.no_grad():
        assert torch.allclose(again(**{k: v for k, v in batch.items() if k != "labels"}).logits,
                              student.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits, atol=1e-5)
