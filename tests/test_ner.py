"""Subword alignment, sliding windows and word-level decoding on a tiny tokenizer."""
from __future__ import annotations

import numpy as np
import pytest

from tinynlp import ner
from tinynlp.modeling import load_tokenizer

LABELS = ["O", "B-person", "I-person", "B-location", "I-location"]
LABEL2ID = {l: i for i, l in enumerate(LABELS)}


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return load_tokenizer(str(tiny_bert))


def one_hot_logits(encoded: ner.Encoded) -> list[np.ndarray]:
    """Logits that predict each position's own label (an oracle model)."""
    out = []
    for feature in encoded.features:
        logits = np.zeros((len(feature["input_ids"]), len(LABELS)))
        for position, label in enumerate(feature["labels"]):
            logits[position, label if label != ner.IGNORE else 0] = 1.0
        out.append(logits)
    return out


def test_first_subtoken_gets_the_label(tokenizer):
    encoded = ner.encode(tokenizer, [["Graceful", "Hoppers", "wrote"]], [["B-person", "I-person", "O"]], LABEL2ID, 32, 4)
    ids = encoded.features[0]["input_ids"]
    labels = encoded.features[0]["labels"]
    assert len(ids) > 5  # subword pieces: the label sits on the first only
    assert [l for l in labels if l != ner.IGNORE] == [1, 2, 0]
    assert labels[0] == ner.IGNORE and labels[-1] == ner.IGNORE  # [CLS], [SEP]


def test_label_all_tokens_uses_inside_tags(tokenizer):
    encoded = ner.encode(tokenizer, [["Alicea"]], [["B-person"]], LABEL2ID, 32, 4, label_all_tokens=True)
    labels = [l for l in encoded.features[0]["labels"] if l != ner.IGNORE]
    assert labels[0] == 1 and set(labels[1:]) == {2}


def test_long_sentence_is_windowed_not_truncated(tokenizer):
    words = ("Alice lives in Paris and Bob visited London yesterday".split()) * 6
    tags = [("B-person" if w in ("Alice", "Bob") else "B-location" if w in ("Paris", "London") else "O") for w in words]
    encoded = ner.encode(tokenizer, [words], [tags], LABEL2ID, max_length=24, stride=6)
    assert len(encoded.features) > 2 and all(len(f["input_ids"]) <= 24 for f in encoded.features)
    decoded = ner.decode(encoded, one_hot_logits(encoded), dict(enumerate(LABELS)))
    assert decoded == [tags]  # every word recovered, overlap merged


def test_entity_scores_micro_macro_and_types():
    gold = [["B-person", "I-person", "O", "B-location"]]
    predicted = [["B-person", "I-person", "O", "O"]]
    scores = ner.entity_scores(gold, predicted)
    assert scores["micro"]["precision"] == 1.0 and scores["micro"]["recall"] == 0.5
    assert scores["per_type"]["person"]["f1"] == 1.0 and scores["per_type"]["location"]["f1"] == 0.0
    assert scores["macro"]["f1"] == pytest.approx(0.5)


def test_viterbi_finds_the_best_sequence_that_obeys_bio():
    import itertools

    from tinynlp.ner import viterbi, word_tag_ids
    from tinynlp.tagging import bio_constraints, bio_labels, valid_bio_pairs

    labels = bio_labels(["loc", "per"])
    allowed, start = bio_constraints(labels)
    pairs = set(valid_bio_pairs(labels))
    rng = np.random.default_rng(0)
    for _ in range(50):  # against brute force over every legal sequence
        scores = np.log(rng.dirichlet(np.ones(len(labels)), size=int(rng.integers(1, 5))))
        legal = [seq for seq in itertools.product(range(len(labels)), repeat=len(scores))
                 if all(((labels[a] if k else "O"), labels[b]) in pairs for k, (a, b) in enumerate(zip((0,) + seq, seq)))]
        best = max(legal, key=lambda seq: sum(scores[i, t] for i, t in enumerate(seq)))
        assert viterbi(scores, allowed, start) == list(best)
    # argmax would open with I-per and jump to I-loc; the constrained path cannot
    logits = np.log(np.array([[.1, .1, .1, .2, .5], [.1, .1, .45, .05, .3], [.9, .025, .025, .025, .025]]))
    assert [labels[i] for i in word_tag_ids(logits, np.ones(3, bool), labels)] == ["I-per", "I-loc", "O"]
    constrained = [labels[i] for i in word_tag_ids(logits, np.ones(3, bool), labels, "viterbi")]
    assert constrained == ["B-per", "I-per", "O"]
    # a word without subtokens stays O under either decoding
    assert labels[word_tag_ids(logits, np.array([True, False, True]), labels, "viterbi")[1]] == "O"
