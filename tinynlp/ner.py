"""Token classification data: subword encoding with first-subtoken labels and sliding windows
(long sentences are split, never truncated), word-level decoding and seqeval entity scores."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from tinynlp.tagging import bio_constraints

IGNORE = -100  # label id the loss skips (continuation subtokens, special tokens)

# What an uncased tokenizer loses of a word: digits and punctuation survive lower-casing, so only
# these shapes get a marker token before the word; lower-case and caseless words get none.
CASE_MARKERS = {"title": "[TITLE]", "upper": "[UPPER]", "mixed": "[MIXED]"}
# `casing: shape`: each subtoken's token-type id is its word's shape (1 + index here); 0 is the
# special tokens' and padding's, the checkpoint's own row, so a fresh table changes nothing
WORD_SHAPES = ("lower", "title", "upper", "mixed", "digits", "other")


@dataclass(frozen=True)
class Encoded:
    """Model inputs, one row per window, plus the map from window positions back to words."""

    features: list[dict]          # input_ids, attention_mask, labels per window
    window_sentence: list[int]    # which sentence each window came from
    window_words: list[list[int]]  # per position: word index if first subtoken in window, else -1
    words_per_sentence: list[int]


def word_case(word: str) -> str | None:
    """`title` (Paris, I), `upper` (NASA), `mixed` (iPhone, McDonald) or None (lower-case or no letters)."""
    letters = [c for c in word if c.isalpha()]
    if not letters or word == word.lower():
        return None
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "title"
    return "upper" if all(c.isupper() for c in letters) else "mixed"


@functools.lru_cache(maxsize=1 << 16)  # served traffic repeats its words; bounded memory
def word_shape(word: str) -> str:
    """One of WORD_SHAPES: the case of a word with letters, else digits or other (punctuation, symbols)."""
    case = word_case(word)
    if case is not None:
        return case
    if any(c.isalpha() for c in word):
        return "lower"
    return "digits" if any(c.isdigit() for c in word) else "other"


def shape_type_ids(words: Sequence[str], word_ids: Sequence[int | None]) -> list[int]:
    """Token-type ids for `casing: shape`: each subtoken gets its word's shape; special tokens 0."""
    ids = {w: 1 + WORD_SHAPES.index(word_shape(words[w])) for w in set(word_ids) if w is not None}
    return [0 if w is None else ids[w] for w in word_ids]


def loses_case(tokenizer) -> bool:
    """Whether the tokenizer lower-cases (an uncased checkpoint), so case reaches the model only
    through markers or shapes."""
    return tokenizer.tokenize("Paris") == tokenizer.tokenize("paris")


def add_case_markers(tokenizer, model=None) -> bool:
    """Give the tokenizer (and the model's input embeddings) the case-marker tokens; the new rows
    start at the mean of the old ones and are learnt in fine-tuning. False when the tokenizer keeps
    case already (a cased checkpoint): the markers are then redundant, though harmless."""
    tokenizer.add_tokens(list(CASE_MARKERS.values()), special_tokens=True)
    if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return loses_case(tokenizer)


def add_shape_embeddings(model) -> None:
    """`casing: shape`: the token-type table becomes one row per word shape (WORD_SHAPES, plus row 0
    for special tokens), every row a copy of the checkpoint's row 0, so training starts from the
    unchanged checkpoint and learns what each shape adds to a word's embedding. The exported graph
    then takes token_type_ids as an input."""
    import torch

    table = shape_embeddings(model)
    rows = len(WORD_SHAPES) + 1
    if table.num_embeddings != rows:
        grown = torch.nn.Embedding(rows, table.embedding_dim, dtype=table.weight.dtype, device=table.weight.device)
        with torch.no_grad():
            grown.weight.copy_(table.weight[:1].expand(rows, -1))
        model.base_model.embeddings.token_type_embeddings = grown
        model.config.type_vocab_size = rows
    model.config.word_shapes = list(WORD_SHAPES)


