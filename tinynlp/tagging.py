"""Tagging schemes: normalise IOB1 and BIOES to BIO, build BIO label sets, check transitions."""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Literal, Sequence

Scheme = Literal["bio", "iob1", "bioes", "auto"]
OUTSIDE = "O"


def entity_type(tag: str) -> str | None:
    return tag[2:] if len(tag) > 2 and tag[1] == "-" else None


def detect_scheme(sentences: Iterable[Sequence[str]]) -> Scheme:
    """BIOES if any S-/E- prefix occurs; otherwise IOB1 (whose repair is a no-op on valid BIO)."""
    for tags in sentences:
        if any(t.startswith(("S-", "E-")) for t in tags):
            return "bioes"
    return "iob1"


def to_bio(tags: Sequence[str], scheme: Scheme) -> list[str]:
    """Rewrite one sentence's tags as BIO. Strict 'bio' leaves tags untouched for validation."""
    if scheme == "bio":
        return list(tags)
    if scheme == "bioes":
        tags = ["B-" + t[2:] if t.startswith("S-") else "I-" + t[2:] if t.startswith("E-") else t
                for t in tags]
    out: list[str] = []
    previous = OUTSIDE
    for tag in tags:
        kind = entity_type(tag)
        # IOB1 (and BIOES after the rewrite) may open a chunk with I-: that I- becomes B-.
        if tag.startswith("I-") and entity_type(previous) != kind:
            tag = "B-" + kind
        out.append(tag)
        previous = tag
    return out


def bio_labels(types: Iterable[str]) -> list[str]:
    """O first, then B-/I- for each type in sorted order: a stable id mapping."""
    labels = [OUTSIDE]
    for kind in sorted(set(types)):
        labels += [f"B-{kind}", f"I-{kind}"]
    return labels


def bio_constraints(labels: Sequence[str]):
    """(allowed, start): allowed[i, j] when tag j may follow tag i in BIO (I-X only after B-X or
    I-X), start[j] when a sentence may open with tag j (not an I-). Read-only arrays, built once
    per label set: decoding asks for them once per sentence."""
    return _bio_constraints(tuple(labels))


@lru_cache(maxsize=64)
def _bio_constraints(labels: tuple[str, ...]):
    import numpy as np

    allowed = np.array([[not tag.startswith("I-") or entity_type(previous) == entity_type(tag) for tag in labels]
                        for previous in labels])
    start = np.array([not tag.startswith("I-") for tag in labels])
    allowed.flags.writeable = start.flags.writeable = False
    return allowed, start


def valid_bio_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """Every allowed (previous tag, tag) pair; a sentence starts after an implicit O."""
    pairs = []
    for previous in labels:
        for tag in labels:
            if not tag.startswith("I-") or entity_type(previous) == entity_type(tag):
                pairs.append((previous, tag))
    return pairs
