"""Masked-language-model pretraining data: corpus reading, tokenization with `datasets.map`
(cached on disk), packing into fixed blocks (`group_texts`) or dynamic padding, the masking
collator, and from-scratch WordPiece tokenizer training."""
from __future__ import annotations

import hashlib
import json
import logging
from itertools import chain
from pathlib import Path
from typing import Iterable, Sequence

from tinynlp import progress

log = logging.getLogger(__name__)
TOKENIZER_STAMP = "corpus_fingerprint.json"


def corpus_files(location: str) -> list[Path]:
    """A .txt file, a directory of .txt files, or a validated-split directory (train.parquet)."""
    path = Path(location)
    if path.is_dir() and (path / "train.parquet").is_file():
        return [path / "train.parquet"]
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"{location}: no *.txt files")
        return files
    return [path]


def load_corpus(location: str, eval_fraction: float, seed: int, max_texts: int = 0):
    """Texts as a `datasets.DatasetDict` with train / eval (held-out) splits, one text per row."""
    import datasets

    files = corpus_files(location)
    if files[0].suffix == ".parquet":
        raw = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
        column = "tokens" if "tokens" in raw.column_names else "text"
        raw = raw.map(lambda b: {"text": [" ".join(t) if isinstance(t, list) else t for t in b[column]]},
                      batched=True, remove_columns=raw.column_names, desc="corpus text")
    else:
        raw = datasets.load_dataset("text", data_files=[str(f) for f in files], split="train")
    raw = raw.filter(lambda b: [bool(t.strip()) for t in b["text"]], batched=True, desc="drop blank lines")
    if max_texts:
        raw = raw.select(range(min(max_texts, len(raw))))
    return raw.train_test_split(test_size=eval_fraction, seed=seed, shuffle=True)


class _Encode:
    """The tokenizing function handed to `datasets.map`, counting rows into a progress meter (an
    ETA in the log, where the progress bar is off). The meter is left out of its pickled state,
    which is what `datasets` hashes for the cache: the cache key stays the tokenizer and options."""

    def __init__(self, tokenizer, whole_word: bool, meter: progress.Meter):
        self.tokenizer, self.whole_word, self.meter = tokenizer, whole_word, meter

    def __getstate__(self) -> dict:
        return {"tokenizer": self.tokenizer, "whole_word": self.whole_word}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, meter=None)

    def __call__(self, batch: dict) -> dict:
        encoded = self.tokenizer(batch["text"], return_special_tokens_mask=True,
                                 return_offsets_mapping=self.whole_word, truncation=False, verbose=False)
        if self.meter is not None:
            self.meter.advance(len(batch["text"]))
        return encoded


def tokenize(corpus, tokenizer, whole_word: bool):
    """Tokenize without truncation; `datasets` caches the result keyed on the tokenizer."""
    import datasets

    return datasets.DatasetDict({
        name: split.map(_Encode(tokenizer, whole_word, progress.Meter(len(split), f"tokenize {name}", "texts")),
                        batched=True, remove_columns=["text"], desc=f"tokenize {name}")
        for name, split in corpus.items()})


def group_texts(examples: dict, block_size: int) -> dict:
    """Concatenate then cut into blocks of `block_size`: no padding at all (run_mlm's packing)."""
    joined = {k: list(chain.from_iterable(examples[k])) for k in examples}
    total = (len(joined["input_ids"]) // block_size) * block_size
    return {k: [v[i:i + block_size] for i in range(0, total, block_size)] for k, v in joined.items()}


def pack(tokenized, block_size: int):
    return tokenized.map(group_texts, batched=True, fn_kwargs={"block_size": block_size}, desc="group_texts")


def split_long(tokenized, block_size: int):
    """Dynamic padding keeps each text whole up to `block_size`; longer ones become several rows."""
    def chunk(examples):
        out = {k: [] for k in examples}
        for row in range(len(examples["input_ids"])):
            for start in range(0, len(examples["input_ids"][row]), block_size):
                for key in examples:
                    out[key].append(examples[key][row][start:start + block_size])
        return out
    return tokenized.map(chunk, batched=True, desc="split long texts")


def collator(tokenizer, probability: float, whole_word: bool, seed: int):
    """15% of tokens (by default) chosen; of those 80% [MASK], 10% random, 10% unchanged."""
    from transformers import DataCollatorForLanguageModeling

    masking = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=probability,
                                              whole_word_mask=whole_word, mask_replace_prob=0.8,
                                              random_replace_prob=0.0 if whole_word else 0.1, seed=seed)
    if not whole_word:
        return masking

    def pad_offsets_then_mask(features: list[dict]):
        # Whole-word masking reads word boundaries from offsets, which the tokenizer's pad()
        # leaves ragged under dynamic padding: pad them with empty spans first.
        width = max(len(f["input_ids"]) for f in features)
        return masking([{**f, "offset_mapping": list(f["offset_mapping"]) + [[0, 0]] * (width - len(f["offset_mapping"]))}
                        for f in features])
    return pad_offsets_then_mask


def masked_only_loss(model, inputs: dict):
    """MLM loss computed on the masked positions only. The stock head projects every position
    onto the whole vocabulary (30k x hidden per token) although only ~15% carry a label; on a
    CPU that projection dominates the step. Same loss, a fraction of the work."""
    import torch.nn.functional as F

    head = getattr(model, "cls", None)
    if head is None:  # not a BERT-style head: fall back to the model's own loss
        outputs = model(**inputs)
        return outputs.loss, outputs
    labels = inputs["labels"]
    hidden = model.base_model(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state
    chosen = labels != -100
    if not chosen.any():  # a short batch may draw no mask at all: no loss, not a NaN mean over nothing
        loss = hidden.sum() * 0.0  # zero, still attached to the graph (DDP expects every rank's gradients)
        return loss, {"loss": loss}
    logits = head(hidden[chosen])
    loss = F.cross_entropy(logits, labels[chosen])
    return loss, {"loss": loss}


def corpus_fingerprint(files: Sequence[Path], vocab_size: int) -> str:
    digest = hashlib.sha256(str(vocab_size).encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def train_wordpiece(texts: Iterable[str], vocab_size: int, directory: Path, fingerprint: str, lowercase: bool = True):
    """Train a BERT WordPiece tokenizer, or reuse the one already trained on the same corpus:
    tokenizer training is not reproducible across processes, and a new one would invalidate
    every cached step after it."""
    from transformers import BertTokenizerFast

    stamp = directory / TOKENIZER_STAMP
    if stamp.is_file() and json.loads(stamp.read_text())["fingerprint"] == fingerprint:
        log.info("reusing tokenizer trained on the same corpus: %s", directory)
        return BertTokenizerFast.from_pretrained(str(directory)), False
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=lowercase)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    vocab = sorted(trainer.get_vocab().items(), key=lambda kv: kv[1])
    tokenizer = BertTokenizerFast(vocab={token: index for token, index in vocab}, do_lower_case=lowercase)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "vocab_size": len(vocab)}))
    log.info("trained a WordPiece tokenizer (%d entries) on the corpus", len(vocab))
    return tokenizer, True
