"""`predict` on a promoted artifact (ONNX + tokenizer + pipeline.json) returns entities or labels
with scores, from the API and the command line; bad input files are named by line."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main as cli
from tinynlp import modeling, quantization
from tinynlp.errors import ConfigError
from tinynlp.heads import ModelSpec
from tinynlp.predict import Entity, Label, Predictor, entities_of, split_words
from tinynlp.tagging import bio_labels

NER_LABELS = bio_labels(["location", "person"])


def promoted(tiny_bert, directory: Path, task: str, labels: list[str], favour: str | None = None,
             **spec_settings) -> Path:
    """A promoted-model folder from the tiny BERT. `favour`: the head always predicts that label
    (zero weights, a bias of 5 on it), so what the predictor returns is known exactly."""
    import torch

    model_class = "AutoModelForTokenClassification" if task == "ner" else "AutoModelForSequenceClassification"
    model = modeling.load_classifier(str(tiny_bert), labels, model_class, seed=0)
    if favour is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.zero_()
            model.classifier.bias[labels.index(favour)] = 5.0
    directory.mkdir(parents=True)
    quantization.export_onnx(model, directory / "model.onnx")
    modeling.load_tokenizer(str(tiny_bert)).save_pretrained(directory)
    spec = ModelSpec(task, labels, **{"max_length": 16, "stride": 4, **spec_settings})
    (directory / "pipeline.json").write_text(json.dumps({**dataclasses.asdict(spec), "variant": "test"}))
    return directory


def test_words_keep_mentions_urls_and_split_punctuation():
    assert split_words("@bob went to New-York, see https://x.io/a?b #fun!") == \
        ["@bob", "went", "to", "New-York", ",", "see", "https://x.io/a?b", "#fun", "!"]


def test_entities_are_chunked_from_bio_tags_with_mean_scores():
    import numpy as np

    found = entities_of(["Alice", "Smith", "in", "Paris"], ["B-person", "I-person", "O", "B-location"],
                        np.array([0.9, 0.7, 0.99, 0.6]))
    assert found == [Entity("Alice Smith", "person", 0, 2, 0.8), Entity("Paris", "location", 3, 4, 0.6)]


# the probability of the favoured label: a logit of 5 against 0 for the other labels
FAVOURED_NER = round(float(np.exp(5) / (np.exp(5) + len(NER_LABELS) - 1)), 4)


def test_ner_predictor_returns_entities_for_every_text(tiny_bert, tmp_path):
    """Every word tagged B-location: one single-word entity per word, in every window of a long text."""
    predictor = Predictor(promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-location"))
    long_text = " ".join(["alice lives in paris ."] * 6)  # longer than max_length: windows, not truncation
    results = predictor.predict(["Alice lives in Paris .", "", long_text])
    assert len(results) == 3 and all(isinstance(e, Entity) for r in results for e in r)
    assert [(e.text, e.type, e.start, e.end) for e in results[0]] == [
        (word, "location", i, i + 1) for i, word in enumerate(["Alice", "lives", "in", "Paris", "."])]
    assert results[1] == []
    words = split_words(long_text)
    assert len(words) == 30 and [(e.text, e.start, e.end) for e in results[2]] == [
        (word, i, i + 1) for i, word in enumerate(words)], "each word once, whichever window it fell in"
    assert all(e.score == pytest.approx(FAVOURED_NER, abs=2e-4) for e in results[0])
    # a word in two overlapping windows sums their logits (10 against 0): more confident, never less
    assert all(e.score >= FAVOURED_NER - 2e-4 for e in results[2]) and max(e.score for e in results[2]) > 0.999


def test_classification_predictor_returns_labels_with_scores(tiny_bert, tmp_path):
    predictor = Predictor(promoted(tiny_bert, tmp_path / "clf", "classification", ["neg", "pos"], favour="pos"))
    results = predictor.predict(["what a lovely day", "bad"])
    assert len(results) == 2 and all(isinstance(r, Label) for r in results)
    positive = float(np.exp(5) / (np.exp(5) + 1))
    assert [r.label for r in results] == ["pos", "pos"]
    assert all(r.score == pytest.approx(positive, abs=2e-4) and set(r.scores) == {"neg", "pos"} for r in results)
    assert all(sum(r.scores.values()) == pytest.approx(1, abs=1e-3) for r in results)


def test_missing_promoted_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a promoted model"):
        Predictor(tmp_path)


def test_promoted_model_without_its_vocabulary_is_refused(tiny_bert, tmp_path):
    """tokenizer_config.json alone loads as a tokenizer of special tokens: every word would be [UNK]."""
    directory = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS)
    for vocabulary in ("tokenizer.json", "vocab.txt"):
        (directory / vocabulary).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match=r"ner: no tokenizer files .*only \['tokenizer_config\.json'"):
        Predictor(directory)


def test_cli_prints_json_and_names_bad_lines(tiny_bert, tmp_path, capsys):
    model = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-person")
    texts = tmp_path / "texts.txt"
    texts.write_text("Alice lives in Paris .\n\nBob met Carol .\n", encoding="utf-8")
    assert cli(["predict", "--model", str(model), "--file", str(texts), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["Alice lives in Paris .", "Bob met Carol ."]
    assert [[(e["word"], e["entity_group"], e["word_start"]) for e in line["entities"]] for line in lines] == [
        [(w, "person", i) for i, w in enumerate(line["text"].split())] for line in lines]
    first = lines[0]["entities"][3]   # Hugging Face pipeline field names: character offsets into the text
    assert (first["start"], first["end"], first["word_end"]) == (15, 20, 4)
    assert lines[0]["text"][first["start"]:first["end"]] == first["word"] == "Paris"
    texts.write_bytes(b"fine line\n\xff\xfe broken\n")
    assert cli(["predict", "--model", str(model), "--file", str(texts)]) == 3
    assert f"{texts} line 2: rule 'utf-8'" in capsys.readouterr().err


def test_cli_exits_2_on_a_missing_input_file_or_model(tiny_bert, tmp_path, capsys):
    model = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS)
    missing = tmp_path / "missing.txt"
    assert cli(["predict", "--model", str(model), "--file", str(missing)]) == 2
    assert f"tinynlp predict: {missing}: file not found" in capsys.readouterr().err
    assert cli(["predict", "--model", str(tmp_path / "no-model"), "Alice lives in Paris ."]) == 2
    assert f"tinynlp predict: {tmp_path / 'no-model'}: not a promoted model" in capsys.readouterr().err
    assert cli(["predict", "--model", str(model)]) == 2
    assert "give texts as arguments or --file" in capsys.readouterr().err


def test_streaming_in_chunks_equals_one_call(tiny_bert, tmp_path):
    predictor = Predictor(promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-person"))
    texts = [f"Alice met Bob in Paris {i} ." if i % 3 else "nothing happened ." for i in range(10)]
    streamed = list(predictor.stream(iter(texts), chunk=3))
    assert [text for text, _ in streamed] == texts
    assert [[e.text for e in result] for _, result in streamed] == [split_words(text) for text in texts]
    assert [result for _, result in streamed] == predictor.predict(texts)


def test_http_server_predicts_and_refuses_oversized_requests(tiny_bert, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from cli import serve as serve_cli

    client = TestClient(serve_cli.build_app(promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS,
                                                     favour="B-location")))
    assert client.get("/health").json()["task"] == "ner"
    response = client.post("/predict", json={"texts": ["Alice lives in Paris .", "nothing ."]})
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Alice lives in Paris .", "nothing ."]
    assert [[(e["word"], e["entity_group"]) for e in r["entities"]] for r in response.json()["results"]] == [
        [(w, "location") for w in ("Alice", "lives", "in", "Paris", ".")], [("nothing", "location"), (".", "location")]]
    assert client.post("/predict", json={"texts": []}).status_code == 422


def test_entities_carry_character_offsets_into_the_raw_text():
    text = "Dr. Alice  Smith moved to New York City, in 2020 ."
    words = split_words(text)
    tags = ["O" if w not in {"Alice", "Smith", "New", "York", "City"} else "I-x" for w in words]
    tags[words.index("Alice")], tags[words.index("New")] = "B-person", "B-location"
    tags = [t.replace("I-x", "I-person") if i <= words.index("Smith") else t.replace("I-x", "I-location")
            for i, t in enumerate(tags)]
    found = entities_of(words, tags, np.full(len(words), 0.9), text)
    assert [(e.type, e.text, e.char_start, e.char_end) for e in found] == [
        ("person", "Alice  Smith", 4, 16), ("location", "New York City", 26, 39)]
    assert all(text[e.char_start:e.char_end] == e.text for e in found)
    # without the raw text (pre-split words, as the drift check passes them): no offsets
    assert [(e.text, e.char_start) for e in entities_of(words, tags, np.full(len(words), 0.9))] == [
        ("Alice Smith", None), ("New York City", None)]


def test_a_corrupt_card_or_lineage_file_never_stops_serving(tiny_bert, tmp_path):
    """The card and the lineage record are for people and registries: serving reads neither."""
    from fastapi.testclient import TestClient

    from cli import serve as serve_cli

    model = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-person")
    for name in ("card.json", "lineage.json", "README.md"):
        (model / name).write_bytes(b"\xff{ not json ---")
    assert [e.text for e in Predictor(model).predict(["Alice ."])[0]] == ["Alice", "."]
    client = TestClient(serve_cli.build_app(model))
    assert client.get("/health").status_code == 200
    assert client.post("/predict", json={"texts": ["Alice ."]}).status_code == 200


def test_redact_pii_masks_personal_data_in_texts_and_entities_at_their_own_length(tiny_bert, tmp_path, capsys):
    model = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-person")
    text = "mail john.smith@example.com or call +44 20 7946 0958 , Alice"
    [(plain_text, plain)] = Predictor(model).outputs([text])
    assert plain_text == text and "@example" in [e.text for e in plain]
    [(masked_text, masked)] = Predictor(model, redact_pii=True).outputs([text])
    # as in reports: an e-mail keeps its first letters and domain ending, a long number its last four
    assert masked_text == "mail j*********@e******.com or call +***********0958 , Alice"
    assert len(masked_text) == len(text) and "Alice" in masked_text
    assert all(masked_text[e.char_start:e.char_end] == e.text for e in masked)  # offsets still point at the words
    assert not any(secret in e.text for e in masked for secret in ("john", "smith", "example", "7946"))
    assert [e.type for e in masked] == [e.type for e in plain]  # the predictions themselves are unchanged
    assert cli(["predict", "--model", str(model), "--redact-pii", "--json", text]) == 0
    out = capsys.readouterr().out
    assert "john" not in out and "7946" not in out and json.loads(out)["text"] == masked_text


def test_the_server_never_logs_or_echoes_request_text(tiny_bert, tmp_path, monkeypatch, caplog):
    import logging

    from fastapi.testclient import TestClient

    from cli import serve as serve_cli

    secret = "jane.doe@private-mail.org"
    caplog.set_level(logging.DEBUG)
    model = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-person")
    client = TestClient(serve_cli.build_app(model, redact_pii=True))
    answered = client.post("/predict", json={"texts": [f"write to {secret} today"]})
    assert answered.status_code == 200 and "jane" not in answered.text and "private" not in answered.text
    invalid = client.post("/predict", json={"texts": secret})   # a string, not a list: FastAPI would quote it
    assert invalid.status_code == 422 and secret not in invalid.text and "list of strings" in invalid.json()["detail"]

    def broken(texts):
        raise ValueError(f"cannot read {texts[0]}")

    monkeypatch.setattr(Predictor, "served", lambda self, texts, documents=None: broken(texts))
    failed = TestClient(serve_cli.build_app(model)).post("/predict", json={"texts": [secret]})
    assert failed.status_code == 500 and "ValueError" in failed.text and secret not in failed.text
    assert "ValueError" in caplog.text and secret not in caplog.text and "jane" not in caplog.text


def test_sentences_end_at_stops_and_runs_of_them_stay_together():
    from tinynlp.predict import sentence_spans

    assert sentence_spans(["a", "b", ".", "c", "!", "?", "d"]) == [(0, 3), (3, 6), (6, 7)]
    assert sentence_spans([]) == [] and sentence_spans(["a"]) == [(0, 1)]


def test_a_document_context_model_reads_each_sentence_with_its_neighbours(tiny_bert, tmp_path):
    """A text is tagged sentence by sentence with the rest of it as context; texts given one
    document id are read together; a model trained without context ignores document ids."""
    context = Predictor(promoted(tiny_bert, tmp_path / "context", "ner", NER_LABELS, max_length=32, context=8))
    words = split_words("alice lives in paris . bob wrote")
    (tags, scores), = context.tag_texts([words])
    parts = context.tag_words([words[:5], words[5:]], documents=[0, 0])
    assert tags == parts[0][0] + parts[1][0]
    assert np.allclose(scores, np.concatenate([parts[0][1], parts[1][1]]))
    texts = ["alice lives in paris .", "bob wrote ."]
    alone, together = context.predict_detailed(texts), context.predict_detailed(texts, documents=[7, 7])
    assert [s.confidence for _, s in alone] != [s.confidence for _, s in together]
    assert context.predict_detailed(texts, documents=[7, None]) == alone  # different documents: no shared context
    plain = Predictor(promoted(tiny_bert, tmp_path / "plain", "ner", NER_LABELS, max_length=32))
    assert plain.predict_detailed(texts, documents=[7, 7]) == plain.predict_detailed(texts)
