"""`finetune.casing: shape`: word shapes as token-type ids, a table that starts as the checkpoint,
and the third input carried through every runner (PyTorch, ONNX, ORT INT8, INC) and explanations."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinynlp import modeling, ner
from tinynlp import quantization as q
from tinynlp.errors import ConfigError
from tinynlp.inference import TorchRunner, pad_batch, predict_logits

LABELS = ["O", "B-person", "I-person", "B-location", "I-location"]
LABEL2ID = {l: i for i, l in enumerate(LABELS)}
SHAPE_ID = {shape: 1 + i for i, shape in enumerate(ner.WORD_SHAPES)}


@pytest.mark.parametrize("word, shape", [("paris", "lower"), ("Paris", "title"), ("NASA", "upper"),
                                         ("iPhone", "mixed"), ("2024", "digits"), ("3pm", "lower"),
                                         ("!!", "other"), ("@", "other"), ("Élodie", "title")])
def test_word_shape(word, shape):
    assert ner.word_shape(word) == shape


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return modeling.load_tokenizer(str(tiny_bert))


def test_every_subtoken_carries_its_words_shape_and_special_tokens_none(tokenizer):
    words, tags = ["Alicea", "lives", "in", "PARIS", "2024", "!"], ["B-person", "O", "O", "B-location", "O", "O"]
    encoded = ner.encode(tokenizer, [words], [tags], LABEL2ID, 32, 4, casing="shape")
    feature = encoded.features[0]
    plain = ner.encode(tokenizer, [words], [tags], LABEL2ID, 32, 4).features[0]
    assert feature["input_ids"] == plain["input_ids"] and feature["labels"] == plain["labels"]  # no tokens added
    assert "token_type_ids" not in plain
    types = feature["token_type_ids"]
    assert len(types) == len(feature["input_ids"]) and types[0] == types[-1] == 0  # [CLS], [SEP]
    expected = [SHAPE_ID[s] for s in ("title", "lower", "lower", "upper", "digits", "other")]
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    assert [types[p] for p, w in enumerate(word_ids) if w is not None] == [expected[w] for w in word_ids if w is not None]
    assert word_ids.count(0) > 1  # "Alicea" has several subtokens, all "title"


def test_context_words_and_windows_keep_their_shapes(tokenizer):
    sentences = [["Alice", "lives"], ["in", "PARIS"]]
    encoded = ner.encode(tokenizer, sentences, None, LABEL2ID, 32, 4, casing="shape", context=8, documents=[0, 0])
    second = encoded.features[1]
    tokens = tokenizer.convert_ids_to_tokens(second["input_ids"])
    assert second["token_type_ids"][tokens.index("alice")] == SHAPE_ID["title"]  # context, from sentence one
    assert second["token_type_ids"][tokens.index("in")] == SHAPE_ID["lower"]
    long = ner.encode(tokenizer, [("Alice lives in PARIS".split()) * 8], None, LABEL2ID, 16, 4, casing="shape")
    assert len(long.features) > 1
    assert all(len(f["token_type_ids"]) == len(f["input_ids"]) for f in long.features)


@pytest.fixture(scope="module")
def shaped(tiny_bert):
    """A tagger with the shape table, its rows moved apart so shapes change the logits."""
    model = modeling.load_classifier(str(tiny_bert), LABELS, "AutoModelForTokenClassification", seed=0).eval()
    ner.add_shape_embeddings(model)
    with torch.no_grad():
        ner.shape_embeddings(model).weight.add_(torch.randn_like(ner.shape_embeddings(model).weight))
    return model


def shaped_batches(model) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    batches = []
    for size, length in [(1, 5), (3, 17), (2, 9)]:
        ids = rng.integers(5, model.config.vocab_size, (size, length)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[-1, length // 2 + 1:] = 0
        types = rng.integers(0, len(ner.WORD_SHAPES) + 1, (size, length)).astype(np.int64) * mask
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return batches


def test_the_shape_table_starts_as_the_checkpoint_and_survives_saving(tiny_bert, tmp_path):
    model = modeling.load_classifier(str(tiny_bert), LABELS, "AutoModelForTokenClassification", seed=0).eval()
    batch = shaped_batches(model)[1]
    before = q.torch_logits(model, batch["input_ids"], batch["attention_mask"])
    ner.add_shape_embeddings(model)
    ner.add_shape_embeddings(model)  # idempotent: a resumed run adds nothing
    assert ner.shape_embeddings(model).num_embeddings == len(ner.WORD_SHAPES) + 1 == model.config.type_vocab_size
    assert ner.uses_word_shapes(model) and q.input_names(model)[-1] == "token_type_ids"
    np.testing.assert_allclose(q.torch_logits(model, *q._arrays(batch)), before, atol=1e-5)  # every shape = row 0
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["word_shapes"] == list(ner.WORD_SHAPES)
    from transformers import AutoModelForTokenClassification

    reloaded = AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert ner.uses_word_shapes(reloaded) and ner.shape_embeddings(reloaded).num_embeddings == 7


def test_shape_dropout_hides_whole_sentences_in_training_only(shaped):
    table, seen = ner.shape_embeddings(shaped), []
    types = torch.tensor(shaped_batches(shaped)[1]["token_type_ids"]).repeat(40, 1)  # 120 sentences
    torch.manual_seed(0)
    with ner.hidden_shapes(shaped, 0.25):
        recorder = table.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].clone()))
        try:
            table.train()
            table(types)
            table.eval()
            table(types)
        finally:
            recorder.remove()
            table.eval()
    trained, evaluated = seen
    hidden = (trained == 0).all(dim=1) & (types != 0).any(dim=1)
    assert 0.1 < hidden.float().mean() < 0.4  # about a quarter of the sentences lost every shape
    assert torch.equal(trained[~hidden], types[~hidden])  # the others kept all of theirs
    assert torch.equal(evaluated, types)  # evaluation and export always see the shapes
    table.train()
    assert torch.equal(table(types), torch.nn.functional.embedding(types, table.weight))  # the hook is gone
    table.eval()


def test_an_encoder_without_token_types_is_refused_naming_the_key():
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    model = DistilBertForTokenClassification(DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=2,
                                                               hidden_dim=64, max_position_embeddings=32))
    with pytest.raises(ConfigError, match="finetune.casing: shape.*DistilBertModel has none"):
        ner.add_shape_embeddings(model)


def test_shapes_reach_the_onnx_graph_and_its_int8_variants(shaped, tmp_path):
    batches = shaped_batches(shaped)
    path = q.export_onnx(shaped, tmp_path / "fp32.onnx")
    runner = q.OnnxRunner(path)
    assert runner.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert q.max_abs_difference(shaped, path, batches) < 1e-4
    batch = batches[1]
    without = runner(batch["input_ids"], batch["attention_mask"])
    assert np.abs(without - runner(*q._arrays(batch))).max() > 1e-2, "the graph ignores token_type_ids"
    fused = tmp_path / "fused.onnx"
    q.optimize_onnx(path, fused, *q.fusion_geometry(shaped))
    assert q.max_abs_difference(shaped, fused, batches) < 1e-4
    assert q.max_abs_difference(shaped, q.quantize_dynamic_onnx(fused, tmp_path / "dynamic.onnx"), batches) < 0.1
    assert q.max_abs_difference(shaped, q.quantize_static_onnx(path, tmp_path / "static.onnx", batches), batches) < 0.2


def test_shapes_reach_the_inc_program_and_its_saved_copy(shaped, tmp_path):
    batches = shaped_batches(shaped)
    runner = q.inc_quantize(shaped, batches, mode="dynamic", compile=False)
    assert runner.inputs == 3 and q.max_abs_difference(shaped, runner, batches) < 0.1
    q.save_inc(runner, tmp_path / "inc")
    loaded = q.load_inc(tmp_path / "inc", compile=False)
    batch = batches[1]
    np.testing.assert_allclose(loaded(*q._arrays(batch)), runner(*q._arrays(batch)), atol=1e-5)


def test_pytorch_runner_pads_shapes_with_the_rest(shaped, tokenizer):
    encoded = ner.encode(tokenizer, [["Alice", "lives", "in", "PARIS"], ["bob"]], None, LABEL2ID, 32, 4,
                         casing="shape")
    ids, mask, types = pad_batch(encoded.features, tokenizer.pad_token_id)
    assert types.shape == ids.shape and types[1, len(encoded.features[1]["input_ids"]):].sum() == 0
    logits = predict_logits(TorchRunner(shaped), encoded.features, 2, tokenizer.pad_token_id)
    alone = TorchRunner(shaped)(*pad_batch(encoded.features[:1], tokenizer.pad_token_id))[0]
    np.testing.assert_allclose(logits[0], alone, atol=1e-5)


def test_explanations_read_the_same_shapes_as_prediction(tiny_bert, tmp_path):
    from tinynlp.explain import Explainer
    from tinynlp.heads import ModelSpec
    from tinynlp.model_dir import save_model

    model = modeling.load_classifier(str(tiny_bert), LABELS, "AutoModelForTokenClassification", seed=0)
    ner.add_shape_embeddings(model)
    with torch.no_grad():  # every word a person, more or less sure by its shape
        model.classifier.weight.mul_(0.01)
        model.classifier.bias.copy_(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0]))
        ner.shape_embeddings(model).weight.add_(torch.randn_like(ner.shape_embeddings(model).weight))
    tokenizer = modeling.load_tokenizer(str(tiny_bert))
    save_model(tmp_path / "finetune", model, tokenizer, ModelSpec("ner", LABELS, 32, casing="shape"), str(tiny_bert))
    words = ["Alice", "met", "BOB"]
    explanations = Explainer(tmp_path / "finetune", steps=16).explain(" ".join(words))
    assert [e.span for e in explanations] == [(0, 1), (1, 2), (2, 3)]
    encoded = ner.encode(tokenizer, [words], None, LABEL2ID, 32, 0, casing="shape")
    logits = TorchRunner(model)(*pad_batch(encoded.features, tokenizer.pad_token_id))[0]
    first = [encoded.window_words[0].index(w) for w in range(3)]
    probabilities = np.exp(logits[first]) / np.exp(logits[first]).sum(-1, keepdims=True)
    assert [e.score for e in explanations] == pytest.approx(probabilities[:, 1].tolist(), abs=1e-3)
    unshaped = TorchRunner(model)(*pad_batch(encoded.features, tokenizer.pad_token_id)[:2])[0]
    assert np.abs(unshaped - logits).max() > 1e-3  # the check above would miss dropped shapes otherwise
    assert all(e.delta < 0.05 for e in explanations)


def test_auto_casing_is_shapes_for_ner_on_encoders_with_token_types(tiny_bert):
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    bert = modeling.load_classifier(str(tiny_bert), LABELS, "AutoModelForTokenClassification", seed=0)
    assert ner.casing_for("auto", "ner", bert) == "shape"
    assert ner.casing_for("auto", "classification", bert) == "none"
    assert ner.casing_for("markers", "ner", bert) == "markers"
    distil = DistilBertForTokenClassification(DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=2,
                                                                hidden_dim=64, max_position_embeddings=32))
    assert ner.casing_for("auto", "ner", distil) == "none"  # no token types: auto falls back, shape is refused
