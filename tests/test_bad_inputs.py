"""A corpus of bad inputs, in one place: each kind goes through the real entry point (the ingest
stage, params loading, the pretrain stage, a stage model's loader, a retraining batch's validation)
in a workspace that already holds a good run. Each must fail with a DataValidationError or
ConfigError whose message names the file, the line or row, the rule and examples, and leave the
last good artifacts byte-identical. Accepted variants (BOM, CRLF) must ingest to the very same bytes.

Small text files live in tests/bad_inputs/; binary, huge or byte-exact inputs (non-UTF-8, NUL bytes,
a 100k-character line, truncated gzip and safetensors, BOM, CRLF) are generated from the good data.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import TRAIN, as_classification, make_workspace, use_classification
from tasks.ingest import run_ingest
from tinynlp.ingestion import validate_batch
from tinynlp.config import key_lines, load_params
from tinynlp.errors import ConfigError, DataValidationError

CORPUS = Path(__file__).parent / "bad_inputs"
# what a good run left and a bad input must not touch
GOOD_ARTIFACTS = ("data/ingest", "data/batches", "models", "reports/ingest", "reports/pretrain")
# a successful re-run rewrites its Data Docs (time stamps): accepted inputs compare these
DATA_ARTIFACTS = ("data/ingest", "models")
NER_LABELS = "['O', 'B-location', 'I-location', 'B-person', 'I-person']"
CLF_LABELS = "['no_place', 'place']"


# --- workspaces -------------------------------------------------------------------------------------

def _stage_model(labels: list[str], source: str, target: Path) -> None:
    """A saved stage model (weights, tokenizer, pipeline.json), as finetune writes it."""
    from tinynlp.model_dir import save_model
    from tinynlp import modeling
    from tinynlp.heads import ModelSpec

    model = modeling.load_classifier(source, labels, "AutoModelForTokenClassification", seed=0)
    target.mkdir(parents=True)
    save_model(target, model, modeling.load_tokenizer(source), ModelSpec("ner", labels, 32, 4), source)


@pytest.fixture(scope="module")
def templates(tmp_path_factory, tiny_bert) -> dict[str, Path]:
    """One good workspace per task, built once: NER (ingest, pretrain pass-through of the tiny BERT,
    a fine-tuned-like model in models/finetune) and classification (ingest)."""
    from tasks.pretrain import run_pretrain

    base = tmp_path_factory.mktemp("bad-inputs")
    ner, clf = make_workspace(base / "ner", tiny_bert), make_workspace(base / "clf", tiny_bert)
    use_classification(clf)
    with contextlib.chdir(ner):
        run_ingest(load_params())
        run_pretrain(load_params())
        labels = json.loads(Path("data/ingest/labels.json").read_text())["labels"]
        _stage_model(labels, "models/pretrain", Path("models/finetune"))
    with contextlib.chdir(clf):
        run_ingest(load_params())
    return {"ner": ner, "clf": clf}


def snapshot(roots=GOOD_ARTIFACTS) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


def leftovers() -> list[str]:
    """Staging or retired copies an atomic write would leave if it were interrupted."""
    return [str(p) for root in ("data", "models") if Path(root).is_dir() for p in Path(root).iterdir()
            if re.match(r"\..*\.(tmp|old)-", p.name)]


# --- what the cases do ------------------------------------------------------------------------------

def put(name: str, target: str) -> None:
    """A corpus file as one raw split (or batch) of the workspace."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CORPUS / name, target)


def patch_params(changes: dict) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def patch_params_from(name: str, key: tuple[str, ...]) -> dict:
    """Merge a corpus file into params.yaml; the line the offending key landed on, for the message."""
    patch_params(yaml.safe_load((CORPUS / name).read_text()))
    return {"line": key_lines(Path("params.yaml").read_text(), "params.yaml")[key]}


