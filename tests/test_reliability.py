"""Reliability: paths cannot leave the workspace unless allowed, a killed training stage resumes
to the same model without ever leaving a half-written one; an interrupted artifact switch is
recovered."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import make_workspace, run
from tinynlp.retraining import incoming_files
from tinynlp.config import allowed_roots, parse_params
from tinynlp.errors import ConfigError

def _raw(**paths) -> dict:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["paths"].update(paths)
    return raw


@pytest.mark.parametrize("key, value", [("ingested", "../elsewhere/ingest"), ("reports", "/tmp/reports-outside")])
def test_paths_cannot_leave_the_workspace(workspace, key, value):
    with pytest.raises(ConfigError, match=rf"paths.{key}: {value} leads to .*outside the workspace.*allow_outside"):
        parse_params(_raw(**{key: value}))


def test_a_symlink_out_of_the_workspace_is_refused_unless_allowed(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "train.conll").write_text(Path("data/raw/train.conll").read_text())
    Path("data/raw/linked.conll").symlink_to(outside / "train.conll")
    with pytest.raises(ConfigError, match=r"paths.train: data/raw/linked.conll leads to .*outside/train.conll"):
        parse_params(_raw(train="data/raw/linked.conll"))
    assert parse_params(_raw(train="data/raw/linked.conll", allow_outside=[str(outside)])).paths.train


def test_a_retraining_batch_linked_from_outside_is_refused(workspace, tmp_path):
    params = parse_params(_raw())
    incoming = Path(params.paths.incoming)
    incoming.mkdir(parents=True)
    (incoming / "fine.conll").write_text("Alice\tB-person\n")
    assert incoming_files(incoming, allowed_roots(params.paths)) == [incoming / "fine.conll"]
    (tmp_path / "secret.conll").write_text("Bob\tB-person\n")
    (incoming / "linked.conll").symlink_to(tmp_path / "secret.conll")
    with pytest.raises(ConfigError, match=r"linked.conll: leads to .*secret.conll, outside the workspace"):
        incoming_files(incoming, allowed_roots(params.paths))


def _digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _stage(workspace: Path, stage: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "tasks", stage], workspace)


@pytest.mark.slow
def test_a_killed_finetune_resumes_to_the_same_model(tmp_path, tiny_bert):
    """SIGKILL mid-run (after the first epoch's checkpoint): the last good model stays
    byte-identical, and the re-run resumes from the checkpoint to the uninterrupted result."""
    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["finetune"].update(epochs=30, patience=30)  # long enough to be killed in the middle
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("ingest", "augment", "pretrain", "finetune"):
        _stage(workspace, stage)
    reference = json.loads((workspace / "reports/finetune/metrics.json").read_text())
    good_model = _digests(workspace / "models/finetune")

    process = subprocess.Popen([sys.executable, "-m", "tasks", "finetune"], cwd=workspace,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((workspace / "checkpoints/finetune").glob("*/checkpoint-*/trainer_state.json")):
        assert process.poll() is None and time.monotonic() < deadline, "finished or stuck before a checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _digests(workspace / "models/finetune") == good_model, "the kill touched the last good model"
    assert not [p for p in (workspace / "models").iterdir() if p.name.startswith(".")], "staging left behind"

    _stage(workspace, "finetune")
    resumed = json.loads((workspace / "reports/finetune/metrics.json").read_text())
    assert resumed["resumed"] is True
    assert resumed["dev_entity_f1"] == pytest.approx(reference["dev_entity_f1"], abs=1e-6)
    assert resumed["epochs_run"] == reference["epochs_run"]
    assert not list((workspace / "checkpoints/finetune").glob("*/checkpoint-*")), "resume state kept after success"


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    from tinynlp.atomic import atomic_dir, recover

    target = tmp_path / "promoted"
    with atomic_dir(target) as staging:
        (staging / "model.onnx").write_text("good")
    os.replace(target, tmp_path / ".promoted.old-4242")  # killed after moving the old version aside
    assert not target.exists()
    with pytest.raises(RuntimeError):
        with atomic_dir(target):  # the next writer first puts the last good version back
            assert (target / "model.onnx").read_text() == "good"
            raise RuntimeError("this run fails too")
    assert (target / "model.onnx").read_text() == "good" and not recover(target)
    assert [p.name for p in tmp_path.iterdir()] == ["promoted"]
