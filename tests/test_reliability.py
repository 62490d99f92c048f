"""Reliability: paths cannot leave the workspace unless allowed, a killed training stage resumes
to the same model without ever leaving a half-written one; an interrupted artifact switch is
recovered."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
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


def _set(workspace: Path, section: str, **values) -> None:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params[section].update(values)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")  # not module: xdist may interleave other modules, which would rebuild it
def finetuned(tmp_path_factory, tiny_bert) -> Path:
    """A workspace that ran ingest .. finetune: where the resume tests start (copied)."""
    workspace = make_workspace(tmp_path_factory.mktemp("finetuned") / "ws", tiny_bert)
    _set(workspace, "finetune", epochs=4, patience=4)  # a model to compress, not a good one
    for stage in ("ingest", "augment", "pretrain", "finetune"):
        _stage(workspace, stage)
    return workspace


def _kill_after_first_checkpoint(workspace: Path, stage: str) -> None:
    """Start the stage and SIGKILL it once its first epoch checkpoint is complete, in the next epoch."""
    process = subprocess.Popen([sys.executable, "-m", "tasks", stage], cwd=workspace,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    pattern = "*/**/checkpoint-*/trainer_state.json"
    while not list((workspace / "checkpoints" / stage).glob(pattern)):
        assert process.poll() is None and time.monotonic() < deadline, "finished or stuck before a checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the stage ended before the kill"


@pytest.mark.slow
def test_a_killed_finetune_resumes_to_the_same_model(finetuned, tmp_path):
    """SIGKILL mid-run (after the first epoch's checkpoint): the last good model stays
    byte-identical, and the re-run resumes from the checkpoint to the uninterrupted result."""
    workspace = shutil.copytree(finetuned, tmp_path / "ws", symlinks=True)
    _set(workspace, "finetune", epochs=30, patience=30)  # long enough to be killed in the middle
    _stage(workspace, "finetune")
    reference = json.loads((workspace / "reports/finetune/metrics.json").read_text())
    good_model = _digests(workspace / "models/finetune")

    _kill_after_first_checkpoint(workspace, "finetune")
    assert _digests(workspace / "models/finetune") == good_model, "the kill touched the last good model"
    assert not [p for p in (workspace / "models").iterdir() if p.name.startswith(".")], "staging left behind"

    _stage(workspace, "finetune")
    resumed = json.loads((workspace / "reports/finetune/metrics.json").read_text())
    assert resumed["resumed"] is True
    assert resumed["dev_entity_f1"] == pytest.approx(reference["dev_entity_f1"], abs=1e-6)
    assert resumed["epochs_run"] == reference["epochs_run"]
    assert not list((workspace / "checkpoints/finetune").glob("*/checkpoint-*")), "resume state kept after success"


@pytest.mark.slow
@pytest.mark.parametrize("stage, model_dir, settings", [
    ("prune", "models/prune", {"epochs": 20, "patience": 20}),   # per recovery (3): killed in the first
    ("distill", "models/distill", {"epochs": 16, "patience": 16}),
])
def test_a_killed_compression_stage_resumes_to_the_same_model(finetuned, tmp_path, stage, model_dir, settings):
    """As for finetune: the last good model byte-identical after a SIGKILL mid-training, no staging
    folder left, and the re-run resumes from the checkpoint to the uninterrupted result."""
    workspace = shutil.copytree(finetuned, tmp_path / "ws", symlinks=True)
    _set(workspace, stage, **settings)
    _stage(workspace, stage)
    reference = json.loads((workspace / f"reports/{stage}/metrics.json").read_text())
    good_model = _digests(workspace / model_dir)
    assert good_model and not list((workspace / "checkpoints" / stage).glob("*/**/checkpoint-*"))

    _kill_after_first_checkpoint(workspace, stage)
    assert _digests(workspace / model_dir) == good_model, "the kill touched the last good model"
    assert not [p for p in (workspace / "models").iterdir() if p.name.startswith(".")], "staging left behind"

    _stage(workspace, stage)
    resumed = json.loads((workspace / f"reports/{stage}/metrics.json").read_text())
    if stage == "prune":  # killed in the first unstructured step: that one resumes, the rest run afresh
        assert resumed["unstructured"].pop("resumed") is True and reference["unstructured"].pop("resumed") is False
        assert resumed["structured"].pop("resumed") is False and reference["structured"].pop("resumed") is False
        for variant in ("unstructured", "structured"):
            resumed[variant].pop("seconds", None), reference[variant].pop("seconds", None)
    else:
        assert resumed.pop("resumed") is True and reference.pop("resumed") is False
        for key in ("train_seconds", "teacher_logits_seconds"):
            resumed.pop(key), reference.pop(key)
    assert resumed == reference  # dev scores (rounded to 5 places), sparsity, sizes, epochs run
    assert _digests(workspace / model_dir) == good_model, "the resumed run should reach the same weights"
    assert not list((workspace / "checkpoints" / stage).glob("*/**/checkpoint-*")), "resume state kept after success"


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