def append_to_params(name: str) -> dict:
    """Append a corpus file to params.yaml as text (merging would hide a key written twice)."""
    first = key_lines(Path("params.yaml").read_text(), "params.yaml")[("finetune",)]
    ends = Path("params.yaml").read_text().count("\n")
    with open("params.yaml", "a") as params:
        params.write((CORPUS / name).read_text())
    again = ends + next(i for i, l in enumerate((CORPUS / name).read_text().splitlines(), 1) if l.startswith("finetune:"))
    return {"first": first, "again": again}


def good_train() -> bytes:
    return Path("data/raw/train.conll").read_bytes()


def lines_in(data: bytes) -> int:
    return data.count(b"\n")


def ingest():
    return run_ingest(load_params())


def pretrain():
    from tasks.pretrain import run_pretrain

    return run_pretrain(load_params())


def load_downloaded_model():
    from tinynlp.model_dir import load_model

    return load_model("downloads/model")


def validate_incoming_batch():
    with tempfile.TemporaryDirectory() as docs:
        return validate_batch("data/incoming/batch.tsv", load_params(), docs)


# generated inputs: each writes its file and returns facts the expected message contains

def long_line() -> dict:
    data = good_train() + b"\n" + b"x" * 100_000 + b"\tO\n"
    Path("data/raw/train.conll").write_bytes(data)
    return {"line": lines_in(data)}


def non_utf8() -> dict:
    head = good_train() + b"\n"
    Path("data/raw/train.conll").write_bytes(head + b"caf\xe9\tO\n")
    return {"line": lines_in(head) + 1, "byte": len(head) + 3}


def binary() -> dict:
    Path("data/raw/train.conll").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
    return {}


def truncated_gzip() -> dict:
    import zlib

    whole = gzip.compress(good_train() * 20, mtime=0)
    cut = whole[: len(whole) // 2]
    Path("data/raw/train.conll.gz").write_bytes(cut)
    patch_params({"paths": {"train": "data/raw/train.conll.gz"}})
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    return {"line": lines_in(readable) + (not readable.endswith(b"\n"))}


def with_bom() -> None:
    Path("data/raw/train.conll").write_bytes(b"\xef\xbb\xbf" + good_train())


def with_crlf() -> None:
    for split in ("train", "dev", "test"):
        path = Path(f"data/raw/{split}.conll")
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def tsv_with_bom_and_crlf() -> None:
    for split in ("train", "dev", "test"):
        path = Path(f"data/raw/{split}.tsv")
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))


def headerless_csv_with_extra_column() -> None:
    """Header-less CSV splits (label, text) and a dev file whose rows all carry a third field: pandas
    used to take the extra leading field as the index and shift text into label silently."""
    for split in ("train", "test"):
        rows = [line.split("\t") for line in Path(f"data/raw/{split}.tsv").read_text().splitlines()[1:]]
        Path(f"data/raw/{split}.csv").write_text("".join(f"{label},{text}\n" for text, label in rows))
    put("clf_headerless_extra_column.csv", "data/raw/dev.csv")
    patch_params({"paths": {"train": "data/raw/train.csv", "dev": "data/raw/dev.csv", "test": "data/raw/test.csv"},
                  "ingest": {"format": "csv", "columns": ["label", "text"]}})


def checkpoint_copy(source: str, target: str) -> Path:
    shutil.copytree(source, target)
    return Path(target)


