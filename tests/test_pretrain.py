"""MLM pretraining on a tiny BERT: loss falls, the head is tied, packing and tokenizer reuse."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import TRAIN
from tasks.pretrain import run_pretrain
from tinynlp import mlm
from tinynlp.config import parse_params


def pretrain_params(workspace: Path, **changes) -> object:
    raw = yaml.safe_load((workspace / "params.yaml").read_text())
    corpus = workspace / "corpus.txt"
    corpus.write_text("\n".join(text for text, _ in TRAIN * 8) + "\n")
    raw["paths"]["corpus"] = str(corpus)
    raw["pretrain"].update({"enabled": True, "epochs": 3, "batch_size": 8, "learning_rate": 3e-3,
                            "eval_fraction": 0.2, **changes})
    return parse_params(raw)


def test_continued_pretraining_lowers_perplexity(workspace):
    metrics = run_pretrain(pretrain_params(workspace))
    assert metrics["perplexity_after"] < metrics["perplexity_before"]
    assert metrics["tokens_per_second"] > 0 and metrics["train_tokens"] > 0
    history = json.loads(Path("reports/pretrain/history.json").read_text())
    assert history[0]["epoch"] == 0 and len(history) == 4  # before training, then each epoch
    from transformers import AutoModelForMaskedLM
    model = AutoModelForMaskedLM.from_pretrained("models/pretrain")
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()


@pytest.mark.parametrize("packing", ["group_texts", "dynamic"])
def test_packing_and_whole_word_masking(workspace, packing):
    metrics = run_pretrain(pretrain_params(workspace, packing=packing, whole_word_mask=True, epochs=1))
    assert metrics["enabled"] and metrics["perplexity_after"] > 0


def test_group_texts_cuts_fixed_blocks():
    blocks = mlm.group_texts({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]}, block_size=4)
    assert blocks == {"input_ids": [[1, 2, 3, 4], [5, 6, 7, 8]]}


def test_scratch_tokenizer_is_trained_once_and_reused(workspace):
    params = pretrain_params(workspace, mode="scratch", epochs=1,
                             scratch={"vocab_size": 120, "hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64})
    first = run_pretrain(params)
    vocab = Path("models/tokenizer/tokenizer.json").read_bytes()
    stamp = Path("models/tokenizer/corpus_fingerprint.json").stat().st_mtime_ns
    second = run_pretrain(params)
    assert Path("models/tokenizer/tokenizer.json").read_bytes() == vocab
    assert Path("models/tokenizer/corpus_fingerprint.json").stat().st_mtime_ns == stamp, "tokenizer was retrained"
    assert first["parameters"] == second["parameters"]


def test_disabled_stage_passes_the_checkpoint_through(workspace, tiny_bert):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    metrics = run_pretrain(parse_params(raw))
    assert metrics == {"enabled": False, "parameters": metrics["parameters"]}
    assert Path("models/pretrain/model.safetensors").is_file() and Path("models/pretrain/tokenizer.json").is_file()


def test_masked_only_loss_equals_the_full_head_loss(tiny_bert):
    import torch
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert))
    model.eval()
    input_ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 15, 16, 3, 0]])
    labels = torch.full_like(input_ids, -100)
    labels[0, 2], labels[1, 1], labels[1, 3] = 11, 14, 16
    inputs = {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": labels}
    with torch.no_grad():
        expected = model(**inputs).loss
        loss, _ = mlm.masked_only_loss(model, inputs)
    torch.testing.assert_close(loss, expected)


def test_tokenization_logs_an_eta_and_its_cache_key_ignores_the_meter(tmp_path, tiny_bert, caplog):
    import logging

    from tinynlp import modeling

    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(text for text, _ in TRAIN * 40) + "\n")
    tokenizer = modeling.load_tokenizer(str(tiny_bert))
    corpus = mlm.load_corpus(str(corpus_file), 0.2, seed=1)
    with caplog.at_level(logging.INFO, logger="tinynlp.progress"):
        first = mlm.tokenize(corpus, tokenizer, whole_word=False)
    rows = len(corpus["train"])
    assert f"tokenize train {rows}/{rows} (100%)" in caplog.text and "texts/s, ETA 0m00s" in caplog.text
    # a second run (new meter, new counts) has the same fingerprint, so datasets reuses its cache
    again = mlm.tokenize(corpus, tokenizer, whole_word=False)
    assert again["train"]._fingerprint == first["train"]._fingerprint
    assert mlm.tokenize(corpus, tokenizer, whole_word=True)["train"]._fingerprint != first["train"]._fingerprint
