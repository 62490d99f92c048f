"""Where augmentation gets its paraphrases offline: a synonym table from nearest neighbours in a
checkpoint's input-embedding space, and back-translation through any pair of seq2seq
translation models given by hub name or local path (e.g. Helsinki-NLP/opus-mt-en-de and
Helsinki-NLP/opus-mt-de-en)."""
from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import torch

from tinynlp import modeling

log = logging.getLogger(__name__)

# EDA's stop words (Wei & Zou 2019): never replaced and never offered as synonyms. English only;
# other languages get no stop-word filter.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves what which who whom this that these
those am is are was were be been being have has had having do does did doing a an the and but if or
because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where
why how all any both each few more most other some such no nor not only own same so than too very s
t can will just don should now
""".split())


def whole_words(vocab: dict[str, int], min_chars: int = 2) -> list[str]:
    """Vocabulary entries that are whole alphabetic words: no '##' pieces, no specials, no digits."""
    return sorted(w for w in vocab if w.isalpha() and len(w) >= min_chars and w.lower() not in STOP_WORDS)


def _related_form(a: str, b: str, prefix: int = 4) -> bool:
    """'run'/'runs'/'running' share a stem: an inflection, not a synonym worth swapping in."""
    a, b = a.lower(), b.lower()
    return a.startswith(b) or b.startswith(a) or (len(a) >= prefix and a[:prefix] == b[:prefix])


def embedding_synonyms(words: Iterable[str], vocab: dict[str, int], embeddings: np.ndarray, neighbours: int,
                       min_similarity: float, chunk: int = 1024) -> dict[str, list[str]]:
    """For each of `words` (lower-cased) that the vocabulary holds whole, its nearest whole-word
    neighbours by cosine similarity of input embeddings, most similar first. Neighbours in this
    space are often related rather than equal in meaning (good -> bad), hence a small rate."""
    candidates = whole_words(vocab)
    matrix = _normalised(embeddings[[vocab[w] for w in candidates]])
    queries = sorted({w.lower() for w in words} & set(candidates))
    table: dict[str, list[str]] = {}
    for start in range(0, len(queries), chunk):
        batch = queries[start:start + chunk]
        scores = _normalised(embeddings[[vocab[w] for w in batch]]) @ matrix.T
        pool = min(scores.shape[1], neighbours * 4 + 1)  # room for the query itself and its inflections
        top = np.argpartition(-scores, pool - 1, axis=1)[:, :pool]
        for query, row, idx in zip(batch, scores, top):
            ranked = [candidates[i] for i in idx[np.argsort(-row[idx])] if row[i] >= min_similarity]
            kept = [w for w in ranked if not _related_form(w, query)][:neighbours]
            if kept:
                table[query] = kept
    return table


def _normalised(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def checkpoint_synonyms(checkpoint: str, words: Iterable[str], neighbours: int, min_similarity: float) -> dict:
    """`embedding_synonyms` over the input embeddings of a checkpoint (hub name, dir or package:)."""
    from transformers import AutoModel

    source = modeling.resolve_checkpoint(checkpoint)
    tokenizer = modeling.load_tokenizer(source)
    embeddings = modeling.load_pretrained(AutoModel, source).get_input_embeddings().weight.detach().numpy()
    table = embedding_synonyms(words, tokenizer.get_vocab(), embeddings, neighbours, min_similarity)
    log.info("synonyms: %d words have neighbours in %s's input embeddings", len(table), checkpoint)
    return table


def translate(texts: Sequence[str], model_name: str, batch_size: int, max_length: int, num_beams: int) -> list[str]:
    """Greedy or beam translation with a seq2seq model (safetensors only, no remote code)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    source = modeling.resolve_checkpoint(model_name)
    modeling.check_model_dir(source)
    # Marian's tokenizers are sentencepiece (slow) ones: no offsets are needed here
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    model = modeling.load_pretrained(AutoModelForSeq2SeqLM, source).eval()
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length)
        with torch.inference_mode():
            generated = model.generate(**batch, max_new_tokens=max_length, num_beams=num_beams, do_sample=False)
        out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return out


def back_translate(texts: Sequence[str], forward: str, backward: str, batch_size: int = 16, max_length: int = 128,
                   num_beams: int = 1) -> list[str]:
    """Texts translated to the pivot language with `forward` and back with `backward`."""
    log.info("back-translation of %d texts: %s -> %s", len(texts), forward, backward)
    pivot = translate(texts, forward, batch_size, max_length, num_beams)
    return translate(pivot, backward, batch_size, max_length, num_beams)
