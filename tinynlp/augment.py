"""Label-preserving text augmentation: EDA for text classification (Wei & Zou 2019), the four
NER operations of Dai & Adel (2020), character and casing noise, and back-translation through a
callable. Pure functions over word lists; every random choice comes from the `random.Random`
passed in, so a seed reproduces the output exactly."""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from tinynlp.tagging import OUTSIDE, entity_type

# Methods per task, in the order copies take turns over them (each augmented copy applies one).
CLASSIFICATION_METHODS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion",
                          "typos", "casing", "back_translation")
NER_METHODS = ("label_wise_replacement", "mention_replacement", "shuffle_within_segments",
               "synonym_replacement", "typos", "casing")
# QWERTY neighbours: a typo a person could make.
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {c: "".join(row[j] for j in (i - 1, i + 1) if 0 <= j < len(row))
               for row in _KEYBOARD_ROWS for i, c in enumerate(row)}

Synonyms = Mapping[str, Sequence[str]]


# -- word-level operations (EDA) ----------------------------------------------------------------

def changes_for(rate: float, n_words: int) -> int:
    """EDA's n = max(1, int(alpha * l)) words changed in a sentence of l words."""
    return max(1, int(rate * n_words)) if rate > 0 and n_words else 0


def synonym_for(word: str, synonyms: Synonyms, rng: random.Random) -> str | None:
    """A synonym of `word` in its casing (the table is keyed by lower case), or None."""
    choices = synonyms.get(word.lower())
    if not choices:
        return None
    pick = rng.choice(list(choices))
    return pick.upper() if word.isupper() and len(word) > 1 else pick.title() if word.istitle() else pick


def synonym_replacement(words: list[str], rate: float, synonyms: Synonyms, rng: random.Random) -> list[str]:
    out = list(words)
    candidates = [i for i, w in enumerate(words) if synonyms.get(w.lower())]
    for i in rng.sample(candidates, min(len(candidates), changes_for(rate, len(words)))):
        out[i] = synonym_for(words[i], synonyms, rng) or words[i]
    return out


def random_insertion(words: list[str], rate: float, synonyms: Synonyms, rng: random.Random) -> list[str]:
    """Insert a synonym of a random word at a random position, n times."""
    out = list(words)
    for _ in range(changes_for(rate, len(words))):
        candidates = [w for w in out if synonyms.get(w.lower())]
        if not candidates:
            break
        out.insert(rng.randrange(len(out) + 1), synonym_for(rng.choice(candidates), synonyms, rng))
    return out


def random_swap(words: list[str], rate: float, rng: random.Random) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(changes_for(rate, len(words))):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], rate: float, rng: random.Random) -> list[str]:
    """Each word is deleted with probability `rate`; one random word survives an empty result."""
    if len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() >= rate]
    return kept or [rng.choice(words)]


# -- noise --------------------------------------------------------------------------------------

def typo(word: str, rng: random.Random) -> str:
    """One keyboard slip: a neighbouring key, a dropped or a doubled character."""
    positions = [i for i, c in enumerate(word) if c.isalpha()]
    if not positions:
        return word
    i = rng.choice(positions)
    kinds = ["neighbour", "duplicate"] + (["drop"] if len(word) > 1 else [])
    kind = rng.choice(kinds)
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "duplicate":
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower())
    if not near:
        return word[:i] + word[i] + word[i:]
    key = rng.choice(near)
    return word[:i] + (key.upper() if word[i].isupper() else key) + word[i + 1:]


def typos(words: list[str], rate: float, rng: random.Random) -> list[str]:
    return [typo(w, rng) if rng.random() < rate else w for w in words]


def recase(word: str, rng: random.Random) -> str:
    forms = [f for f in dict.fromkeys((word.lower(), word.upper(), word.title())) if f != word]
    return rng.choice(forms) if forms else word