@contextmanager
def hidden_shapes(model, rate: float):
    """While training, each sentence's word shapes are hidden (token types all 0, what a plain
    pipeline such as Optimum's feeds) with probability `rate`, drawn per sentence and step from
    torch's seeded generator, so the model also learns to tag without them. Evaluation, export and
    inference (the module in eval mode) always see the shapes."""
    import torch

    if rate <= 0:
        yield
        return

    def hide(module, inputs):
        if not module.training:
            return None
        ids = inputs[0]
        kept = torch.rand(ids.shape[0], *([1] * (ids.dim() - 1)), device=ids.device) >= rate
        return (ids * kept,)

    handle = shape_embeddings(model).register_forward_pre_hook(hide)
    try:
        yield
    finally:
        handle.remove()


def shape_embeddings(model):
    """The encoder's token-type table (a PEFT wrapper is looked through); ConfigError if it has none."""
    from tinynlp.errors import ConfigError

    table = _token_type_table(model)
    if table is None:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        raise ConfigError(f"finetune.casing: shape learns word shapes in the encoder's token-type embeddings, and "
                          f"{type(inner.base_model).__name__} has none (BERT-style encoders do); use casing: markers "
                          "or none")
    return table


def _token_type_table(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(inner.base_model, "embeddings", None), "token_type_embeddings", None)


def casing_for(setting: str, task: str, model) -> str:
    """The casing a run uses: `auto` is word shapes for NER where the encoder has token-type
    embeddings (measured: +1.6 test F1 on WikiGold, 3 seeds), else none."""
    if setting != "auto":
        return setting
    return "shape" if task == "ner" and _token_type_table(model) is not None else "none"


def shape_dropout_of(config) -> float:
    """The share of sentences whose shapes were hidden when the model was fine-tuned, from its
    config (finetune records it there), which later training (prune's recovery) keeps and the card
    reports; 0 for a model without shapes."""
    return float(getattr(config, "shape_dropout", 0.0) or 0.0) if getattr(config, "word_shapes", None) else 0.0


def uses_word_shapes(model) -> bool:
    """Whether the model was fine-tuned with `casing: shape` (its graph takes token_type_ids)."""
    return bool(getattr(getattr(model, "config", None), "word_shapes", None))


def model_words(words: Sequence[str], casing: str = "none") -> tuple[list[str], list[int]]:
    """The words the tokenizer is given and, for each, the index of the sentence word it stands for
    (-1: a case marker, which is never labelled or decoded)."""
    if casing != "markers":
        return list(words), list(range(len(words)))
    shown, origin = [], []
    for index, word in enumerate(words):
        shape = word_case(word)
        if shape is not None:
            shown.append(CASE_MARKERS[shape])
            origin.append(-1)
        shown.append(word)
        origin.append(index)
    return shown, origin