def truncate(weights: Path) -> dict:
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    return {"size": len(full) // 2, "declared": len(full)}


def truncated_checkpoint() -> dict:
    directory = checkpoint_copy("models/pretrain", "downloads/tiny-bert")
    patch_params({"pretrain": {"checkpoint": "downloads/tiny-bert"}})
    return truncate(directory / "model.safetensors")


def truncated_stage_model() -> dict:
    return truncate(checkpoint_copy("models/finetune", "downloads/model") / "model.safetensors")


def checkpoint_without_tokenizer() -> None:
    directory = checkpoint_copy("models/pretrain", "downloads/tiny-bert")
    (directory / "tokenizer.json").unlink()  # tokenizer_config.json stays: a partial copy
    patch_params({"pretrain": {"checkpoint": "downloads/tiny-bert"}})


@dataclass(frozen=True)
class Case:
    kind: str
    template: str                            # "ner" or "clf"
    prepare: Callable[[], dict | None]       # writes the bad input into the workspace (the cwd)
    entry: Callable[[], object]              # the real entry point
    error: type | None                       # None: the input is accepted
    patterns: tuple[str, ...] = ()           # regexes the message must contain, formatted with prepare's facts
    corpus: tuple[str, ...] = field(default=())   # the corpus files it uses


def corpus_case(kind, template, name, target, entry, error, *patterns) -> Case:
    return Case(kind, template, lambda: put(name, target), entry, error, patterns, (name,))


def params_case(kind, name, key, *patterns) -> Case:
    return Case(kind, "ner", lambda: patch_params_from(name, key), ingest, ConfigError, patterns, (name,))


CASES = [
    # --- raw NER splits through the ingest stage --------------------------------------------------
    corpus_case("empty file", "ner", "empty.conll", "data/raw/test.conll", ingest, DataValidationError,
                r"data/raw/test\.conll: rule 'non_empty_split' failed: the split has at least one sentence; "
                r"observed 0"),
    corpus_case("only -DOCSTART-", "ner", "only_docstart.conll", "data/raw/dev.conll", ingest, DataValidationError,
                r"data/raw/dev\.conll: rule 'non_empty_split' failed: the split has at least one sentence; observed 0"),
    Case("non-UTF-8 bytes", "ner", non_utf8, ingest, DataValidationError,
         (r"data/raw/train\.conll line {line}: rule 'utf8_decodable' failed: bytes that are not UTF-8 at byte "
          r"{byte}; e\.g\. 'e9 09 4f 0a'",)),
    Case("BOM (accepted)", "ner", with_bom, ingest, None),
    Case("CRLF line ends (accepted)", "ner", with_crlf, ingest, None),
    corpus_case("ragged columns (CoNLL)", "ner", "ragged_columns.conll", "data/raw/train.conll", ingest,
                DataValidationError,
                r"data/raw/train\.conll line 4, 7: rule 'consistent_columns' failed: 2 line\(s\) without 2 columns "
                r"as on line 1 \(token first, tag last\); e\.g\. 'Yann\\tNNP\\tB-person', 'Xavier'"),
    corpus_case("tag not in the label set", "ner", "unknown_tag.conll", "data/raw/train.conll", ingest,
                DataValidationError,
                r"data/raw/train\.conll line 7: rule 'label_in_set' failed: 1 row\(s\) break it \(tags are in the "
                rf"label set {re.escape(NER_LABELS)}\); to allow it, change ingest\.entity_types; e\.g\. 'B-org'"),
    corpus_case("I- after O (strict BIO)", "ner", "i_after_o.conll", "data/raw/dev.conll", ingest,
                DataValidationError,
                r"data/raw/dev\.conll line 4, 9: rule 'bio_transition' failed: 2 row\(s\) break it \(I-X only "
                r"continues a B-X or I-X chunk\); e\.g\. \['O', 'I-location'\], \['B-person', 'I-location'\]"),
    corpus_case("token with internal whitespace", "ner", "token_whitespace.conll", "data/raw/test.conll", ingest,
                DataValidationError,
                r"data/raw/test\.conll line 1, 4: rule 'token_no_whitespace' failed: 2 row\(s\) break it \(tokens "
                r"contain no whitespace\); e\.g\. 'New York', 'San\\xa0Diego'"),
    Case("100k-character line", "ner", long_line, ingest, DataValidationError,
         (r"data/raw/train\.conll line {line}: rule 'token_length' failed: 1 row\(s\) break it \(no token is longer "
          r"than 1000 characters\); to allow it, change ingest\.max_token_chars; e\.g\. 'x{{60}}\.\.\.'",)),
    Case("binary file", "ner", binary, ingest, DataValidationError,
         (r"data/raw/train\.conll line 3: rule 'text_file' failed: binary content \(NUL byte at byte 8\); "
          r"e\.g\. '0d 0a 1a 0a 00 00 00 0d'",)),
    Case("truncated gzip", "ner", truncated_gzip, ingest, DataValidationError,
         (r"data/raw/train\.conll\.gz line {line}: rule 'readable_gzip' failed: truncated gzip: the stream breaks "
          r"off after \d+ decompressed bytes, in line {line}, without its end-of-stream marker",)),
    # --- raw classification splits through the ingest stage ----------------------------------------
    Case("BOM and CRLF in TSV (accepted)", "clf", tsv_with_bom_and_crlf, ingest, None),
    corpus_case("classification label outside the set", "clf", "clf_label_outside.tsv", "data/raw/dev.tsv", ingest,
                DataValidationError,  # line 5: the blank line 4 is counted
                r"data/raw/dev\.tsv line 5: rule 'label_in_set' failed: 1 row\(s\) break it \(labels are in the "
                rf"label set {re.escape(CLF_LABELS)}\); to allow it, change ingest\.labels; e\.g\. 'maybe'"),
    corpus_case("missing text column", "clf", "clf_missing_text_column.tsv", "data/raw/train.tsv", ingest,
                DataValidationError,
                r"data/raw/train\.tsv line 1: rule 'required_column' failed: missing column\(s\) \['text'\]; "
                r"found \['review', 'label'\]"),
    corpus_case("NaN/None labels", "clf", "clf_null_labels.tsv", "data/raw/dev.tsv", ingest, DataValidationError,
                r"data/raw/dev\.tsv line 4, 5, 6, 7: rule 'label_not_null' failed: 4 row\(s\) break it \(every row "
                r"has a label\)$"),
    corpus_case("rows duplicated across train/test", "clf", "clf_duplicates_of_train.tsv", "data/raw/test.tsv",
                ingest, DataValidationError,
                r"data/raw/test\.tsv line 3, 4: rule 'train_overlap' failed: 2 row\(s\) break it \(at most 5% of "
                r"distinct texts of 4\+ words also occur in train, templates repeated within train aside\); to allow "
                r"it, change ingest\.max_overlap \(ingest\.overlap_min_words sets what counts\); "
                r"e\.g\. 'Alice lives in Paris \.', 'nothing happened today \.'"),
    corpus_case("split with one class only", "clf", "clf_one_class.tsv", "data/raw/train.tsv", ingest,
                DataValidationError,
                r"data/raw/train\.tsv: rule 'at_least_two_classes' failed: the split has at least two classes; "
                r"observed 1"),
    corpus_case("ragged columns (TSV)", "clf", "clf_ragged_columns.tsv", "data/raw/train.tsv", ingest,
                DataValidationError,
                r"data/raw/train\.tsv line 3, 4: rule 'consistent_columns' failed: 2 row\(s\) with 1 or 3 field\(s\) "
                r"where the header on line 1 has 2 \['text', 'label'\]; e\.g\. 'nothing to report \.\\tno_place\\textra', "
                r"'Yann runs in Lima \.'"),
    corpus_case("duplicated column name", "clf", "clf_duplicate_header.tsv", "data/raw/train.tsv", ingest,
                DataValidationError,
                r"data/raw/train\.tsv line 1: rule 'unique_columns' failed: column name\(s\) \['label'\] occur more "
                r"than once in \['text', 'label', 'label'\]"),
    Case("extra field in a header-less CSV", "clf", headerless_csv_with_extra_column, ingest, DataValidationError,
         (r"data/raw/dev\.csv line 1, 2: rule 'consistent_columns' failed: 2 row\(s\) with 3 field\(s\) where "
          r"ingest\.columns names 2 \['label', 'text'\]; e\.g\. 'place,Zoe swims in Quito \.,twitter'",),
         ("clf_headerless_extra_column.csv",)),
    # --- params.yaml: rejected by load_params before the stage starts ------------------------------
    params_case("params: unknown key", "params_unknown_key.yaml", ("finetune", "lerning_rate"),
                r"params\.yaml is invalid:\n  finetune\.lerning_rate: unknown key \(line {line}\)"),
    params_case("params: wrong type", "params_wrong_type.yaml", ("finetune", "epochs"),
                r"params\.yaml is invalid:\n  finetune\.epochs: Input should be a valid integer.*\(got 'three'\) "
                r"\(line {line}\)"),
    params_case("params: negative learning rate", "params_negative_lr.yaml", ("finetune", "learning_rate"),
                r"params\.yaml is invalid:\n  finetune\.learning_rate: Input should be greater than 0 "
                r"\(got -0\.0001\) \(line {line}\)"),
    Case("params: a key written twice", "ner", lambda: append_to_params("params_duplicate_key.yaml"), ingest,
         ConfigError, (r"params\.yaml:{again}: finetune: duplicate key \(first written at line {first}\); YAML would "
                       r"keep only the last value",), ("params_duplicate_key.yaml",)),
    params_case("wrong path", "params_wrong_path.yaml", ("paths", "train"),
                r"params\.yaml:{line}: paths\.train: file not found: data/raw/trian\.conll"),
    params_case("directory where a file is expected", "params_directory.yaml", ("paths", "dev"),
                r"params\.yaml:{line}: paths\.dev: expected a file, found a directory: data/raw"),
    # --- models ------------------------------------------------------------------------------------
    Case("truncated safetensors checkpoint", "ner", truncated_checkpoint, pretrain, ConfigError,
         (r"downloads/tiny-bert/model\.safetensors: truncated safetensors file \({size} bytes, its header declares "
          r"{declared}\); the checkpoint is incomplete",)),
    Case("truncated safetensors stage model", "ner", truncated_stage_model, load_downloaded_model, ConfigError,
         (r"downloads/model/model\.safetensors: truncated safetensors file \({size} bytes, its header declares "
          r"{declared}\)",)),
    Case("model directory missing its tokenizer", "ner", checkpoint_without_tokenizer, pretrain, ConfigError,
         (r"downloads/tiny-bert: no tokenizer files \(a vocabulary: tokenizer\.json, vocab\.txt, vocab\.json, "
          r"\*\.model, \*\.spm\); only \['tokenizer_config\.json'\], which hold no vocabulary",)),
    # --- a retraining batch -------------------------------------------------------------------------
    corpus_case("drifted schema in a retraining batch", "clf", "batch_new_columns.tsv", "data/incoming/batch.tsv",
                validate_incoming_batch, DataValidationError,
                r"data/incoming/batch\.tsv line 1: rule 'schema_matches_train' failed: column\(s\) \['source', 'lang'\] "
                r"that the training split data/raw/train\.tsv does not have \(its columns: \['text', 'label'\]; "
                r"the batch's: \['text', 'label', 'source', 'lang'\]\); e\.g\. 'source', 'lang'"),
]


@pytest.fixture
def copy_of(templates, tmp_path, monkeypatch):
    def make(template: str) -> Path:
        workspace = shutil.copytree(templates[template], tmp_path / "ws", symlinks=True)
        monkeypatch.chdir(workspace)
        return workspace
    return make


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "_", c.kind).strip("_") for c in CASES])
def test_bad_input(case: Case, copy_of):
    copy_of(case.template)
    before, good_metrics = snapshot(), Path("reports/ingest/metrics.json").read_text()
    facts = case.prepare() or {}
    if case.error is None:
        assert case.entry() == json.loads(good_metrics)
        assert snapshot(DATA_ARTIFACTS) == {k: v for k, v in before.items() if k.startswith(DATA_ARTIFACTS)}, \
            "an accepted variant of the good data must give the very same artifacts"
        return
    with pytest.raises(case.error) as error:
        case.entry()
    message = str(error.value)
    for pattern in case.patterns:
        assert re.search(pattern.format(**facts), message), f"{pattern.format(**facts)!r} not in:\n{message}"
    if isinstance(error.value, DataValidationError):
        assert len(error.value.violations) == 1, f"one rule should fail, not:\n{message}"
    assert snapshot() == before, "the last good artifacts changed"
    assert not leftovers(), leftovers()


