"""`tinynlp report`: the latest run's tables, and one DVC revision's metrics against another."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run
from cli.main import main as cli


def test_report_prints_latest_tables_and_wraps_dvc_metrics_diff(workspace, capsys):
    assert cli(["report"]) == 2 and "run the pipeline first" in capsys.readouterr().err
    evaluate = Path("reports/evaluate")
    evaluate.mkdir(parents=True)
    (evaluate / "metrics.md").write_text("| variant | f1 |\n|---|---|\n| finetune | 0.5 |\n")
    (evaluate / "metrics.json").write_text(json.dumps({"test_entity_f1": 0.5}))
    assert cli(["report"]) == 0 and "| finetune | 0.5 |" in capsys.readouterr().out

    run(["git", "add", "-A"], workspace)
    run(["git", "commit", "-qm", "first run"], workspace)
    (evaluate / "metrics.json").write_text(json.dumps({"test_entity_f1": 0.6}))
    assert cli(["report", "--rev", "HEAD"]) == 0
    out = capsys.readouterr().out
    assert "HEAD -> workspace" in out and "test_entity_f1" in out and "0.6" in out and "0.1" in out
    assert cli(["report", "--rev", "no-such-rev"]) == 1
    assert "dvc metrics diff failed" in capsys.readouterr().err


def test_every_subcommand_help_says_what_it_does_with_examples_and_exit_codes(capsys):
    helps = {}
    for name in ("run", "stage", "predict", "drift", "retrain", "deploy", "serve", "report"):
        with pytest.raises(SystemExit) as exit_:
            cli([name, "--help"])
        assert exit_.value.code == 0
        text = helps[name] = capsys.readouterr().out
        assert f"usage: tinynlp {name}" in text and "examples:" in text and "exit codes:" in text, text
        assert f"  tinynlp {name}" in text.split("examples:")[1], text  # the examples run this command
    assert "5 drift found" in helps["drift"]  # its own exit code, for scripts