def with_context(tokenizer, shown: list[tuple[list[str], list[int]]], documents: Sequence[int],
                 anchors: Sequence[int], tokens: int, max_length: int) -> list[tuple[list[str], list[int]]]:
    """Document context (Schweter & Akbik 2020, FLERT): each sentence with up to `tokens` subwords
    of the sentences before and after it in its document on each side, within `max_length`. Context
    words get origin -1, so labels, loss and predictions stay on the sentence's own words.
    `anchors[i]` is the row whose neighbours give row i its context (itself, or the original of an
    augmented copy); only rows that are their own anchor serve as context."""
    counts = _subtoken_counts(tokenizer, [words for words, _ in shown])
    own = [i for i, anchor in enumerate(anchors) if anchor == i]
    place = {row: k for k, row in enumerate(own)}
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    out = []
    for i, (words, origin) in enumerate(shown):
        side = min(tokens, max(0, room - sum(counts[i])) // 2)
        k = place[anchors[i]]
        # generators: the walk stops at the document's edge or the budget, so a split costs O(rows)
        before = (own[j] for j in range(k - 1, -1, -1))
        after = (own[j] for j in range(k + 1, len(own)))
        left = _take(shown, counts, documents, before, documents[anchors[i]], side, True)
        right = _take(shown, counts, documents, after, documents[anchors[i]], side, False)
        out.append((left + words + right, [-1] * len(left) + origin + [-1] * len(right)))
    return out


def _subtoken_counts(tokenizer, sentences: list[list[str]]) -> list[list[int]]:
    batch = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    counts = []
    for index, words in enumerate(sentences):
        row = [0] * len(words)
        for word in batch.word_ids(index):
            if word is not None:
                row[word] += 1
        counts.append(row)
    return counts


def _take(shown, counts, documents, rows: Iterable[int], document: int, budget: int, backwards: bool) -> list[str]:
    """Whole words from `rows` (nearest first) of the same document while they fit in `budget` subwords."""
    taken: list[str] = []
    for row in rows:
        if documents[row] != document:
            break
        pairs = list(zip(shown[row][0], counts[row]))
        for word, count in (reversed(pairs) if backwards else pairs):
            if count > budget:
                return taken[::-1] if backwards else taken
            budget -= count
            taken.append(word)
    return taken[::-1] if backwards else taken


def continuation_label(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def encode(tokenizer, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]] | None,
           label2id: dict[str, int], max_length: int, stride: int, label_all_tokens: bool = False,
           casing: str = "none", context: int = 0, documents: Sequence[int] | None = None,
           anchors: Sequence[int] | None = None) -> Encoded:
    """`casing: markers` puts a case-marker token before each word whose case the tokenizer loses
    (add_case_markers must have given them to the tokenizer); `casing: shape` gives each subtoken its
    word's shape as token_type_ids (see add_shape_embeddings). `context` > 0 with `documents` (one
    id per sentence, in document order) adds document context (see with_context)."""
    shown = [model_words(s, casing) for s in sentences]
    if context and documents is not None:
        anchors = list(range(len(shown))) if anchors is None else anchors
        shown = with_context(tokenizer, shown, documents, anchors, context, max_length)
    batch = tokenizer([words for words, _ in shown], is_split_into_words=True, truncation=True,
                      max_length=max_length, stride=stride, return_overflowing_tokens=True)
    features, window_sentence, window_words = [], [], []
    for window, sentence in enumerate(batch["overflow_to_sample_mapping"]):
        origin = shown[sentence][1]
        word_ids = [None if w is None or origin[w] < 0 else origin[w] for w in batch.word_ids(window)]
        labels, words, previous = [], [], None
        for word in word_ids:
            first = word is not None and word != previous
            words.append(word if first else -1)
            if word is None or tags is None:
                labels.append(IGNORE)
            elif first:
                labels.append(label2id[tags[sentence][word]])
            else:
                labels.append(label2id[continuation_label(tags[sentence][word])] if label_all_tokens else IGNORE)
            previous = word
        feature = {"input_ids": batch["input_ids"][window], "attention_mask": batch["attention_mask"][window],
                   "labels": labels}
        if casing == "shape":
            feature["token_type_ids"] = shape_type_ids(shown[sentence][0], batch.word_ids(window))
        features.append(feature)
        window_sentence.append(sentence)
        window_words.append(words)
    return Encoded(features, window_sentence, window_words, [len(s) for s in sentences])


