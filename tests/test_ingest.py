"""Every validation rule on bad input: a DataValidationError naming file, line and rule, and the
last good artifacts left byte-identical."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from conftest import DEV, ROOT, TEST, TRAIN, write_conll, write_tsv
from tasks.ingest import run_ingest
from tinynlp.config import parse_params
from tinynlp.errors import DataValidationError

pytestmark = pytest.mark.usefixtures("workspace")


def line_after(rows, offset: int = 0) -> int:
    """The line a sentence appended after `rows` starts on, plus `offset` tokens."""
    return sum(len(text.split()) + 1 for text, _ in rows) + 1 + offset


def params(**ingest):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["ingest"].update(ingest)
    return parse_params(raw)


def snapshot(*roots: str) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture
def good_run():
    metrics = run_ingest(params())
    return metrics, snapshot("data/ingest", "reports/ingest")


def fails_with(good_run, rule: str, *expected: str, **ingest) -> str:
    _, before = good_run
    with pytest.raises(DataValidationError) as error:
        run_ingest(params(**ingest))
    message = str(error.value)
    assert f"rule '{rule}'" in message, message
    for text in expected:
        assert text in message, message
    assert snapshot("data/ingest", "reports/ingest") == before, "last good artifacts changed"
    return message


def test_good_data_is_written_with_label_set(good_run):
    metrics, files = good_run
    assert metrics["train_sentences"] == len(TRAIN) and metrics["labels"] == 5
    labels = json.loads(Path("data/ingest/labels.json").read_text())
    assert labels == {"task": "ner", "labels": ["O", "B-location", "I-location", "B-person", "I-person"]}
    assert Path("reports/ingest/data_docs/index.html").is_file()
    summary = json.loads(Path("reports/ingest/validation.json").read_text())
    assert set(summary["validation"]) == {"train", "dev", "test"}
    assert all("label_in_set" in split["rules"] for split in summary["validation"].values())
    assert all(r["success"] for split in summary["validation"].values() for r in split["rules"].values())
    import datasets
    assert datasets.Dataset.from_parquet("data/ingest/train.parquet").column_names == ["tokens", "tags", "line",
                                                                                   "document"]


def test_tag_outside_label_set(good_run):
    write_conll(Path("data/raw/train.conll"), TRAIN + [("Acme sells tools .", "B-org O O O")])
    message = fails_with(good_run, "label_in_set", f"data/raw/train.conll line {line_after(TRAIN)}:", "'B-org'")
    assert "bio_transition" not in message


def test_i_after_o_in_strict_bio(good_run):
    write_conll(Path("data/raw/dev.conll"), DEV + [("to New York .", "O I-location I-location O")])
    fails_with(good_run, "bio_transition", f"data/raw/dev.conll line {line_after(DEV, 1)}:", "['O', 'I-location']")


def test_iob1_scheme_repairs_the_same_file(good_run):
    write_conll(Path("data/raw/dev.conll"), DEV + [("to New York .", "O I-location I-location O")])
    assert run_ingest(params(tag_scheme="iob1"))["dev_entities"] == 5


def test_token_with_internal_whitespace(good_run):
    Path("data/raw/test.conll").write_text("New York\tB-location\nrocks\tO\n\n" + "Frank\tB-person\n")
    fails_with(good_run, "token_no_whitespace", "data/raw/test.conll line 1", "'New York'")


def test_very_long_line(good_run):
    Path("data/raw/train.conll").write_text(Path("data/raw/train.conll").read_text() + "\n" + "x" * 100_000 + "\tO\n")
    fails_with(good_run, "token_length", f"data/raw/train.conll line {line_after(TRAIN)}:", "no token is longer than 1000")


def test_sentence_length_bound(good_run):
    fails_with(good_run, "sentence_length", f"data/raw/train.conll line {line_after(TRAIN[:2])}", "sentences have 1..5 tokens", max_length=5)


def test_only_docstart_is_an_empty_split(good_run):
    Path("data/raw/dev.conll").write_text("-DOCSTART- O\n\n")
    fails_with(good_run, "non_empty_split", "data/raw/dev.conll", "observed 0")


def test_empty_file(good_run):
    Path("data/raw/test.conll").write_text("")
    fails_with(good_run, "non_empty_split", "data/raw/test.conll")


def test_train_test_overlap(good_run):
    write_conll(Path("data/raw/test.conll"), TEST + TRAIN[:3])
    fails_with(good_run, "train_overlap", "data/raw/test.conll line", "at most 5%", "'Alice lives in Paris .'")


def test_non_utf8_leaves_artifacts(good_run):
    Path("data/raw/train.conll").write_bytes(b"caf\xe9\tO\n")
    fails_with(good_run, "utf8_decodable", "data/raw/train.conll line 1")


def test_retraining_batches_join_train_and_are_validated_as_their_own_files(good_run):
    extra = [("Zed flew to Quito .", "B-person O O B-location O")]
    write_conll(Path("data/batches/20260101T000000Z-aaaa/train.conll"), extra)
    write_conll(Path("data/batches/20260101T000000Z-aaaa/holdout.conll"), TEST[:1])  # never trained on
    metrics = run_ingest(params())
    assert metrics["batches"] == 1 and metrics["train_sentences"] == len(TRAIN) + 1
    assert metrics["test_sentences"] == len(TEST)
    write_conll(Path("data/batches/20260102T000000Z-bbbb/train.conll"), [("Acme sells tools .", "B-org O O O")])
    before = snapshot("data/ingest", "reports/ingest")
    with pytest.raises(DataValidationError) as error:
        run_ingest(params())
    assert "data/batches/20260102T000000Z-bbbb/train.conll line 1:" in str(error.value)
    assert "rule 'label_in_set'" in str(error.value)
    assert snapshot("data/ingest", "reports/ingest") == before


def test_failed_run_keeps_its_report_aside(good_run):
    write_conll(Path("data/raw/train.conll"), TRAIN + [("Acme sells tools .", "B-org O O O")])
    with pytest.raises(DataValidationError):
        run_ingest(params())
    failure = json.loads(Path("reports/failed/ingest/validation.json").read_text())
    assert any("label_in_set" in v for v in failure["violations"])
    assert Path("reports/failed/ingest/data_docs/index.html").is_file()


CLF_TRAIN = [("a fine film", "pos"), ("a dull film", "neg"), ("great acting", "pos"), ("weak plot", "neg")]


@pytest.fixture
def classification(workspace):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["paths"].update(train="data/raw/train.tsv", dev="data/raw/dev.tsv", test="data/raw/test.tsv")
    raw["ingest"].update(task="classification", format="tsv", entity_types=[], labels=["neg", "pos"])
    write_tsv("data/raw/train.tsv", CLF_TRAIN)
    write_tsv("data/raw/dev.tsv", [("so good", "pos"), ("so bad", "neg")])
    write_tsv("data/raw/test.tsv", [("loved it", "pos"), ("hated it", "neg")])
    return raw


def clf_fails(raw, rule: str, *expected: str) -> None:
    with pytest.raises(DataValidationError) as error:
        run_ingest(parse_params(raw))
    assert f"rule '{rule}'" in str(error.value)
    for text in expected:
        assert text in str(error.value)


def test_classification_good_run(classification):
    metrics = run_ingest(parse_params(classification))
    assert (metrics["train_rows"], metrics["train_classes"]) == (4, 2)


def test_classification_label_outside_set(classification):
    write_tsv("data/raw/dev.tsv", [("so good", "pos"), ("so so", "meh")])
    clf_fails(classification, "label_in_set", "data/raw/dev.tsv line 3", "'meh'")


def test_classification_missing_label(classification):
    write_tsv("data/raw/test.tsv", [("loved it", "pos"), ("no idea", ""), ("hated it", "neg")])
    clf_fails(classification, "label_not_null", "data/raw/test.tsv line 3")


def test_classification_one_class_only(classification):
    write_tsv("data/raw/train.tsv", [(t, "pos") for t, _ in CLF_TRAIN])
    clf_fails(classification, "at_least_two_classes", "data/raw/train.tsv")


def test_classification_blank_text(classification):
    write_tsv("data/raw/train.tsv", CLF_TRAIN + [("   ", "pos")])
    clf_fails(classification, "text_not_blank", "data/raw/train.tsv line 6")


def test_classification_duplicates_across_train_and_test(classification):
    longer = [("a fine film from start to end", "pos"), ("a dull film with a weak plot", "neg")]
    write_tsv("data/raw/train.tsv", CLF_TRAIN + longer)
    write_tsv("data/raw/test.tsv", longer + [("loved it", "pos")])
    clf_fails(classification, "train_overlap", "data/raw/test.tsv line 2, 3")



def test_classification_leak_with_personal_data_is_found_and_quoted_masked(classification):
    """The overlap rule compares unmasked texts (masking only what a failure quotes), so a leaked
    row that holds an e-mail address is still found in `report` mode."""
    leaked = ("mail jane.doe@private-mail.org about the film tonight", "pos")
    write_tsv("data/raw/train.tsv", CLF_TRAIN + [leaked])
    write_tsv("data/raw/test.tsv", [leaked, ("loved it", "pos")])
    with pytest.raises(DataValidationError) as error:
        run_ingest(parse_params(classification))
    message = str(error.value)
    assert "rule 'train_overlap'" in message and "data/raw/test.tsv line 2" in message
    assert "jane.doe@private-mail.org" not in message and "about the film tonight" in message

@pytest.mark.slow
@pytest.mark.skipif(not (ROOT.parent / "shared" / "data").is_dir(), reason="../shared is absent")
def test_sst2_example_profile_validates_real_data(tmp_path, monkeypatch):
    """The shipped SST-2 profile points at ../shared data that passes every classification rule."""
    raw = yaml.safe_load((ROOT / "examples/params/sst2.yaml").read_text())
    monkeypatch.chdir(ROOT)
    params = parse_params(raw)
    raw["paths"].update(ingested=str(tmp_path / "ingest"), reports=str(tmp_path / "reports"),
                        allow_outside=[*raw["paths"]["allow_outside"], str(tmp_path)])
    metrics = run_ingest(parse_params(raw))
    assert params.ingest.task == "classification"
    assert (metrics["train_rows"], metrics["train_classes"]) == (60614, 2)
    summary = json.loads((tmp_path / "reports/ingest/validation.json").read_text())
    assert summary["validation"]["dev"]["rules"]["train_overlap"]["success"]


def test_dev_carved_out_of_train_is_seeded_disjoint_and_names_the_train_file(classification):
    rows = [(f"review number {i} was {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(40)]
    write_tsv("data/raw/train.tsv", rows)
    classification["paths"]["dev"] = classification["paths"]["train"]
    classification["ingest"].update(dev_fraction=0.25, split_seed=7)
    metrics = run_ingest(parse_params(classification))
    assert (metrics["train_rows"], metrics["dev_rows"]) == (30, 10)
    import pandas as pd
    train, dev = (pd.read_parquet(f"data/ingest/{s}.parquet") for s in ("train", "dev"))
    assert not set(train["text"]) & set(dev["text"]) and len(set(train["text"]) | set(dev["text"])) == 40
    # each row keeps the line it has in the train file, so an error in dev still names that line
    assert all(rows[line - 2][0] == text for text, line in zip(dev["text"], dev["line"]))
    first = Path("data/ingest/dev.parquet").read_bytes()
    run_ingest(parse_params(classification))
    assert Path("data/ingest/dev.parquet").read_bytes() == first  # seeded: the same dev every run
    write_tsv("data/raw/train.tsv", rows + [("an odd one", "meh")])
    clf_fails(classification, "label_in_set", "data/raw/train.tsv line 42", "'meh'")


def test_ner_dev_carved_out_of_train():
    metrics = run_ingest(_carving_params(dev_fraction=0.5))
    assert metrics["train_sentences"] + metrics["dev_sentences"] == len(TRAIN)
    assert metrics["dev_sentences"] == round(len(TRAIN) * 0.5)


def _carving_params(**ingest):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["ingest"].update(ingest)
    raw["paths"]["dev"] = raw["paths"]["train"]
    return parse_params(raw)


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT.parent / "shared" / "data").is_dir(), reason="../shared is absent")
def test_agnews_example_profile_carves_dev_from_real_data(tmp_path, monkeypatch):
    """AG News ships no dev split: the profile holds 10% of its 10,001-row training file out, four classes."""
    raw = yaml.safe_load((ROOT / "examples/params/agnews.yaml").read_text())
    monkeypatch.chdir(ROOT)
    raw["paths"].update(ingested=str(tmp_path / "ingest"), reports=str(tmp_path / "reports"),
                        allow_outside=[*raw["paths"]["allow_outside"], str(tmp_path)])
    metrics = run_ingest(parse_params(raw))
    assert (metrics["train_rows"], metrics["dev_rows"], metrics["test_rows"]) == (9001, 1000, 7600)
    assert metrics["train_classes"] == metrics["dev_classes"] == 4


# personal data planted in train: an e-mail address in a person's sentence, a phone number split
# over five tokens, and a card number (Luhn-valid test number)
PII_ROWS = [("Alice wrote to alice.smith@example.com today", "B-person O O O O"),
            ("call Bob on 212 - 555 - 0143 now", "O B-person O O O O O O O"),
            ("card 4111 1111 1111 1111 expired", "O O O O O O")]
PLANTED = ("alice.smith@example.com", "555 - 0143", "'555', '-'", "4111 1111")  # as text, as tokens


def test_pii_is_counted_by_default_and_never_written_as_a_value(good_run):
    write_conll(Path("data/raw/train.conll"), TRAIN + PII_ROWS)
    metrics = run_ingest(params())
    summary = json.loads(Path("reports/ingest/validation.json").read_text())
    assert summary["pii"] == {"mode": "report", "found": {
        "train": {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}, "dev": {}, "test": {}}}
    assert metrics["train_pii"] == 3 and summary["validation"]["train"]["rules"]["pii_counted"]["success"]
    # the counts never carry values (the data itself keeps them in this mode: `redact` removes them)
    reports = Path("reports/ingest/validation.json").read_text() + Path("reports/ingest/metrics.json").read_text()
    assert not [value for value in PLANTED if value in reports]


def test_pii_redact_keeps_one_token_per_token_and_the_tags():
    import pyarrow.parquet as pq

    write_conll(Path("data/raw/train.conll"), TRAIN + PII_ROWS)
    run_ingest(params(pii={"mode": "redact", "replacements": {"PHONE_NUMBER": "<phone>"}}))
    rows = pq.read_table("data/ingest/train.parquet").to_pylist()[-3:]
    assert rows[0]["tokens"] == ["Alice", "wrote", "to", "<EMAIL_ADDRESS>", "today"]
    assert rows[1]["tokens"] == ["call", "Bob", "on", *["<phone>"] * 5, "now"]
    assert rows[1]["tags"] == "O B-person O O O O O O O".split()
    written = "".join(p.read_text(errors="ignore") for root in ("data/ingest", "reports/ingest")
                      for p in Path(root).rglob("*") if p.suffix in (".json", ".html", ".md"))
    parquet = "".join(str(pq.read_table(p).to_pylist()) for p in Path("data/ingest").glob("*.parquet"))
    assert not [value for value in PLANTED if value in written + parquet]


def test_pii_fail_names_file_line_and_type_with_the_value_masked(good_run):
    write_conll(Path("data/raw/train.conll"), TRAIN + PII_ROWS)
    message = fails_with(good_run, "no_pii", "data/raw/train.conll", "EMAIL_ADDRESS a***@e***.com",
                         "ingest.pii.mode", str(line_after(TRAIN, 3)), pii={"mode": "fail"})
    assert not [value for value in PLANTED if value in message], message


def test_a_file_of_only_pii_ingests_redacted_and_fails_in_fail_mode(good_run):
    only = [("bob@example.org", "O"), ("+44 20 7946 0958", "O O O O"), ("https://example.net/x?id=7", "O")]
    write_conll(Path("data/raw/train.conll"), TRAIN + only)
    run_ingest(params(pii={"mode": "redact"}))
    summary = json.loads(Path("reports/ingest/validation.json").read_text())
    assert summary["pii"]["found"]["train"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "URL": 1}
    with pytest.raises(DataValidationError, match="no_pii.*3 row"):
        run_ingest(params(pii={"mode": "fail"}))


@pytest.mark.parametrize("pii, named", [({"mdoe": "redact"}, "ingest.pii.mdoe"),
                                        ({"custom": {"EMPLOYEE_ID": "EMP-(\\d{6}"}}, "custom.EMPLOYEE_ID"),
                                        ({"entities": ["EMAIL"]}, "ingest.pii.entities")])
def test_pii_params_mistakes_are_refused_naming_the_key(pii, named):
    from tinynlp.errors import ConfigError

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        params(pii=pii)


def _newswire(story: int) -> list[tuple[str, str]]:
    """A newswire story: a dateline and a section header, as every such corpus repeats them
    across its splits, and a few sentences of its own."""
    city = ["LONDON", "PARIS"][story % 2]
    rows = [(f"{city} 1996-08-{10 + story % 6}", "B-location O"),
            ("SOCCER - ENGLISH LEAGUE RESULTS .", "O O O O O O")]
    return rows + [(f"Alice scored goal number {story * 3 + k} at home .", "B-person O O O O O O O")
                   for k in range(3)]


def test_newswire_datelines_and_headers_are_counted_apart_and_real_leaks_still_fail():
    train = [row for story in range(12) for row in _newswire(story)]
    dev = [row for story in range(12, 20) for row in _newswire(story)]
    write_conll(Path("data/raw/train.conll"), train)
    write_conll(Path("data/raw/dev.conll"), dev)  # 40 rows, 16 of them datelines and headers seen in train
    run_ingest(params())
    rules = json.loads(Path("reports/ingest/validation.json").read_text())["validation"]["dev"]["rules"]
    assert rules["train_overlap"]["success"] and rules["train_overlap"]["unexpected_count"] == 0
    assert rules["train_repeats"]["unexpected_count"] == 7  # the header and six datelines, each counted once
    leaked = dev + train[2:5] + train[7:9]  # five of train's own sentences: 5 of 29 distinct counted texts
    write_conll(Path("data/raw/dev.conll"), leaked)
    with pytest.raises(DataValidationError) as error:
        run_ingest(params())
    message = str(error.value)
    assert "rule 'train_overlap'" in message and "5 row(s) break it" in message
    assert "change ingest.max_overlap" in message and "'Alice scored goal number 0 at home .'" in message
    run_ingest(params(max_overlap=0.2))  # the key it names relaxes it


def test_data_docs_never_render_train_texts_and_mask_personal_data():
    secret = "jane.doe@private-mail.org"
    write_conll(Path("data/raw/train.conll"), TRAIN + [(f"write to {secret} now please", "O O O O O")])
    write_conll(Path("data/raw/dev.conll"), DEV + [(f"write to {secret} now please", "O O O O O")])
    run_ingest(params(max_overlap=0.5))
    docs = "".join(p.read_text(encoding="utf-8", errors="replace")
                   for p in Path("reports/ingest").rglob("*") if p.is_file())
    assert secret not in docs and "private-mail" not in docs
    assert TRAIN[0][0] not in docs  # the overlap rule's frame holds lines and flags, not train texts
