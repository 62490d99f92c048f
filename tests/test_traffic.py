"""From served traffic back to retraining: capture files written by `tinynlp serve`, drift on
unlabelled data (a capture folder, plain text, a token-only CoNLL file) and the labelling queue."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli import serve as serve_cli
from conftest import TRAIN, write_conll
from test_drift import NER_LABELS, ODD, drift_template, drift_workspace  # noqa: F401  (fixtures)
from tinynlp import labelling
from tinynlp.capture import CaptureWriter, Served, read_capture, read_plain_text, read_tokens_only
from tinynlp.config import ServeConfig, load_params, parse_params
from tinynlp.errors import DataValidationError
from tinynlp.predict import split_words

MODEL = {"variant": "tiny", "version": "v1"}


def served(text: str, tag: str = "O", confidence: float = 0.9) -> dict:
    words = split_words(text)
    return Served(text, [tag] * len(words), confidence, confidence - 0.1, words).record(MODEL)


def test_capture_rotates_files_and_keeps_at_most_max_files(tmp_path):
    writer = CaptureWriter(tmp_path / "capture", max_file_bytes=400, max_files=3, queue_size=1000)
    writer.offer(served(f"Alice number {i} lives in Paris .") for i in range(30))
    writer.close()
    files = sorted((tmp_path / "capture").glob("capture-*.jsonl"))
    assert len(files) == 3 and writer.written == 30
    assert all(f.stat().st_size <= 400 for f in files)
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert records[-1]["text"] == "Alice number 29 lives in Paris ."   # the newest kept, the oldest deleted
    assert set(records[-1]) == {"time", "model", "text", "words", "tags", "confidence", "least"}


def test_a_failing_disk_drops_records_with_a_warning_and_a_count_never_an_error(tmp_path, caplog):
    (tmp_path / "capture").write_text("a file where the folder should be")
    dropped = []
    writer = CaptureWriter(tmp_path / "capture", 1000, 2, 1000, on_drop=lambda reason, n: dropped.append((reason, n)))
    with caplog.at_level(logging.WARNING):
        writer.offer(served("Alice .") for _ in range(5))
        writer.close()
    assert dropped == [("write_failed", 1)] * 5 and writer.written == 0
    assert sum("requests unaffected" in r.getMessage() for r in caplog.records) == 1  # warned once, not per record


def test_a_full_queue_drops_records_not_requests(tmp_path):
    dropped = []
    writer = CaptureWriter(tmp_path / "c", 10_000, 2, queue_size=2, on_drop=lambda reason, n: dropped.append((reason, n)))
    writer._thread = object()   # no writer draining: the queue fills
    writer.offer(served("Alice .") for _ in range(5))
    assert dropped == [("queue_full", 3)]


def test_capture_redacts_personal_data_on_the_writer_thread(tmp_path):
    from tinynlp import pii

    writer = CaptureWriter(tmp_path / "c", 10_000, 2, 100, lambda t: pii.redact_text(t)[0],
                           lambda w: pii.redact_tokens(w)[0])
    writer.offer([served("mail jane.doe@example.org now")])
    writer.close()
    written = next((tmp_path / "c").glob("*.jsonl")).read_text()
    assert "jane.doe" not in written and "<EMAIL_ADDRESS>" in written


def test_a_half_written_capture_line_is_read_up_to_it_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "capture"
    folder.mkdir()
    good = "".join(json.dumps(served(f"text {i} .")) + "\n" for i in range(3))
    (folder / "capture-20261206T100000000000Z-1-0001.jsonl").write_text(good + '{"time": "2026-12-06", "te')
    (folder / "capture-20261206T110000000000Z-1-0002.jsonl").write_text(good)
    with caplog.at_level(logging.WARNING):
        rows = read_capture(folder, split_words)
    assert len(rows.texts) == 6 and rows.kind == "capture"
    assert any("capture-20261206T100000000000Z-1-0001.jsonl line 4: corrupt or half-written" in r.getMessage()
               for r in caplog.records)


def test_unlabelled_readers_and_their_errors(tmp_path):
    with pytest.raises(DataValidationError, match="no capture-\\*.jsonl files"):
        read_capture(tmp_path, split_words)
    (tmp_path / "texts.txt").write_text("Alice lives in Paris .\n\n  \nBob works in Rome .\n")
    rows = read_plain_text(tmp_path / "texts.txt", split_words)
    assert rows.texts == ["Alice lives in Paris .", "Bob works in Rome ."] and rows.origins[1][1] == 4
    (tmp_path / "tokens.conll").write_text("-DOCSTART-\n\nAlice\nlives\n\nBob\nworks\n")
    rows = read_tokens_only(tmp_path / "tokens.conll")
    assert rows.words == [["Alice", "lives"], ["Bob", "works"]] and [o[1] for o in rows.origins] == [3, 6]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataValidationError, match="empty.txt.*no texts"):
        read_plain_text(tmp_path / "empty.txt", split_words)


def test_labelling_queue_takes_the_least_sure_distinct_texts_of_the_new_region():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (200, 8)) + np.r_[5, np.zeros(7)]
    familiar = reference[:20] + rng.normal(0, 0.01, (20, 8))
    novel = rng.normal(0, 1, (40, 8)) - np.r_[5, np.zeros(7)]
    vectors = np.vstack([familiar, novel])
    texts = [f"t{i}" for i in range(60)]
    texts[25] = texts[24].upper()   # a duplicate (case aside)
    least = np.r_[np.full(20, 0.1), rng.uniform(0.3, 0.9, 40)]   # the familiar rows are the least sure
    chosen, how = labelling.uncertainty_queue(vectors, reference, least, texts, size=10, seed=0)
    assert len(chosen) == 10 and all(i >= 20 for i in chosen), chosen   # only the new region
    assert 25 not in chosen and how["candidates"] == 59
    assert [least[i] for i in chosen] == sorted(least[i] for i in chosen)
    assert len(labelling.random_queue(texts, 10, seed=0)) == 10


@pytest.fixture
def capture_of(drift_workspace):
    def write(name: str, rows) -> Path:
        writer = CaptureWriter(Path(name), 10_000_000, 5, 10_000)
        writer.offer(served(text) for text, _ in rows)
        writer.close()
        return Path(name)
    return write


def test_drift_on_a_capture_folder_decides_without_labels_and_writes_a_labelling_queue(capture_of):
    from tinynlp.drift_check import run_drift

    params = load_params("params.yaml")
    same = run_drift(params, capture_of("same", TRAIN))
    assert not same["labelled"] and same["input"] == "capture"
    assert same["signals_available"] == ["embedding", "length", "vocabulary", "predictions"]
    assert same["decided_on"] == ["embedding", "predictions"]
    assert not same["verdict"]["drifted"], same["verdict"]["reasons"]
    assert "labelling_queue" not in same and not Path("data/labelling").exists()

    shifted = run_drift(params, capture_of("odd", ODD + [(f"{n} {n + 1} 99 .", "") for n in range(30)]))
    assert shifted["verdict"]["drifted"], shifted["verdict"]["reasons"]
    queue = shifted["labelling_queue"]
    conll = Path(queue["file"])
    assert conll.parent == Path("data/labelling") and conll.suffix == ".conll" and queue["texts"] >= 1
    sentences = [block.splitlines() for block in conll.read_text().strip().split("\n\n")]
    assert len(sentences) == queue["texts"] and all(len(line.split("\t")) == 2 for s in sentences for line in s)
    assert all(line.split("\t")[1] in NER_LABELS for s in sentences for line in s)   # pre-annotated
    assert json.loads(conll.with_suffix(".json").read_text())["rows"][0]["origin"].startswith("odd/capture-")
    texts = [" ".join(line.split("\t")[0] for line in s) for s in sentences]
    assert len(set(texts)) == len(texts)   # each text once


def test_drift_on_plain_text_and_token_only_files(drift_workspace):
    from tinynlp.drift_check import run_drift

    params = load_params("params.yaml")
    Path("texts.txt").write_text("".join(text + "\n" for text, _ in TRAIN))
    assert run_drift(params, "texts.txt")["input"] == "text"
    Path("tokens.conll").write_text("".join("".join(w + "\n" for w in text.split()) + "\n" for text, _ in TRAIN))
    report = run_drift(params, "tokens.conll")
    assert report["input"] == "conll" and report["batch_rows"] == len(TRAIN)
    labelled = run_drift(params, write_conll(Path("labelled.conll"), TRAIN))
    assert labelled["labelled"] and "labels" in labelled["signals_available"]


def test_drift_command_on_an_empty_folder_exits_with_a_clear_error(drift_workspace, capsys):
    from cli.main import main as cli

    Path("nothing").mkdir()
    assert cli(["drift", "nothing"]) == 3
    assert "nothing: rule 'capture_files'" in capsys.readouterr().err


def test_serve_captures_served_texts_redacted_when_ingestion_redacts(drift_workspace):
    from fastapi.testclient import TestClient

    params = load_params("params.yaml")
    pii_cfg = params.ingest.pii.model_copy(update={"mode": "redact"})
    cfg = ServeConfig(capture={"enabled": True, "dir": "data/capture"})
    with TestClient(serve_cli.build_app("models/promoted", cfg=cfg, pii_cfg=pii_cfg)) as client:
        answer = client.post("/predict", json={"texts": ["Alice lives in Paris .", "mail jane.doe@example.org now"]})
        assert answer.status_code == 200
        assert "jane.doe@example.org" in answer.text   # responses are not redacted unless serve.redact_pii
        assert "tinynlp_captured_texts_total 2.0" in client.get("/metrics").text
    records = [json.loads(line) for f in Path("data/capture").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert [r["words"][0] for r in records] == ["Alice", "mail"]
    assert "jane.doe" not in json.dumps(records) and records[0]["model"]["variant"] == "tiny"
    assert all(len(r["tags"]) == len(r["words"]) and 0 <= r["least"] <= r["confidence"] <= 1 for r in records)


@pytest.mark.parametrize("section, values, named", [
    ("serve", {"capture": {"max_files": 0}}, "serve.capture.max_files"),
    ("serve", {"capture": {"max_file_bytes": -1}}, "serve.capture.max_file_bytes"),
    ("serve", {"capture": {"enable": True}}, "serve.capture.enable"),
    ("drift", {"decide_on_unlabelled": ["labels"]}, "drift.decide_on_unlabelled"),
])
def test_traffic_params_mistakes_are_refused_naming_the_key(section, values, named):
    from tinynlp.errors import ConfigError

    raw = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("params.yaml").read_text())
    raw[section] = {**raw[section], **values}
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_params(raw, check_files=False)


def test_traffic_check_flow_writes_a_labelling_queue_and_its_artifact(capture_of, prefect_backend):
    from prefect.client.orchestration import get_client

    from flows.traffic import traffic_check

    capture_of("data/capture", ODD + [(f"{n} {n + 1} 99 .", "") for n in range(30)])
    state = traffic_check(return_state=True)   # serve.capture.dir by default
    result = state.result()
    assert result["drifted"] and Path(result["labelling_queue"]).is_file()
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    assert any(a.key == "labelling-queue" for a in artifact)


def test_traffic_check_deployment_uses_its_cron_from_params(prefect_backend):
    from prefect.client.orchestration import get_client

    from flows.deploy import TRAFFIC_DEPLOYMENT, build_traffic

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", check_files=False)
    deployment_id = build_traffic(params).apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.name == TRAFFIC_DEPLOYMENT
    assert [s.schedule.cron for s in deployment.schedules] == [params.drift.traffic_schedule]


def test_a_classification_file_without_its_label_column_is_read_as_unlabelled(workspace):
    from conftest import use_classification
    from tinynlp.drift_check import read_unlabelled

    use_classification(workspace)
    params = load_params("params.yaml")
    Path("texts.tsv").write_text("text\nAlice lives in Paris\n\nBob works in Rome\n", encoding="utf-8")
    rows = read_unlabelled("texts.tsv", params)
    assert rows.kind == "table" and rows.texts == ["Alice lives in Paris", "Bob works in Rome"]
    assert [line for _, line in rows.origins] == [2, 4]
    assert read_unlabelled("data/raw/train.tsv", params) is None   # labelled: validated as before
    Path("empty.tsv").write_text("text\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="empty.tsv.*no texts"):
        read_unlabelled("empty.tsv", params)