def word_logits(encoded: Encoded, logits: Sequence[np.ndarray], n_labels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sentence: logits per word (a word seen in two overlapping windows gets the sum of
    both) and whether the tokenizer produced any subtoken for it."""
    totals = [np.zeros((n, n_labels), dtype=np.float64) for n in encoded.words_per_sentence]
    seen = [np.zeros(n, dtype=bool) for n in encoded.words_per_sentence]
    for window, sentence in enumerate(encoded.window_sentence):
        words = np.asarray(encoded.window_words[window], dtype=np.int64)
        first = words >= 0
        np.add.at(totals[sentence], words[first], np.asarray(logits[window])[:len(words)][first])
        seen[sentence][words[first]] = True
    return list(zip(totals, seen))


DECODINGS = ("argmax", "viterbi")
_VITERBI_CHUNK = 256  # sentences decoded together, sorted by length: one long one never pads thousands


def decode(encoded: Encoded, logits: Sequence[np.ndarray], id2label: dict[int, str],
           decoding: str = "argmax") -> list[list[str]]:
    """Word tags from window logits; a word the tokenizer dropped (no subtokens) is tagged O.
    `viterbi`: the most probable tag sequence in which no I-X follows anything but B-X or I-X."""
    labels = [id2label[i] for i in range(len(id2label))]
    return [[labels[i] for i in ids] for ids in tag_ids(word_logits(encoded, logits, len(labels)), labels, decoding)]


def word_tag_ids(totals: np.ndarray, seen: np.ndarray, labels: Sequence[str], decoding: str = "argmax") -> list[int]:
    """One sentence's tag ids from its word logits (see word_logits)."""
    return tag_ids([(totals, seen)], labels, decoding)[0]


def tag_ids(sentences: Sequence[tuple[np.ndarray, np.ndarray]], labels: Sequence[str],
            decoding: str = "argmax") -> list[list[int]]:
    """Tag ids of many sentences from their (word logits, seen) pairs (see word_logits), decoded
    together: numpy over the whole batch, not a Python loop per sentence and word."""
    outside = labels.index("O")
    lengths = [len(totals) for totals, _ in sentences]
    if not sentences or not sum(lengths):
        return [[] for _ in sentences]
    totals = np.concatenate([t for t, _ in sentences])
    seen = np.concatenate([s for _, s in sentences])
    if decoding == "argmax":
        flat = np.where(seen, totals.argmax(axis=-1), outside)
        return [ids.tolist() for ids in np.split(flat, np.cumsum(lengths)[:-1])]
    shifted = totals - totals.max(axis=-1, keepdims=True)  # log-softmax per word
    scores = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    scores[~seen] = -np.inf
    scores[~seen, outside] = 0.0  # a dropped word is O, as with argmax
    return viterbi_many(np.split(scores, np.cumsum(lengths)[:-1]), *bio_constraints(labels))


def viterbi(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray) -> list[int]:
    """The best path through per-word log-probabilities `scores` (words x tags) using only
    `allowed` transitions (previous x next) and `start` tags at the first word."""
    return viterbi_many([scores], allowed, start)[0]


def viterbi_many(scores: Sequence[np.ndarray], allowed: np.ndarray, start: np.ndarray) -> list[list[int]]:
    """`viterbi` for many sentences at once. Sorted by length, the sentences that still have a word
    at a step are a tail of the batch: each step advances that slice, the others keep their scores."""
    out: list[list[int]] = [[] for _ in scores]
    order = sorted((i for i in range(len(scores)) if len(scores[i])), key=lambda i: len(scores[i]))
    forbidden = np.where(allowed, 0.0, -np.inf)
    for begin in range(0, len(order), _VITERBI_CHUNK):
        chunk = order[begin:begin + _VITERBI_CHUNK]
        lengths = np.array([len(scores[i]) for i in chunk])
        rows, steps, tags = len(chunk), int(lengths[-1]), forbidden.shape[0]
        padded = np.zeros((rows, steps, tags))
        for row, i in enumerate(chunk):
            padded[row, :lengths[row]] = scores[i]
        first = np.searchsorted(lengths, np.arange(steps), side="right").tolist()  # rows first[w]: have word w
        best = np.where(start, padded[:, 0], -np.inf)                      # sentences x tags
        back = np.zeros((rows, steps * tags), dtype=np.int64)              # per word, the best previous tag
        for word in range(1, steps):
            candidates = best[first[word]:, :, None] + forbidden            # sentences x previous x next
            back[first[word]:, word * tags:(word + 1) * tags] = candidates.argmax(axis=1)
            best[first[word]:] = candidates.max(axis=1) + padded[first[word]:, word]
        ends, pointers = best.argmax(axis=1).tolist(), back.tolist()
        for row, i in enumerate(chunk):  # back from each sentence's own last word (Python ints: no numpy per step)
            tag, path = ends[row], [ends[row]]
            for word in range(int(lengths[row]) - 1, 0, -1):
                tag = pointers[row][word * tags + tag]
                path.append(tag)
            out[i] = path[::-1]
    return out


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision/recall/F1 (seqeval, exact chunk match): micro, macro and per type."""
    from seqeval.metrics import classification_report

    report = classification_report(list(map(list, gold)), list(map(list, predicted)),
                                   output_dict=True, zero_division=0)
    def row(values: dict) -> dict:
        return {"precision": float(values["precision"]), "recall": float(values["recall"]),
                "f1": float(values["f1-score"]), "support": int(values["support"])}
    per_type = {k: row(v) for k, v in report.items() if not k.endswith(" avg")}
    return {"entity_f1": float(report["micro avg"]["f1-score"]),
            "micro": row(report["micro avg"]), "macro": row(report["macro avg"]), "per_type": per_type}