def casing(words: list[str], rate: float, rng: random.Random) -> list[str]:
    return [recase(w, rng) if rng.random() < rate else w for w in words]


# -- NER operations (Dai & Adel 2020); tags stay valid BIO ----------------------------------------

@dataclass(frozen=True)
class NerLexicon:
    """What the NER operations draw from: the training set's tokens per tag and mentions per type."""

    tokens_by_tag: Mapping[str, Sequence[str]]
    mentions_by_type: Mapping[str, Sequence[tuple[str, ...]]]


def mentions(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, type) of each entity mention in valid BIO tags."""
    spans, start = [], None
    for i, tag in enumerate([*tags, OUTSIDE]):
        if start is not None and not tag.startswith("I-"):
            spans.append((start, i, entity_type(tags[start])))
            start = None
        if tag.startswith("B-"):
            start = i
    return spans


def ner_lexicon(sentences: Sequence[tuple[Sequence[str], Sequence[str]]]) -> NerLexicon:
    tokens_by_tag, mentions_by_type = defaultdict(list), defaultdict(list)
    for tokens, tags in sentences:
        for token, tag in zip(tokens, tags):
            tokens_by_tag[tag].append(token)
        for start, end, kind in mentions(tags):
            mentions_by_type[kind].append(tuple(tokens[start:end]))
    return NerLexicon(dict(tokens_by_tag), dict(mentions_by_type))


def label_wise_replacement(tokens, tags, rate: float, lexicon: NerLexicon, rng: random.Random):
    """Each token, with probability `rate`, becomes a training token that carried the same tag."""
    out = [rng.choice(lexicon.tokens_by_tag[tag]) if rng.random() < rate and lexicon.tokens_by_tag.get(tag) else token
           for token, tag in zip(tokens, tags)]
    return out, list(tags)


def mention_replacement(tokens, tags, rate: float, lexicon: NerLexicon, rng: random.Random):
    """Each mention, with probability `rate`, becomes another training mention of its type."""
    out_tokens, out_tags, cursor = [], [], 0
    for start, end, kind in mentions(tags):
        out_tokens += tokens[cursor:start]
        out_tags += tags[cursor:start]
        pool = lexicon.mentions_by_type.get(kind)
        replacement = list(rng.choice(pool)) if pool and rng.random() < rate else list(tokens[start:end])
        out_tokens += replacement
        out_tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(replacement) - 1)
        cursor = end
    return out_tokens + list(tokens[cursor:]), out_tags + list(tags[cursor:])


def segments(tags: Sequence[str]) -> list[tuple[int, int]]:
    """Runs of one label: each mention is a segment, and so is each stretch of O tokens."""
    bounds = [(s, e) for s, e, _ in mentions(tags)]
    spans, cursor = [], 0
    for start, end in bounds + [(len(tags), len(tags))]:
        if cursor < start:
            spans.append((cursor, start))
        if start < end:
            spans.append((start, end))
        cursor = end
    return spans


def shuffle_within_segments(tokens, tags, rate: float, rng: random.Random):
    out = list(tokens)
    for start, end in segments(tags):
        if end - start > 1 and rng.random() < rate:
            part = out[start:end]
            rng.shuffle(part)
            out[start:end] = part
    return out, list(tags)


def outside_synonym_replacement(tokens, tags, rate: float, synonyms: Synonyms, rng: random.Random):
    """Synonym replacement on O tokens only: entity tokens are never touched."""
    out = [(synonym_for(token, synonyms, rng) or token) if tag == OUTSIDE and rng.random() < rate else token
           for token, tag in zip(tokens, tags)]
    return out, list(tags)


# -- one copy of one example ----------------------------------------------------------------------

def augment_words(method: str, words: list[str], rate: float, synonyms: Synonyms, rng: random.Random) -> list[str]:
    """A classification method on a whitespace-split text."""
    if method == "synonym_replacement":
        return synonym_replacement(words, rate, synonyms, rng)
    if method == "random_insertion":
        return random_insertion(words, rate, synonyms, rng)
    if method == "random_swap":
        return random_swap(words, rate, rng)
    if method == "random_deletion":
        return random_deletion(words, rate, rng)
    return _noise(method, words, rate, rng)


def augment_tagged(method: str, tokens: list[str], tags: list[str], rate: float, synonyms: Synonyms,
                   lexicon: NerLexicon, rng: random.Random) -> tuple[list[str], list[str]]:
    """An NER method on one sentence; the result's tags are valid BIO when the input's are."""
    if method == "label_wise_replacement":
        return label_wise_replacement(tokens, tags, rate, lexicon, rng)
    if method == "mention_replacement":
        return mention_replacement(tokens, tags, rate, lexicon, rng)
    if method == "shuffle_within_segments":
        return shuffle_within_segments(tokens, tags, rate, rng)
    if method == "synonym_replacement":
        return outside_synonym_replacement(tokens, tags, rate, synonyms, rng)
    return _noise(method, tokens, rate, rng), list(tags)


def _noise(method: str, words: list[str], rate: float, rng: random.Random) -> list[str]:
    if method == "typos":
        return typos(words, rate, rng)
    if method == "casing":
        return casing(words, rate, rng)
    raise ValueError(f"unknown augmentation method '{method}'")


# -- a whole split --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Augmented:
    """One new training row: `source` is the index of the row it was made from."""

    source: int
    origin: str
    tokens: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    text: str = ""


def schedule(n_rows: int, copies: int, methods: Sequence[str]) -> list[tuple[int, int, str]]:
    """(row, copy, method): copies take turns over the methods, so each gets an equal share."""
    return [(row, copy, methods[(row * copies + copy) % len(methods)])
            for row in range(n_rows) for copy in range(copies)]


def row_rng(seed: int, row: int, copy: int) -> random.Random:
    """One generator per copy: a row's copies do not depend on the rows before it."""
    return random.Random(f"{seed}:{row}:{copy}")