def test_the_stage_commands_exit_3_on_bad_data_and_2_on_bad_params(copy_of, caplog):
    """The shells' exit codes (tinynlp.errors): `python -m tasks` as DVC runs it, and `tinynlp stage`."""
    from cli.main import main as cli

    copy_of("ner")
    before = snapshot()
    put("unknown_tag.conll", "data/raw/train.conll")
    result = subprocess.run([sys.executable, "-m", "tasks", "ingest"], capture_output=True, text=True, check=False)
    assert result.returncode == 3, result.stderr
    assert "ingest failed" in result.stderr and "data/raw/train.conll line 7: rule 'label_in_set'" in result.stderr
    assert snapshot() == before and not leftovers()

    patch_params_from("params_negative_lr.yaml", ("finetune", "learning_rate"))
    assert cli(["stage", "ingest"]) == 2
    assert "ingest failed: params.yaml is invalid:\n  finetune.learning_rate: Input should be greater than 0" \
        in caplog.text
    assert snapshot() == before


def test_the_corpus_covers_every_kind_and_every_file_is_used():
    used = {name for case in CASES for name in case.corpus}
    assert len(CASES) >= 20 and len({c.kind for c in CASES}) == len(CASES)
    assert sorted(p.name for p in CORPUS.iterdir() if p.name != "README.md") == sorted(used)


