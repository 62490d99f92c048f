"""Explanations: per-word attributions of the torch model behind a model directory, with the
convergence delta, for each predicted entity or the predicted label; terminal and HTML views."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli.main import main as cli
from tinynlp import modeling
from tinynlp.errors import ConfigError
from tinynlp.explain import Explainer, as_page, as_terminal, torch_source
from tinynlp.heads import ModelSpec
from tinynlp.model_dir import read_meta, save_model, write_meta

NER_LABELS = ["O", "B-location", "I-location", "B-person", "I-person"]


def stage_model(tiny_bert: Path, target: Path, task: str, labels: list[str]) -> Path:
    model_class = "AutoModelForTokenClassification" if task == "ner" else "AutoModelForSequenceClassification"
    model = modeling.load_classifier(str(tiny_bert), labels, model_class, seed=0)
    if task == "ner":  # every word a person: each word is an entity to explain
        with torch.no_grad():
            model.classifier.weight.mul_(0.01)
            model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0]))
    target.mkdir(parents=True)
    save_model(target, model, modeling.load_tokenizer(str(tiny_bert)), ModelSpec(task, labels, 32), str(tiny_bert))
    return target


def test_each_predicted_entity_is_explained_word_by_word(tiny_bert, tmp_path):
    directory = stage_model(tiny_bert, tmp_path / "finetune", "ner", NER_LABELS)
    explainer = Explainer(directory, steps=16)
    explanations = explainer.explain("Alice   met Bob")
    assert [(e.target, e.span) for e in explanations] == [("person: Alice", (0, 1)), ("person: met", (1, 2)),
                                                         ("person: Bob", (2, 3))]
    for e in explanations:
        assert e.words == ["Alice", "met", "Bob"] and len(e.attributions) == 3
        assert sum(abs(a) for a in e.attributions) == pytest.approx(1.0, abs=1e-3)
        assert e.delta < 0.05 and 0.5 < e.score <= 1
        assert explainer.score_without(e, set()) == pytest.approx(e.score, abs=1e-3)
    text = as_terminal("Alice   met Bob", explanations)
    assert "person: Alice (p=" in text and "delta" in text


def test_the_predicted_label_is_explained_and_the_page_is_self_contained(tiny_bert, tmp_path):
    directory = stage_model(tiny_bert, tmp_path / "finetune", "classification", ["no_place", "place"])
    [explanation] = Explainer(directory, steps=16).explain("I love Madrid in spring .")
    assert explanation.target in ("label: no_place", "label: place") and len(explanation.attributions) == 6
    page = as_page([("I love Madrid in spring .", [explanation])])
    assert page.startswith("<!doctype html>") and "Madrid" in page and "convergence delta" in page
    assert "http" not in page.replace("http-equiv", "") and "<script" not in page  # nothing fetched


def test_a_promoted_directory_leads_to_its_torch_source(tiny_bert, tmp_path, monkeypatch):
    source = stage_model(tiny_bert, tmp_path / "models/prune/structured", "ner", NER_LABELS)
    promoted = tmp_path / "models/promoted"
    promoted.mkdir()
    write_meta(promoted, ModelSpec("ner", NER_LABELS, 32), str(tiny_bert), variant="prune_structured_int8",
               torch_source="models/prune/structured")
    monkeypatch.chdir(tmp_path)
    assert torch_source("models/promoted") == Path("models/prune/structured") and source.is_dir()
    old = read_meta(promoted)
    old.pop("torch_source")
    (promoted / "pipeline.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=r"without `torch_source`.*dvc repro evaluate"):
        torch_source("models/promoted")


def test_explain_command_prints_writes_html_and_exits_2_without_a_model(tiny_bert, tmp_path, capsys):
    directory = stage_model(tiny_bert, tmp_path / "finetune", "ner", NER_LABELS)
    page = tmp_path / "why.html"
    assert cli(["explain", "Alice met Bob", "--model", str(directory), "--html", str(page), "--steps", "8"]) == 0
    out = capsys.readouterr().out
    assert "person: Alice" in out and page.read_text().count("<section>") == 3
    assert cli(["explain", "Alice  met Bob", "--model", str(directory), "--json", "--steps", "4"]) == 0
    record = json.loads(capsys.readouterr().out)
    first = record["explanations"][0]   # character offsets into the text as written (two spaces kept)
    assert (first["entity_group"], first["word"], first["start"], first["end"]) == ("person", "Alice", 0, 5)
    assert [a["start"] for a in first["attributions"]] == [0, 7, 11]
    assert cli(["explain", "Alice", "--model", str(tmp_path / "missing")]) == 2
    assert "not a pipeline model directory" in capsys.readouterr().err
    assert cli(["explain", "   ", "--model", str(directory)]) == 2
    assert "nothing to explain" in capsys.readouterr().err
    assert cli(["explain", "Alice " * 200, "--model", str(directory), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "text too long to explain" in err and "window of" in err