def augment_ner(sentences: Sequence[tuple[list[str], list[str]]], rates: Mapping[str, float], copies: int,
                seed: int, synonyms: Synonyms) -> list[Augmented]:
    """Augmented copies of NER sentences; copies equal to an existing sentence are dropped."""
    lexicon = ner_lexicon(sentences)
    seen = {(tuple(t), tuple(g)) for t, g in sentences}
    out = []
    for row, copy, method in schedule(len(sentences), copies, [m for m in NER_METHODS if rates.get(m)]):
        tokens, tags = sentences[row]
        new_tokens, new_tags = augment_tagged(method, list(tokens), list(tags), rates[method], synonyms, lexicon,
                                              row_rng(seed, row, copy))
        key = (tuple(new_tokens), tuple(new_tags))
        if key not in seen:
            seen.add(key)
            out.append(Augmented(row, method, tokens=key[0], tags=key[1]))
    return out


def augment_texts(texts: Sequence[str], rates: Mapping[str, float], copies: int, seed: int, synonyms: Synonyms,
                  translate: Callable[[list[str]], list[str]] | None = None) -> list[Augmented]:
    """Augmented copies of texts (labels are the source rows'); duplicates of any text are dropped.
    `back_translation` runs when `translate` is given, batched over all rows that draw it."""
    methods = [m for m in CLASSIFICATION_METHODS if rates.get(m) and (m != "back_translation" or translate)]
    plan = schedule(len(texts), copies, methods)
    translated = iter(translate([texts[row] for row, _, m in plan if m == "back_translation"]) if translate else [])
    seen, out = set(texts), []
    for row, copy, method in plan:
        if method == "back_translation":
            text = next(translated).strip()
        else:
            text = " ".join(augment_words(method, texts[row].split(), rates[method], synonyms,
                                          row_rng(seed, row, copy)))
        if text and text not in seen:
            seen.add(text)
            out.append(Augmented(row, method, text=text))
    return out
