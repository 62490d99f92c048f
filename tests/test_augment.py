"""Augmentation: each method on inline sentences (seeded, labels kept, BIO valid, rates
respected), the stage (dev/test untouched, off means a byte copy, output validated) and
back-translation through a tiny Marian model built from config."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import TRAIN, use_classification
from tasks.augment import run_augment
from tinynlp.splits import read_training_split
from tasks.ingest import run_ingest
from tinynlp import augment, paraphrase
from tinynlp.config import parse_params
from tinynlp.errors import ConfigError

SENTENCES = [(text.split(), tags.split()) for text, tags in TRAIN]
WORDS = "the film was a truly good and funny story about two old friends".split()
SYNONYMS = {"film": ["movie", "picture"], "good": ["fine", "great"], "funny": ["comic"], "story": ["tale"],
            "old": ["aged"], "friends": ["pals"], "paris": ["lyon"], "lives": ["dwells"], "visited": ["saw"],
            "went": ["travelled"], "big": ["large"], "love": ["adore"], "wrote": ["authored"], "cold": ["chilly"],
            "flew": ["travelled"], "happened": ["occurred"], "live": ["reside"], "lovely": ["charming"]}


def is_valid_bio(tags) -> bool:
    return all(not t.startswith("I-") or (p != "O" and p[2:] == t[2:]) for p, t in zip(["O", *tags], tags))


RNG = lambda seed=0: random.Random(seed)  # noqa: E731


@pytest.mark.parametrize("method", ["synonym_replacement", "random_insertion", "random_swap", "random_deletion",
                                    "typos", "casing"])
def test_text_methods_are_deterministic_under_a_seed(method):
    first = augment.augment_words(method, WORDS, 0.3, SYNONYMS, RNG(7))
    assert first == augment.augment_words(method, WORDS, 0.3, SYNONYMS, RNG(7))
    assert first != WORDS
    assert any(augment.augment_words(method, WORDS, 0.3, SYNONYMS, RNG(s)) != first for s in range(1, 5))


def test_eda_rates_are_respected():
    n = augment.changes_for(0.25, len(WORDS))  # EDA: max(1, int(alpha * l)) = 3 of 12 words
    assert n == 3
    replaced = augment.synonym_replacement(WORDS, 0.25, SYNONYMS, RNG())
    assert sum(a != b for a, b in zip(WORDS, replaced)) == n
    assert all(b in SYNONYMS[a] for a, b in zip(WORDS, replaced) if a != b)
    assert len(augment.random_insertion(WORDS, 0.25, SYNONYMS, RNG())) == len(WORDS) + n
    swapped = augment.random_swap(WORDS, 0.25, RNG())
    assert sorted(swapped) == sorted(WORDS) and swapped != WORDS
    kept = [len(augment.random_deletion(WORDS, 0.25, RNG(s))) for s in range(400)]
    assert abs(1 - np.mean(kept) / len(WORDS) - 0.25) < 0.03  # each word deleted with p = 0.25
    assert augment.random_deletion(["alone"], 0.99, RNG()) == ["alone"]
    assert augment.synonym_replacement(WORDS, 0.0, SYNONYMS, RNG()) == WORDS


def test_noise_methods_change_what_they_say():
    for seed in range(50):
        word = augment.typo("keyboard", RNG(seed))
        assert abs(len(word) - len("keyboard")) <= 1 and word != "keyboard"
    recased = augment.casing(WORDS, 1.0, RNG())
    assert [w.lower() for w in recased] == WORDS and all(a != b for a, b in zip(recased, WORDS))
    assert augment.typos(WORDS, 0.0, RNG()) == WORDS


def test_synonyms_keep_the_casing_of_the_word():
    assert augment.synonym_for("Film", SYNONYMS, RNG()) in ("Movie", "Picture")
    assert augment.synonym_for("FILM", SYNONYMS, RNG()) in ("MOVIE", "PICTURE")
    assert augment.synonym_for("unknown", SYNONYMS, RNG()) is None


@pytest.mark.parametrize("method", augment.NER_METHODS)
def test_ner_methods_keep_valid_bio_and_seeded(method):
    lexicon = augment.ner_lexicon(SENTENCES)
    changed = 0
    for index, (tokens, tags) in enumerate(SENTENCES):
        out = augment.augment_tagged(method, tokens, tags, 0.5, SYNONYMS, lexicon, RNG(index))
        assert out == augment.augment_tagged(method, tokens, tags, 0.5, SYNONYMS, lexicon, RNG(index))
        new_tokens, new_tags = out
        assert len(new_tokens) == len(new_tags) and is_valid_bio(new_tags), (method, out)
        assert [t for _, _, t in augment.mentions(new_tags)] == [t for _, _, t in augment.mentions(tags)]
        changed += new_tokens != tokens
    assert changed >= 3, f"{method} changed only {changed} of {len(SENTENCES)} sentences at rate 0.5"


def test_ner_operations_follow_dai_and_adel():
    tokens, tags = "Grace Hopper met Bob in New York today".split(), \
        "B-person I-person O B-person O B-location I-location O".split()
    lexicon = augment.ner_lexicon(SENTENCES)
    # label-wise replacement: every replaced token carried the same tag somewhere in train
    swapped, same_tags = augment.label_wise_replacement(tokens, tags, 1.0, lexicon, RNG())
    assert same_tags == tags and all(t in lexicon.tokens_by_tag[g] for t, g in zip(swapped, tags))
    # mention replacement: each mention becomes a training mention of its type, tags rebuilt
    new_tokens, new_tags = augment.mention_replacement(tokens, tags, 1.0, lexicon, RNG())
    replaced = augment.mentions(new_tags)
    assert [kind for _, _, kind in replaced] == ["person", "person", "location"]  # Grace Hopper, Bob, New York
    for start, end, kind in replaced:
        assert tuple(new_tokens[start:end]) in lexicon.mentions_by_type[kind]
    # shuffling stays inside label runs: mentions keep their words, O runs theirs
    shuffled, _ = augment.shuffle_within_segments(tokens, tags, 1.0, RNG())
    assert augment.segments(tags) == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 7), (7, 8)]
    for start, end in augment.segments(tags):
        assert sorted(shuffled[start:end]) == sorted(tokens[start:end])
    # synonyms touch O tokens only
    text = "Paris lives in Paris".split()
    out, _ = augment.outside_synonym_replacement(text, ["B-location", "O", "O", "B-location"], 1.0, SYNONYMS, RNG())
    assert out == ["Paris", "dwells", "in", "Paris"]
    assert augment.outside_synonym_replacement(tokens, tags, 0.0, SYNONYMS, RNG())[0] == tokens


def test_copies_take_turns_and_duplicates_are_dropped():
    rates = {"random_swap": 0.5, "random_deletion": 0.3}
    texts = ["a b c d", "a b c d", "same", "one two three four five"]
    out = augment.augment_texts(texts, rates, copies=2, seed=1, synonyms={})
    made = [r.text for r in out]
    assert len(made) == len(set(made)) and not set(made) & set(texts)  # "same" cannot change: dropped
    assert {r.origin for r in out} == set(rates)
    assert out == augment.augment_texts(texts, rates, copies=2, seed=1, synonyms={})
    assert out != augment.augment_texts(texts, rates, copies=2, seed=2, synonyms={})


def test_embedding_synonyms_are_whole_words_not_inflections():
    vocab = {w: i for i, w in enumerate(["[CLS]", "good", "great", "goods", "the", "##ing", "fine", "car"])}
    vectors = np.array([[0, 0, 1], [1, 0, 0], [0.9, 0.1, 0], [1, 0, 0.01], [1, 0, 0], [1, 0, 0], [0.8, 0.3, 0],
                        [0, 1, 0]], dtype=np.float32)
    table = paraphrase.embedding_synonyms(["Good", "car", "absent"], vocab, vectors, neighbours=5, min_similarity=0.5)
    assert table == {"good": ["great", "fine"]}  # no stop word, no '##' piece, no 'goods', 'car' too far


# -- the stage ----------------------------------------------------------------------------------

def _params(**augment_cfg):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["augment"].update(augment_cfg)
    return parse_params(raw)


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_stage_off_is_a_byte_copy(workspace):
    run_ingest(_params())
    metrics = run_augment(_params(enabled=False))
    assert _digest("data/augment/train.parquet") == _digest("data/ingest/train.parquet")
    assert metrics == {"enabled": False, "rows": len(TRAIN), "augmented_rows": 0, "rows_after": len(TRAIN)}


def test_stage_adds_validated_rows_and_never_touches_dev_or_test(workspace, tiny_bert):
    rates = dict.fromkeys(augment.NER_METHODS[:4], 0.8)
    params = _params(enabled=True, copies=2, ner=rates)
    run_ingest(params)
    ingested = {p.name: _digest(p) for p in Path("data/ingest").iterdir()}
    metrics = run_augment(params)
    assert {p.name: _digest(p) for p in Path("data/ingest").iterdir()} == ingested
    assert sorted(p.name for p in Path("data/augment").iterdir()) == ["train.parquet"]
    table = pq.read_table("data/augment/train.parquet").to_pydict()
    assert metrics["rows_after"] == len(table["origin"]) == len(TRAIN) + metrics["augmented_rows"]
    assert table["origin"].count("original") == len(TRAIN) and metrics["augmented_rows"] >= len(TRAIN)
    assert all(is_valid_bio(tags) for tags in table["tags"])
    keys = [(tuple(t), tuple(g)) for t, g in zip(table["tokens"], table["tags"])]
    assert len(keys) == len(set(keys))
    limited = read_training_split("data/augment", limit=2)  # quick runs keep rows 0-1 and their copies
    assert set(limited["source_row"]) == {0, 1} and len(limited["origin"]) > 2
    assert "| method" in Path("reports/augment/report.md").read_text()


def test_classification_stage_runs_eda_with_embedding_synonyms(workspace):
    use_classification(workspace)
    params = _params(enabled=True, copies=4)
    run_ingest(params)
    metrics = run_augment(params)
    table = pq.read_table("data/augment/train.parquet").to_pydict()
    assert {"made_synonym_replacement", "made_random_swap", "made_random_deletion"} <= set(metrics)
    sources = {i: (t, l) for i, t, l, o in zip(table["source_row"], table["text"], table["label"], table["origin"])
               if o == "original"}
    assert all(label == sources[i][1] for i, label in zip(table["source_row"], table["label"]))


def test_dev_and_test_cannot_be_augmented():
    raw = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    raw["augment"]["splits"] = ["train", "dev"]
    with pytest.raises(ConfigError, match=r"augment.*only the train split can be augmented"):
        parse_params(raw, check_files=False)


def test_back_translation_is_refused_for_ner(workspace, tiny_bert):
    params = _params(enabled=True, back_translation={"forward": str(tiny_bert), "backward": str(tiny_bert)})
    run_ingest(params)
    with pytest.raises(ConfigError, match="classification only"):
        run_augment(params)
    assert not Path("data/augment").exists()


# -- back-translation through seq2seq models given by path ----------------------------------------

def build_tiny_marian(directory: Path) -> Path:
    """A randomly initialised Marian model with a real sentencepiece Marian tokenizer."""
    import json

    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(text for text, _ in TRAIN * 4), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "sp"), vocab_size=60,
                                   character_coverage=1.0, model_type="unigram", minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=str(directory / "sp.model"))
    pieces = ["</s>", "<unk>", "<pad>"] + [processor.id_to_piece(i) for i in range(processor.get_piece_size())
                                           if processor.id_to_piece(i) not in ("</s>", "<unk>", "<pad>", "<s>")]
    (directory / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(pieces)}), encoding="utf-8")
    for name in ("source.spm", "target.spm"):
        (directory / name).write_bytes((directory / "sp.model").read_bytes())
    tokenizer = MarianTokenizer(str(directory / "source.spm"), str(directory / "target.spm"),
                                str(directory / "vocab.json"))
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(pieces), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          max_position_embeddings=64, pad_token_id=2, eos_token_id=0, decoder_start_token_id=2)
    MarianMTModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_back_translation_hook_runs_marian_models_by_path(workspace, tmp_path):
    marian = str(build_tiny_marian(tmp_path / "marian"))
    texts = ["alice lives in paris .", "nothing happened today ."]
    first = paraphrase.back_translate(texts, marian, marian, batch_size=1, max_length=12)
    assert len(first) == 2 and first == paraphrase.back_translate(texts, marian, marian, batch_size=2, max_length=12)
    use_classification(workspace)
    params = _params(enabled=True, eda={"synonym_replacement": 0, "random_insertion": 0, "random_swap": 0,
                                        "random_deletion": 0}, back_translation={"forward": marian, "backward": marian,
                                                                                  "max_length": 12})
    run_ingest(params)
    metrics = run_augment(params)
    table = pq.read_table("data/augment/train.parquet").to_pydict()
    made = [t for t, o in zip(table["text"], table["origin"]) if o == "back_translation"]
    assert 0 < metrics["augmented_rows"] == len(made) == metrics["made_back_translation"]
    assert not set(made) & {t for t, o in zip(table["text"], table["origin"]) if o == "original"}
