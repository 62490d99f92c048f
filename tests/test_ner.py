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


def test_decoding_many_sentences_together_equals_one_at_a_time(monkeypatch):
    from tinynlp.tagging import bio_labels

    monkeypatch.setattr(ner, "_VITERBI_CHUNK", 3)  # several chunks, of mixed lengths
    labels = bio_labels(["loc", "org", "per"])
    rng = np.random.default_rng(3)
    sentences = [(rng.normal(size=(n, len(labels))) * 3, rng.random(n) > 0.1) for n in [0, 5, 1, 17, 0, 2, 9, 9, 40, 3]]
    for decoding in ("argmax", "viterbi"):
        one_by_one = [ner.word_tag_ids(t, s, labels, decoding) for t, s in sentences]
        assert ner.tag_ids(sentences, labels, decoding) == one_by_one
        assert [len(ids) for ids in one_by_one] == [len(t) for t, _ in sentences]
    allowed, start = ner.bio_constraints(labels)
    scores = [np.log(rng.dirichlet(np.ones(len(labels)), size=n)) for n in (4, 1, 7)]
    assert ner.viterbi_many(scores, allowed, start) == [ner.viterbi(s, allowed, start) for s in scores]
    assert ner.tag_ids([], labels, "viterbi") == []


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


@pytest.mark.parametrize("word, shape", [("paris", None), ("Paris", "title"), ("I", "title"), ("NASA", "upper"),
                                         ("iPhone", "mixed"), ("McDonald", "mixed"), ("2024", None), ("!!", None),
                                         ("U.S.", "upper"), ("@Bob", "title"), ("Élodie", "title")])
def test_word_case_names_what_lower_casing_loses(word, shape):
    assert ner.word_case(word) == shape


def test_case_markers_sit_before_cased_words_and_are_never_labelled(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))  # its own copy: markers are added to it
    assert ner.add_case_markers(tokenizer)  # uncased: the markers carry what it loses
    words, tags = ["Alice", "lives", "in", "PARIS"], ["B-person", "O", "O", "B-location"]
    plain = ner.encode(tokenizer, [words], [tags], LABEL2ID, 32, 4)
    marked = ner.encode(tokenizer, [words], [tags], LABEL2ID, 32, 4, casing="markers")
    tokens = tokenizer.convert_ids_to_tokens(marked.features[0]["input_ids"])
    assert tokens.count("[TITLE]") == 1 and tokens.count("[UPPER]") == 1
    assert len(tokens) == len(plain.features[0]["input_ids"]) + 2
    for marker in ("[TITLE]", "[UPPER]"):
        position = tokens.index(marker)
        assert marked.features[0]["labels"][position] == ner.IGNORE and marked.window_words[0][position] == -1
    assert [l for l in marked.features[0]["labels"] if l != ner.IGNORE] == [1, 0, 0, 3]
    assert ner.decode(marked, one_hot_logits(marked), dict(enumerate(LABELS))) == [tags]


def test_case_markers_survive_windows(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    ner.add_case_markers(tokenizer)
    words = ("Alice lives in PARIS and Bob visited London yesterday".split()) * 6
    tags = [("B-person" if w in ("Alice", "Bob") else "B-location" if w in ("PARIS", "London") else "O") for w in words]
    encoded = ner.encode(tokenizer, [words], [tags], LABEL2ID, max_length=24, stride=6, casing="markers")
    assert len(encoded.features) > 2 and all(len(f["input_ids"]) <= 24 for f in encoded.features)
    assert ner.decode(encoded, one_hot_logits(encoded), dict(enumerate(LABELS))) == [tags]


def test_case_markers_grow_the_embeddings_and_say_when_case_is_kept(tiny_bert, tmp_path):
    from transformers import AutoModelForTokenClassification, BertTokenizerFast

    tokenizer = load_tokenizer(str(tiny_bert))
    model = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=len(LABELS))
    before = model.get_input_embeddings().num_embeddings
    ner.add_case_markers(tokenizer, model)
    assert model.get_input_embeddings().num_embeddings == before + 3 == len(tokenizer)
    ner.add_case_markers(tokenizer, model)  # idempotent: a resumed or repeated call adds nothing
    assert model.get_input_embeddings().num_embeddings == before + 3
    cased = BertTokenizerFast(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                                   "Paris", "paris"])}, do_lower_case=False)
    assert not ner.add_case_markers(cased)  # a cased tokenizer sees case already: reported, not refused


def test_document_context_stays_in_the_document_and_is_never_labelled(tokenizer):
    sentences = [["Alice", "lives"], ["in", "Paris"], ["Bob", "wrote"], ["London", "calls"]]
    tags = [["B-person", "O"], ["O", "B-location"], ["B-person", "O"], ["B-location", "O"]]
    documents = [0, 0, 0, 1]  # the last sentence opens another document
    encoded = ner.encode(tokenizer, sentences, tags, LABEL2ID, 32, 4, context=8, documents=documents)
    shown = [tokenizer.decode(f["input_ids"], skip_special_tokens=True).split() for f in encoded.features]
    assert shown[1] == ["alice", "lives", "in", "paris", "bob", "wrote"]  # both neighbours
    assert shown[0][:2] == ["alice", "lives"] and "london" not in " ".join(shown[2])  # no context across documents
    assert shown[3] == ["london", "calls"]
    for feature in encoded.features:  # only the sentence's own words carry labels
        assert len([l for l in feature["labels"] if l != ner.IGNORE]) == 2
    assert ner.decode(encoded, one_hot_logits(encoded), dict(enumerate(LABELS))) == tags


def test_document_context_fits_the_window_and_takes_whole_words(tokenizer):
    sentences = [["Alice", "lives", "in", "Paris"] * 3, ["Bob", "wrote"], ["London", "calls", "Alice"] * 3]
    tags = [["O"] * 12, ["B-person", "O"], ["O"] * 9]
    counts = ner._subtoken_counts(tokenizer, sentences)
    encoded = ner.encode(tokenizer, sentences, tags, LABEL2ID, 16, 4, context=64, documents=[0, 0, 0])
    middle = encoded.features[encoded.window_sentence.index(1)]
    assert len(middle["input_ids"]) <= 16
    left = (16 - 2 - sum(counts[1])) // 2  # each side gets half the room the sentence leaves
    words = tokenizer.decode(middle["input_ids"], skip_special_tokens=True).split()
    before = words[: words.index("bob")]
    assert before and before == [w.lower() for w in sentences[0][len(sentences[0]) - len(before):]]  # nearest first
    assert sum(counts[0][len(sentences[0]) - len(before):]) <= left


def test_an_augmented_copy_takes_its_originals_context(tokenizer):
    from tinynlp.heads import ModelSpec, context_kind, context_source

    split = {"tokens": [["a"], ["b"], ["b2"], ["c"]], "tags": [["O"]] * 4, "document": [3, 3, 3, 3],
             "source_row": [0, 1, 1, 2]}
    spec = ModelSpec("ner", LABELS, 32, 4, context=16)
    documents, anchors = context_source(split, spec)
    assert anchors == [0, 1, 1, 3]  # the copy (row 2) is placed where its original is; copies give no context
    assert context_kind(split, spec) == "sentence order"
    assert context_source(split, ModelSpec("ner", LABELS, 32, 4, context=16, context_fallback="none")) == (None, None)
    assert context_kind({**split, "document": [0, 0, 1, 1]}, spec) == "documents (2)"
    assert context_kind(split, ModelSpec("ner", LABELS, 32, 4)) == "none"
