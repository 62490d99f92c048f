"""Stage `pretrain`: masked-language-model pretraining of the encoder that `finetune` starts from.

- continued: domain-adaptive MLM on the corpus from `pretrain.checkpoint` (an encoder without an
  MLM head gets one, its decoder tied to the input embeddings);
- scratch: a WordPiece tokenizer trained once on the corpus (reused while the corpus is the
  same) and a BERT of the size in `pretrain.scratch`;
- disabled: the checkpoint is loaded, checked and saved as is, so `finetune` always starts from
  `paths.pretrained` and the DAG keeps one shape.
"""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from tinynlp import distributed, mlm, modeling
from tinynlp.atomic import atomic_dir, atomic_write_json
from tinynlp.config import Params, PretrainConfig
from tinynlp.training import train
from tinynlp.fingerprints import digest
from tinynlp.training_data import train_settings

log = logging.getLogger(__name__)


def _fingerprint(params: Params, files) -> str:
    return digest(files, texts=[params.pretrain.model_dump_json()], names=False)


def _masked_lm(cfg: PretrainConfig, source: str, tokenizer):
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM, set_seed

    set_seed(cfg.seed)
    if cfg.mode == "scratch":
        s = cfg.scratch
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=s.hidden_size, num_hidden_layers=s.layers,
                            num_attention_heads=s.heads, intermediate_size=s.intermediate_size,
                            max_position_embeddings=max(512, cfg.block_size), pad_token_id=tokenizer.pad_token_id)
        return BertForMaskedLM(config)
    model = modeling.load_pretrained(AutoModelForMaskedLM, source)
    model.tie_weights()  # the new MLM decoder shares the input embedding matrix
    return model


def _tokenizer(cfg: PretrainConfig, params: Params, source: str, corpus_files, corpus):
    directory = Path(params.paths.tokenizer)
    if cfg.mode == "continued":
        tokenizer = modeling.load_tokenizer(source)
        with atomic_dir(directory) as staging:
            tokenizer.save_pretrained(staging)
        return tokenizer
    fingerprint = mlm.corpus_fingerprint(corpus_files, cfg.scratch.vocab_size)
    with distributed.main_first():  # one vocabulary for every rank: rank 0 trains it, the others reuse it
        tokenizer, _ = mlm.train_wordpiece(corpus["train"]["text"], cfg.scratch.vocab_size, directory, fingerprint)
    return tokenizer


def _pass_through(params: Params, source: str) -> dict:
    from transformers import AutoModel

    tokenizer = modeling.load_tokenizer(source)
    model = modeling.load_pretrained(AutoModel, source)
    with atomic_dir(params.paths.pretrained) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    with atomic_dir(params.paths.tokenizer) as staging:
        tokenizer.save_pretrained(staging)
    log.info("pretrain disabled: %s saved as the encoder finetune starts from", params.pretrain.checkpoint)
    metrics = {"enabled": False, "parameters": modeling.parameter_count(model)}
    reports = Path(params.paths.reports) / "pretrain"
    atomic_write_json(reports / "metrics.json", metrics)
    atomic_write_json(reports / "history.json", [])
    return metrics


def run_pretrain(params: Params) -> dict:
    cfg, paths = params.pretrain, params.paths
    modeling.set_threads()
    source = modeling.resolve_checkpoint(cfg.checkpoint)
    if not cfg.enabled:
        return _pass_through(params, source)
    files = mlm.corpus_files(paths.corpus)
    corpus = mlm.load_corpus(paths.corpus, cfg.eval_fraction, cfg.seed, cfg.max_texts)
    tokenizer = _tokenizer(cfg, params, source, files, corpus)
    tokenized = mlm.tokenize(corpus, tokenizer, cfg.whole_word_mask)
    shape = mlm.pack if cfg.packing == "group_texts" else mlm.split_long
    blocks = shape(tokenized, cfg.block_size)
    model = _masked_lm(cfg, source, tokenizer)
    log.info("pretrain (%s, %s): %d train / %d held-out blocks of up to %d tokens, %.1fM parameters", cfg.mode,
             cfg.packing, len(blocks["train"]), len(blocks["test"]), cfg.block_size, modeling.parameter_count(model) / 1e6)
    settings = train_settings(cfg, Path(paths.checkpoints) / "pretrain" / _fingerprint(params, files), "loss",
                              params.execution, lr_scheduler="linear", gradient_accumulation=1,
                              greater_is_better=False, eval_on_start=True)
    result = train(model, blocks["train"], blocks["test"],
                   mlm.collator(tokenizer, cfg.mlm_probability, cfg.whole_word_mask, cfg.seed), None, settings,
                   loss_fn=mlm.masked_only_loss)
    with atomic_dir(paths.pretrained) as staging:
        result.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    shutil.rmtree(settings.output_dir, ignore_errors=True)
    history = [{**row, "dev_perplexity": round(math.exp(row["dev_loss"]), 4)} for row in result.history if "dev_loss" in row]
    # dvc plots reads the fields of the first row: the epoch-0 point (before training) has no train loss
    shared = set.intersection(*(set(row) for row in history))
    history = [{k: v for k, v in row.items() if k in shared} for row in history]
    metrics = {"enabled": True, "mode": cfg.mode, "perplexity_before": history[0]["dev_perplexity"],
               "perplexity_after": round(math.exp(result.best_metric), 4), "train_tokens": result.tokens_seen,
               "tokens_per_second": round(result.tokens_seen / result.seconds, 1), "train_seconds": round(result.seconds, 1),
               "parameters": modeling.parameter_count(result.model)}
    reports = Path(paths.reports) / "pretrain"
    atomic_write_json(reports / "history.json", history)
    atomic_write_json(reports / "metrics.json", metrics)
    log.info("pretrain: held-out perplexity %.2f -> %.2f, %.0f tokens/s", metrics["perplexity_before"],
             metrics["perplexity_after"], metrics["tokens_per_second"])
    return metrics
