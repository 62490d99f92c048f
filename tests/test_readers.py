"""Readers accept the CoNLL family and the classification formats, and fail with file + line."""
from __future__ import annotations

import gzip
import json

import pytest

from tinynlp.errors import DataValidationError
from tinynlp.readers import read_conll, read_hf, read_table, read_text
from tinynlp.tagging import to_bio


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_tab_space_multicolumn_and_docstart(tmp_path):
    conll = write(tmp_path / "a.conll", "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
                                        "German JJ B-NP B-MISC\n\nPeter NNP B-NP B-PER\n")
    sentences = read_conll(conll, "bio")
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"], ["Peter"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O", "B-MISC"], ["B-PER"]]
    assert [s.line for s in sentences] == [3, 7]


def test_docstart_lines_number_the_documents(tmp_path):
    from tinynlp.ingestion import concat_records

    with_docs = write(tmp_path / "d.conll", "-DOCSTART- O\n\na O\n\nb O\n-DOCSTART- O\n-DOCSTART- O\n\n"
                                             "c O\n\nd O\n\n-DOCSTART- O\ne O\n")
    sentences = read_conll(with_docs, "bio")
    assert [(s.tokens[0], s.document) for s in sentences] == [("a", 0), ("b", 0), ("c", 1), ("d", 1), ("e", 2)]
    plain = read_conll(write(tmp_path / "p.conll", "x O\n\ny O\n"), "bio")
    assert {s.document for s in plain} == {0}  # no boundaries: one document, the file's sentence order
    joined = concat_records([sentences, plain], "ner")  # a retraining batch never continues a train document
    assert [s.document for s in joined] == [0, 0, 1, 1, 2, 3, 3]


def test_whitespace_only_lines_separate_sentences(tmp_path):
    conll = write(tmp_path / "a.conll", "a\tO\n\t\nb\tB-x\n   \nc\tO\n")
    assert [s.tokens for s in read_conll(conll, "bio")] == [["a"], ["b"], ["c"]]


def test_crlf_and_bom_are_accepted(tmp_path):
    conll = write(tmp_path / "a.conll", b"\xef\xbb\xbfParis\tB-loc\r\nis\tO\r\n\r\nok\tO\r\n")
    sentences = read_conll(conll, "bio")
    assert sentences[0].tokens == ["Paris", "is"] and sentences[0].tags == ["B-loc", "O"]


def test_gzip_is_read(tmp_path):
    path = tmp_path / "a.conll.gz"
    path.write_bytes(gzip.compress(b"a\tO\nb\tB-x\n"))
    assert read_conll(path, "bio")[0].tokens == ["a", "b"]


@pytest.mark.parametrize("scheme,tags,expected", [
    ("iob1", ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]),
    ("bioes", ["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]),
    ("auto", ["B-LOC", "E-LOC", "S-PER"], ["B-LOC", "I-LOC", "B-PER"]),
    ("bio", ["O", "I-PER"], ["O", "I-PER"]),  # strict: left for the bio_transition rule
])
def test_tag_schemes_normalise_to_bio(scheme, tags, expected, tmp_path):
    conll = write(tmp_path / "a.conll", "".join(f"w{i}\t{t}\n" for i, t in enumerate(tags)))
    assert read_conll(conll, scheme)[0].tags == expected


def test_to_bio_keeps_valid_bio_unchanged():
    tags = ["B-a", "I-a", "O", "B-b", "B-b", "I-b"]
    assert to_bio(tags, "iob1") == tags


def test_non_utf8_names_line(tmp_path):
    conll = write(tmp_path / "bad.conll", b"a\tO\nb\tO\n\ncaf\xe9\tO\n")
    with pytest.raises(DataValidationError) as error:
        read_conll(conll, "bio")
    message = str(error.value)
    assert "bad.conll line 4" in message and "utf8_decodable" in message


def test_binary_file_is_refused(tmp_path):
    path = write(tmp_path / "model.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(DataValidationError, match="rule 'text_file'"):
        read_text(path)


def test_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "a.conll.gz"
    path.write_bytes(gzip.compress(b"a\tO\n" * 1000)[:40])
    with pytest.raises(DataValidationError, match="rule 'readable_gzip'"):
        read_text(path)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="rule 'is_file'"):
        read_text(tmp_path)
    with pytest.raises(DataValidationError, match="rule 'file_exists'"):
        read_text(tmp_path / "missing.conll")


def test_ragged_columns_name_lines(tmp_path):
    conll = write(tmp_path / "r.conll", "a\tNN\tO\nb\tNN\tO\nc\tO\n\nd\tNN\tB-x\ne\n")
    with pytest.raises(DataValidationError) as error:
        read_conll(conll, "bio")
    message = str(error.value)
    assert "r.conll line 3, 6" in message and "consistent_columns" in message and "'c\\tO'" in message


def test_tsv_with_header_and_headerless_csv(tmp_path):
    tsv = write(tmp_path / "a.tsv", 'sentence\tlabel\nit "rocks" !\t1\ndull\t0\n')
    frame = read_table(tsv, "tsv", (), "sentence", "label")
    assert frame["text"].tolist() == ['it "rocks" !', "dull"] and frame["label"].tolist() == ["1", "0"]
    assert frame["line"].tolist() == [2, 3]
    csv = write(tmp_path / "b.csv", 'World,"Rain, then sun"\nSports,Goal\n')
    frame = read_table(csv, "csv", ("label", "text"), "text", "label")
    assert frame["text"].tolist() == ["Rain, then sun", "Goal"] and frame["line"].tolist() == [1, 2]


def test_jsonl_null_label_and_bad_line(tmp_path):
    rows = [{"text": "fine", "label": "pos"}, {"text": "meh", "label": None}]
    good = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert read_table(good, "jsonl", (), "text", "label")["label"].tolist() == ["pos", None]
    bad = write(tmp_path / "b.jsonl", '{"text": "x", "label": "a"}\n{"text": oops}\n')
    with pytest.raises(DataValidationError, match=r"b.jsonl line 2: rule 'json_line'"):
        read_table(bad, "jsonl", (), "text", "label")


def test_missing_column_is_named(tmp_path):
    tsv = write(tmp_path / "a.tsv", "review\tlabel\ngood\t1\n")
    with pytest.raises(DataValidationError, match=r"rule 'required_column'.*\['sentence'\]"):
        read_table(tsv, "tsv", (), "sentence", "label")


def test_saved_datasets_are_read(tmp_path):
    import datasets

    ner = datasets.Dataset.from_dict(
        {"tokens": [["Paris", "rocks"], ["ok"]], "ner_tags": [[1, 0], [0]]},
        features=datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                    "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-loc"]))}))
    datasets.DatasetDict({"train": ner}).save_to_disk(str(tmp_path / "ner"))
    sentences = read_hf(f"{tmp_path / 'ner'}#train", "ner", "text", "label", "bio")
    assert sentences[0].tags == ["B-loc", "O"]
    clf = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]},
                                     features=datasets.Features({"text": datasets.Value("string"),
                                                                 "label": datasets.ClassLabel(names=["neg", "pos"])}))
    clf.save_to_disk(str(tmp_path / "clf"))
    assert read_hf(str(tmp_path / "clf"), "classification", "text", "label", "bio")["label"].tolist() == ["neg", "pos"]
