"""`predict` on a promoted artifact (ONNX + tokenizer + pipeline.json) returns entities or labels
with scores, from the API and the command line; bad input files are named by line."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cli.main import main as cli
from tinynlp import modeling, quantization
from tinynlp.errors import ConfigError
from tinynlp.heads import ModelSpec
from tinynlp.predict import Entity, Label, Predictor, entities_of, split_words
from tinynlp.tagging import bio_labels

NER_LABELS = bio_labels(["location", "person"])


def promoted(tiny_bert, directory: Path, task: str, labels: list[str]) -> Path:
    model_class = "AutoModelForTokenClassification" if task == "ner" else "AutoModelForSequenceClassification"
    model = modeling.load_classifier(str(tiny_bert), labels, model_class, seed=0)
    directory.mkdir(parents=True)
    quantization.export_onnx(model, directory / "model.onnx")
    modeling.load_tokenizer(str(tiny_bert)).save_pretrained(directory)
    spec = ModelSpec(task, labels, max_length=16, stride=4)
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


def test_ner_predictor_returns_entities_for_every_text(tiny_bert, tmp_path):
    predictor = Predictor(promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS))
    long_text = " ".join(["alice lives in paris ."] * 6)  # longer than max_length: windows, not truncation
    results = predictor.predict(["Alice lives in Paris .", "", long_text])
    assert len(results) == 3 and all(isinstance(r, list) for r in results)
    for entity in (e for r in results for e in r):
        assert isinstance(entity, Entity) and entity.type in {"location", "person"} and 0 <= entity.score <= 1
    assert all(e.end <= len(split_words(long_text)) for e in results[2])


def test_classification_predictor_returns_labels_with_scores(tiny_bert, tmp_path):
    predictor = Predictor(promoted(tiny_bert, tmp_path / "clf", "classification", ["neg", "pos"]))
    results = predictor.predict(["what a lovely day", "bad"])
    assert all(isinstance(r, Label) and r.label in {"neg", "pos"} for r in results)
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
    model = promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS)
    texts = tmp_path / "texts.txt"
    texts.write_text("Alice lives in Paris .\n\nBob met Carol .\n", encoding="utf-8")
    assert cli(["predict", "--model", str(model), "--file", str(texts), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["Alice lives in Paris .", "Bob met Carol ."]
    assert all(isinstance(line["entities"], list) for line in lines)
    texts.write_bytes(b"fine line\n\xff\xfe broken\n")
    assert cli(["predict", "--model", str(model), "--file", str(texts)]) == 3
    assert f"{texts} line 2: rule 'utf-8'" in capsys.readouterr().err


def test_streaming_in_chunks_equals_one_call(tiny_bert, tmp_path):
    predictor = Predictor(promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS))
    texts = [f"Alice met Bob in Paris {i} ." if i % 3 else "nothing happened ." for i in range(10)]
    streamed = list(predictor.stream(iter(texts), chunk=3))
    assert [text for text, _ in streamed] == texts
    assert [result for _, result in streamed] == predictor.predict(texts)


def test_http_server_predicts_and_refuses_oversized_requests(tiny_bert, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from cli import serve as serve_cli

    client = TestClient(serve_cli.build_app(promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS)))
    assert client.get("/health").json()["task"] == "ner"
    response = client.post("/predict", json={"texts": ["Alice lives in Paris .", "nothing ."]})
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Alice lives in Paris .", "nothing ."]
    assert all(isinstance(r["entities"], list) for r in response.json()["results"])
    assert client.post("/predict", json={"texts": []}).status_code == 422
    monkeypatch.setattr(serve_cli, "MAX_TEXTS", 1)
    assert client.post("/predict", json={"texts": ["a", "b"]}).status_code == 413
