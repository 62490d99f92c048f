"""params.yaml is rejected before any work starts, with a message naming the key."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from tinynlp.config import load_params, parse_params
from tinynlp.errors import ConfigError

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(section: str, key: str, value) -> dict:
    raw = copy.deepcopy(DEFAULTS)
    raw[section][key] = value
    return raw


def test_shipped_params_are_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    params = load_params()
    assert params.ingest.task == "ner" and params.finetune.epochs >= 1


@pytest.mark.parametrize("section,key,value,expected", [
    ("finetune", "lerning_rate", 0.1, "finetune.lerning_rate: unknown key"),
    ("finetune", "epochs", "three", "finetune.epochs"),
    ("finetune", "learning_rate", -1e-5, "finetune.learning_rate: Input should be greater than 0"),
    ("ingest", "format", "xml", "ingest.format"),
    ("ingest", "max_overlap", 1.5, "ingest.max_overlap"),
    ("evaluate", "batch_size", 0, "evaluate.batch_size"),
    ("serve", "max_texts", 0, "serve.max_texts"),
    ("serve", "timeout_s", -1, "serve.timeout_s"),
    ("serve", "model_batch", 0, "serve.model_batch"),
])
def test_bad_values_name_the_key(section, key, value, expected):
    with pytest.raises(ConfigError) as error:
        parse_params(with_change(section, key, value), check_files=False)
    assert expected in str(error.value)


@pytest.mark.parametrize("key, value, message", [
    ("decoding", "viterbi", "finetune.decoding: viterbi .* NER only"),
    ("casing", "markers", "finetune.casing: markers .* NER only"),
    ("casing", "shape", "finetune.casing: shape .* NER only"),
    ("context", {"tokens": 64}, "finetune.context.tokens: document context is for NER"),
    ("shape_dropout", 0.1, "finetune.shape_dropout: 0.1 hides word shapes.*ingest.task: classification"),
])
def test_ner_only_options_are_refused_for_classification(key, value, message):
    raw = copy.deepcopy(DEFAULTS)
    raw["ingest"].update(task="classification", format="tsv", entity_types=[])
    raw["finetune"][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_params(raw, check_files=False)


def test_auto_casing_is_accepted_for_classification():
    raw = copy.deepcopy(DEFAULTS)
    raw["ingest"].update(task="classification", format="tsv", entity_types=[])
    raw["finetune"]["casing"] = "auto"
    assert parse_params(raw, check_files=False).finetune.casing == "auto"


@pytest.mark.parametrize("casing", ["none", "markers"])
def test_shape_dropout_without_shapes_is_refused(casing):
    raw = copy.deepcopy(DEFAULTS)
    raw["finetune"].update(casing=casing, shape_dropout=0.1)
    with pytest.raises(ConfigError, match=f"finetune.shape_dropout.*casing: {casing}"):
        parse_params(raw, check_files=False)
    raw["finetune"]["shape_dropout"] = 1.0  # every sentence hidden would train a model without shapes
    raw["finetune"]["casing"] = "shape"
    with pytest.raises(ConfigError, match="finetune.shape_dropout"):
        parse_params(raw, check_files=False)


def test_unknown_section_is_rejected():
    raw = copy.deepcopy(DEFAULTS)
    raw["finetuen"] = {}
    with pytest.raises(ConfigError, match="finetuen: unknown key"):
        parse_params(raw, check_files=False)


def test_string_scientific_notation_is_read_as_float():
    # PyYAML reads `5e-5` (no dot) as a string; it must still mean 0.00005.
    params = parse_params(with_change("finetune", "learning_rate", "5e-5"), check_files=False)
    assert params.finetune.learning_rate == pytest.approx(5e-5)


def test_config_is_frozen():
    from pydantic import ValidationError

    params = parse_params(DEFAULTS, check_files=False)
    with pytest.raises(ValidationError, match=r"FinetuneConfig\nepochs\n  Instance is frozen"):
        params.finetune.epochs = 99
    with pytest.raises(ValidationError, match=r"Params\nfinetune\n  Instance is frozen"):
        params.finetune = None
    assert params.finetune.epochs == DEFAULTS["finetune"]["epochs"]


def test_missing_input_file_names_the_key(tmp_path):
    raw = copy.deepcopy(DEFAULTS)
    raw["paths"]["train"] = str(tmp_path / "nope.conll")
    with pytest.raises(ConfigError, match=r"paths.train: file not found: .*nope.conll"):
        parse_params(raw)


def test_directory_where_a_file_is_expected(tmp_path):
    raw = copy.deepcopy(DEFAULTS)
    raw["paths"]["dev"] = str(tmp_path)
    with pytest.raises(ConfigError, match="paths.dev: expected a file, found a directory"):
        parse_params(raw)


def test_dev_fraction_and_the_dev_path_must_agree():
    carving = with_change("ingest", "dev_fraction", 0.1)
    with pytest.raises(ConfigError, match=r"dev_fraction 0.1 carves dev out of train: set paths.dev to the train split"):
        parse_params(carving, check_files=False)
    carving["paths"]["dev"] = carving["paths"]["train"]
    assert parse_params(carving, check_files=False).ingest.dev_fraction == 0.1
    same_file = copy.deepcopy(DEFAULTS)
    same_file["paths"]["dev"] = same_file["paths"]["train"]
    with pytest.raises(ConfigError, match="paths.dev is the train split: dev would be training data"):
        parse_params(same_file, check_files=False)


def test_format_must_fit_task():
    raw = with_change("ingest", "format", "tsv")
    with pytest.raises(ConfigError, match="cannot hold NER data"):
        parse_params(raw, check_files=False)


def test_stage_command_exits_2_on_bad_params(tmp_path):
    bad = with_change("finetune", "learning_rate", -1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "tasks", "ingest", "--params", str(tmp_path / "params.yaml")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "finetune.learning_rate" in result.stderr


def test_pretrain_corpus_may_be_the_ingest_output_before_it_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = copy.deepcopy(DEFAULTS)
    raw["pretrain"]["enabled"] = True
    raw["paths"].update(ingested=str(tmp_path / "not-yet"), corpus=str(tmp_path / "not-yet"),
                        allow_outside=[str(tmp_path)])
    assert parse_params(raw).pretrain.enabled
    raw["paths"]["corpus"] = str(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="paths.corpus: not found"):
        parse_params(raw)


def test_errors_point_at_the_line_of_the_key(tmp_path):
    """Problems name the line the key was written on; a missing key or a section-level rule points
    at its section; a key written twice in one mapping is refused (YAML would keep the last)."""
    path = tmp_path / "params.yaml"
    path.write_text("paths:\n  train: a.conll\n\n# tuning\nfinetune:\n  epochs: 3\n  learnig_rate: 0.1\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_params(path, check_files=False)
    message = str(error.value)
    assert "finetune.learnig_rate: unknown key (line 7)" in message
    assert "paths.dev: required key is missing (line 1)" in message

    path.write_text("paths:\n  train: a.conll\nfinetune:\n  epochs: 3\n  seed: 1\n  epochs: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params\.yaml:6: finetune\.epochs: duplicate key \(first written at "
                                          r"line 4\)"):
        load_params(path, check_files=False)


def test_shipped_params_have_no_key_twice():
    from tinynlp.config import key_lines

    lines = key_lines((ROOT / "params.yaml").read_text(encoding="utf-8"), "params.yaml")
    assert lines[("finetune",)] < lines[("finetune", "epochs")]


@pytest.mark.parametrize("url", ["https://ci:hunter2@dvc.example.com/store",
                                 "s3://bucket/path?secret_access_key=abc"])
def test_credentials_in_the_remote_url_are_refused(url):
    with pytest.raises(ConfigError) as error:
        parse_params(with_change("retrain", "remote_url", url), check_files=False)
    assert "retrain: Value error, remote_url must not carry credentials" in str(error.value)
    assert "hunter2" not in str(error.value) and "abc" not in str(error.value)


@pytest.mark.parametrize("profile", ["params.yaml", *sorted(str(p.relative_to(ROOT))
                                                           for p in (ROOT / "examples/params").glob("*.yaml"))])
def test_every_param_dvc_tracks_is_written_in_each_profile(profile):
    """`dvc repro` refuses a params file missing a key that dvc.yaml lists or interpolates (`${x.y}`,
    in a stage or in `artifacts:`); a profile copied over params.yaml (README) must therefore spell
    out every one, defaults included."""
    import re

    raw = yaml.safe_load((ROOT / profile).read_text(encoding="utf-8"))
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    stages = yaml.safe_load(text)["stages"]
    listed = [k for stage in stages.values() for entry in stage.get("params", [])
              for k in ([entry] if isinstance(entry, str) else [])]
    missing = []
    for key in (*listed, *re.findall(r"\$\{([A-Za-z0-9_.]+)\}", text)):
        node = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            missing.append(key)
    assert not missing, f"{profile} lacks {sorted(set(missing))}"


def test_a_transfer_corpus_must_be_new_text():
    raw = copy.deepcopy(DEFAULTS)
    raw["distill"]["transfer"] = {"augmented_copies": 0, "corpus_texts": 100}
    with pytest.raises(ConfigError, match="distill.transfer.corpus_texts: paths.corpus is the validated splits"):
        parse_params(raw, check_files=False)