def test_a_batch_with_the_training_columns_or_fewer_passes(copy_of):
    """The schema check refuses new columns only: the flow's own rendering (text and label) passes."""
    copy_of("clf")
    Path("data/incoming").mkdir(parents=True)
    rows = as_classification(TRAIN[7:10])  # both classes: a batch passes the training split's rules
    Path("data/incoming/batch.tsv").write_text("label\ttext\n" + "".join(f"{l}\t{t}\n" for t, l in rows))
    assert validate_incoming_batch()["label"].tolist() == ["place", "place", "no_place"]


# --- reader details the corpus relies on ------------------------------------------------------------

def test_table_rows_are_numbered_by_the_line_they_start_on(tmp_path):
    """Blank lines and quoted line breaks are counted, so errors point at the right line."""
    from tinynlp.readers import read_table

    path = tmp_path / "a.csv"
    path.write_bytes(b'text,label\r\n"two\r\nlines",a\r\n\r\nplain,b\r\n"with ""quotes"", and comma",a\r\n')
    frame = read_table(path, "csv", (), "text", "label")
    assert frame["line"].tolist() == [2, 5, 6]
    assert frame["text"].tolist() == ["two\nlines", "plain", 'with "quotes", and comma']


def test_gzip_members_and_zero_padding_are_read(tmp_path):
    from tinynlp.readers import read_text

    path = tmp_path / "a.conll.gz"
    path.write_bytes(gzip.compress(b"a\tO\n") + b"\0" * 8 + gzip.compress(b"b\tO\n") + b"\0" * 8)
    assert read_text(path) == "a\tO\nb\tO\n"
    path.write_bytes(b"a\tO\n")
    with pytest.raises(DataValidationError, match=r"a\.conll\.gz: rule 'readable_gzip' failed: not a readable gzip"):
        read_text(path)
