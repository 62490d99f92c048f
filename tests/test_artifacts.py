"""What the Prefect UI shows besides logs: summaries built from the stages' report files, and the
training routine's progress reports reaching only the listener of the thread that trains."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from flows.artifacts import training_summary, validation_summary
from tinynlp import progress


def write(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


def test_validation_summary_tables_rules_per_split_and_links_data_docs(tmp_path):
    rules = {"label_in_set": {"success": True}, "bio_transition": {"success": True}}
    write(tmp_path / "ingest/validation.json", {
        "task": "ner", "labels": ["O", "B-person", "I-person"],
        "splits": {"train": {"sentences": 12, "tokens": 60, "entities": 14}, "dev": {"sentences": 3, "tokens": 14,
                                                                                  "entities": 5}},
        "validation": {"train": {"source": "data/raw/train.conll", "rules": rules},
                       "dev": {"source": "data/raw/dev.conll", "rules": rules}}})
    (tmp_path / "ingest/data_docs/local_site").mkdir(parents=True)
    (tmp_path / "ingest/data_docs/local_site/index.html").write_text("<html></html>")
    summary = validation_summary(tmp_path)
    assert "Task: ner, 3 labels" in summary
    assert "| train | data/raw/train.conll | 12        | 60     | 14       | 2     | 2      | none   |" in summary
    assert f"file://{(tmp_path / 'ingest/data_docs/local_site/index.html').resolve()}" in summary
    assert "has not run" in validation_summary(tmp_path / "nothing")


def test_training_summary_has_each_curve_and_says_what_is_off(tmp_path):
    write(tmp_path / "pretrain/metrics.json", {"enabled": True, "perplexity_before": 900.0, "perplexity_after": 40.5})
    write(tmp_path / "pretrain/history.json", [{"epoch": 0.0, "dev_loss": 6.8, "dev_perplexity": 900.0},
                                               {"epoch": 1.0, "train_loss": 5.0, "dev_loss": 3.7,
                                                "dev_perplexity": 40.5}])
    write(tmp_path / "finetune/history.json", [{"epoch": 1.0, "train_loss": 0.5, "dev_loss": 0.3, "dev_score": 0.41}])
    write(tmp_path / "prune/history.json", [{"step": 1, "target_sparsity": 0.25, "dev_entity_f1": 0.4}])
    write(tmp_path / "distill/metrics.json", {"enabled": False})
    summary = training_summary(tmp_path)
    assert "Held-out perplexity 900.0 before, 40.5 after." in summary
    assert "| 1     | 0.5000     | 0.3000   | 0.4100    |" in summary
    assert "| 1    | 0.2500   | 0.4000    |" in summary
    assert "## distill\n\nnot enabled in params.yaml" in summary


def test_progress_reaches_the_listener_of_the_reporting_thread_only():
    seen: dict[str, list] = {"main": [], "other": []}
    with progress.listening(lambda what, pct, detail: seen["main"].append((what, pct))):
        progress.report("train", 50.0)

        def elsewhere():
            with progress.listening(lambda what, pct, detail: seen["other"].append((what, pct))):
                progress.report("train", 10.0)
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
    progress.report("train", 99.0)  # nobody listens any more
    assert seen == {"main": [("train", 50.0)], "other": [("train", 10.0)]}


def test_a_failing_listener_never_stops_the_work():
    def broken(*_):
        raise RuntimeError("UI unreachable")

    with progress.listening(broken):
        progress.report("train", 1.0)  # logged, not raised


def test_track_logs_each_step_with_an_eta_and_reports_it(caplog):
    import logging

    seen = []
    with caplog.at_level(logging.INFO, logger="tinynlp.progress"), \
            progress.listening(lambda what, pct, detail: seen.append((what, pct, detail.split(",")[0]))):
        assert list(progress.track(["a", "b", "c", "d"], "scored")) == ["a", "b", "c", "d"]
    assert [(w, p, d) for w, p, d in seen] == [("scored", 25.0, "1/4"), ("scored", 50.0, "2/4"),
                                               ("scored", 75.0, "3/4"), ("scored", 100.0, "4/4")]
    assert "scored 4/4 (100%)" in caplog.text and "ETA 0m00s" in caplog.text
    assert progress.clock(float("inf")) == "?" and progress.clock(245) == "4m05s"
