"""The whole DAG on a tiny BERT through both entry points: `dvc repro` in a git + DVC repo and
the Prefect flow on Prefect's real (SQLite) backend. Same metrics, one notion of "changed"."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_workspace, quick_params, run, use_classification, write_tsv
from tasks.stages import STAGE_ORDER
from tinynlp import quantization

pytestmark = pytest.mark.slow
DVC = [sys.executable, "-m", "dvc"]


def task_runs(state) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))


def artifacts_of(flow_run_id) -> dict[str, list]:
    """The flow run's artifacts (its tasks' included) by key: {key: [(type, data), ...]}."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    by_key: dict[str, list] = {}
    for artifact in found:
        by_key.setdefault(artifact.key, []).append((artifact.type, artifact.data))
    return by_key


def run_flow(workspace: Path, monkeypatch, flow=None) -> tuple[dict, dict]:
    """Run the flow in `workspace`; return its metrics and {task name: final state name}."""
    from flows.pipeline import pipeline

    monkeypatch.chdir(workspace)
    state = (flow or pipeline)(return_state=True)
    assert state.is_completed(), state
    return state.result(), {r.name: r.state.name for r in task_runs(state)}


def evaluate_metrics(workspace: Path) -> dict:
    return json.loads((workspace / "reports/evaluate/metrics.json").read_text())


STAGES = STAGE_ORDER


def states_of(*cached: str) -> dict:
    """Expected task states: the named stages Cached ("all": every stage), the others Completed."""
    if cached == ("all",):
        return {stage: "Cached" for stage in STAGES}
    return {stage: "Cached" if stage in cached else "Completed" for stage in STAGES}


def quality(metrics: dict) -> dict:
    """Metrics that must agree between two runs; timings (and a choice made on them) may not."""
    return {k: v for k, v in metrics.items()
            if k not in ("variants", "promoted", "promoted_speedup", "promoted_test_score_types_0")}


def dvc_clean(workspace: Path) -> bool:
    status = run(DVC + ["status", "--json"], workspace).stdout
    return json.loads(status) == {}


def set_param(workspace: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    node = params[section]
    *parents, key = key.split(".")  # "gate.size_budget_mb": a nested key
    for parent in parents:
        node = node[parent]
    node[key] = value
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def latest_flow_run() -> tuple[object, dict]:
    """The most recently started flow run on the test backend, and {task name: final state name}."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        [flow_run] = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    return flow_run, {r.name: r.state.name for r in tasks}


def test_dvc_and_prefect_agree_and_share_one_cache(tmp_path, tiny_bert, prefect_backend, monkeypatch):
    """Both entry points with casing markers on (the option that changes the tokenizer every
    variant and the served model must carry): the same numbers, one cache."""
    by_dvc = make_workspace(tmp_path / "dvc", tiny_bert)
    by_prefect = make_workspace(tmp_path / "prefect", tiny_bert)
    for workspace in (by_dvc, by_prefect):
        set_param(workspace, "finetune", "casing", "markers")

    repro = run(DVC + ["repro"], by_dvc)
    assert "Running stage 'finetune'" in repro.stdout
    metrics, states = run_flow(by_prefect, monkeypatch)
    assert states == states_of()
    shown = set(artifacts_of(latest_flow_run()[0].id))   # the error analysis in the UI, wide tables split
    assert {"error-analysis", "worst-examples", "error-analysis-types-f1", "error-analysis-types-counts",
            "error-analysis-buckets-1", "error-analysis-buckets-2"} <= shown, shown

    # Parity: the same stage functions give the same numbers through either entry point.
    assert quality(evaluate_metrics(by_dvc)) == quality(evaluate_metrics(by_prefect)) == quality(metrics)
    variants = {name: row["test_score"] for name, row in evaluate_metrics(by_dvc)["variants"].items()}
    assert variants == {name: row["test_score"] for name, row in metrics["variants"].items()}
    assert metrics["test_entity_f1"] > 0, "the tiny model should learn something"
    finetune = json.loads((by_prefect / "reports/finetune/metrics.json").read_text())
    assert finetune["dev_entity_f1"] == pytest.approx(metrics["dev_entity_f1"], abs=1e-4)
    assert finetune["casing"] == "markers"
    for workspace in (by_dvc, by_prefect):  # the markers reach the served model's tokenizer
        promoted = workspace / "models/promoted"
        assert json.loads((promoted / "pipeline.json").read_text())["casing"] == "markers"
        assert "[TITLE]" in (promoted / "tokenizer.json").read_text()

    # After a Prefect run DVC is up to date, and dvc repro does no work.
    assert dvc_clean(by_prefect)
    assert "Data and pipelines are up to date" in run(DVC + ["repro"], by_prefect).stdout

    # A second flow run executes nothing.
    again, states = run_flow(by_prefect, monkeypatch)
    assert states == states_of("all")
    assert again == metrics

    # Changing one stage's params re-runs that stage and its descendants only.
    set_param(by_prefect, "finetune", "learning_rate", 5e-3)
    _, states = run_flow(by_prefect, monkeypatch)
    assert states == states_of("ingest", "augment", "pretrain")
    assert dvc_clean(by_prefect)

    # After dvc repro, the flow hits the same cache.
    _, states = run_flow(by_dvc, monkeypatch)
    assert states == states_of("all")


def check_compression_outputs(workspace: Path) -> None:
    """Every variant evaluated, structured pruning really shrank, the promoted model serves."""
    metrics = evaluate_metrics(workspace)
    assert {"finetune", "prune_unstructured", "prune_structured", "distill", "finetune_onnx", "finetune_int8",
            "distill_int8", "prune_structured_int8"} <= set(metrics["variants"])
    shapes = json.loads((workspace / "models/prune/structured/pipeline.json").read_text())["encoder_shapes"]
    assert [layer["intermediate_size"] for layer in shapes["layers"]] == [32, 32]  # half of 64 removed
    pruned = json.loads((workspace / "reports/prune/metrics.json").read_text())
    assert pruned["unstructured"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert pruned["structured"]["parameters"] < pruned["structured"]["parameters_before"]
    card = json.loads((workspace / "models/promoted/card.json").read_text())
    assert card["variant"] == metrics["promoted"] and card["data_version"]
    assert (workspace / "models/promoted/model.onnx").is_file()
    encoder = quantization.OnnxRunner(workspace / "models/promoted/encoder.onnx")  # drift embeddings
    assert encoder(np.array([[2, 7, 3]]), np.ones((1, 3), dtype=np.int64)).shape == (1, 32)
    out = run([sys.executable, "-m", "cli.main", "predict", "--model", "models/promoted", "--json",
               "Alice lives in Paris ."], workspace).stdout
    found = {(e["word"], e["entity_group"]) for e in json.loads(out)["entities"]}
    # a training sentence: the served model finds its entities, and nothing that is not one
    assert found and found <= {("Alice", "person"), ("Paris", "location")}, found
    table = (workspace / "reports/evaluate/metrics.md").read_text()
    assert "Promoted: **" in table and "prune_structured_int8" in table


def check_model_deliverables(workspace: Path, task: str) -> None:
    """What ships with the promoted model: the error analysis of every variant (JSON, markdown, plot
    data, pictures), explanations of dev examples, a Hugging Face card that reads back, config.json
    with the label maps, and the lineage record beside the card and in reports."""
    from huggingface_hub import ModelCard

    metrics, reports, promoted = evaluate_metrics(workspace), workspace / "reports/evaluate", workspace / "models/promoted"
    analysis = json.loads((reports / "error_analysis.json").read_text())
    assert analysis["shipped"] == metrics["promoted"] and set(analysis["variants"]) == set(metrics["variants"])
    shipped = analysis["models"][analysis["shipped"]]["test"]
    assert ("semeval" in shipped) == (task == "ner") and shipped["calibration"]["bins"]
    assert 0 < len(analysis["worst"]["test"]) <= 20 and analysis["buckets"]
    rows = json.loads((reports / "confusion.json").read_text())
    assert rows and set(rows[0]) == {"actual", "predicted"}
    for picture in ("confusion.png", "calibration.png"):
        assert (reports / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## By bucket" in (reports / "error_analysis.md").read_text()
    assert "error_analysis.md" in (reports / "metrics.md").read_text()   # the gate's decision links to it
    assert "delta" in (reports / "explanations.md").read_text()
    assert "http" not in (reports / "explanations.html").read_text()       # self-contained: nothing fetched

    card = ModelCard.load(promoted / "README.md")
    assert card.data.pipeline_tag == ("token-classification" if task == "ner" else "text-classification")
    assert {r.dataset_split for r in card.data.eval_results} == {"validation", "test"}
    assert "## Limitations" in card.text and "dvc repro" in card.text
    labels = json.loads((promoted / "pipeline.json").read_text())["labels"]
    config = json.loads((promoted / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels)} and config["model_type"]
    lineage = json.loads((promoted / "lineage.json").read_text())
    assert lineage == json.loads((reports / "lineage.json").read_text())
    assert {i["name"] for i in lineage["inputs"]} >= {"data/raw/train.conll" if task == "ner" else "data/raw/train.tsv"}


def test_two_runs_at_once_then_a_gate_that_refuses_and_a_forced_run(tmp_path, tiny_bert, prefect_backend, monkeypatch):
    """One workspace's life. `dvc repro` and the flow started together, as two users would: whichever
    takes the workspace first runs; the other waits its turn or is refused with exit 4 and says why,
    and the DAG ends complete and consistent with dvc.lock whoever won. Then a gate no variant passes
    re-runs evaluate alone and keeps the last promoted model byte for byte; `tinynlp run --force` then
    re-runs every stage though DVC is up to date."""
    import subprocess

    from cli.main import main as cli

    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    quick_params(workspace)  # DAG mechanics, not what the model learns
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_HOME": str(workspace / ".prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)  # the flow's own process: an ephemeral Prefect on its SQLite home
    commands = {"dvc repro": DVC + ["repro"], "flow": [sys.executable, "-m", "flows.pipeline"]}
    runs = {name: subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True) for name, cmd in commands.items()}
    outcome = {name: (run_.wait(timeout=540), run_.stdout.read()) for name, run_ in runs.items()}
    winners = [name for name, (code, _) in outcome.items() if code == 0]
    assert winners, f"neither run finished:\n{outcome}"
    for name, (code, output) in outcome.items():
        if code != 0:
            assert "another pipeline run is in progress" in output or "DVC is busy" in output, (name, output)
            if name == "flow":
                assert code == 4, output
    assert dvc_clean(workspace), "outputs and dvc.lock disagree"
    assert "Data and pipelines are up to date" in run(DVC + ["repro"], workspace).stdout
    assert not list(workspace.glob("models/**/*.tmp*")) and not list(workspace.glob("data/**/*.tmp*"))
    check_compression_outputs(workspace)
    check_model_deliverables(workspace, "ner")
    first = evaluate_metrics(workspace)
    assert first["test_entity_f1"] >= 0.6, first  # 0.8 measured (quick params, 2026-12-03)
    promoted = digests(workspace / "models/promoted")

    # A gate that no variant can pass (a 1 KB size budget): only evaluate re-runs, nothing is promoted.
    set_param(workspace, "evaluate", "gate.size_budget_mb", 0.001)
    out = run(DVC + ["repro"], workspace).stdout
    for stage in STAGES[:-1]:
        assert f"Stage '{stage}' didn't change" in out
    assert "Running stage 'evaluate'" in out
    assert digests(workspace / "models/promoted") == promoted, "a run with no passing variant touched the model"
    refused = evaluate_metrics(workspace)
    assert refused["promoted"] == "none" and "promoted_speedup" not in refused
    assert "promoted_test_score_types_0" not in refused and "promoted_test_score_types_0" in first
    assert quality(refused) == quality(first)
    gate = json.loads((workspace / "reports/evaluate/scores.json").read_text())["gate"]
    assert {d["name"] for d in gate} == set(first["variants"]) and not any(d["passed"] for d in gate)
    assert all(any("over the 0.001 MB budget" in r for r in d["reasons"]) for d in gate), gate
    table = (workspace / "reports/evaluate/metrics.md").read_text()
    assert "Promoted: **none**" in table
    assert f"no variant passed the gate; models/promoted keeps the last promoted model ({first['promoted']})" in table
    assert dvc_clean(workspace)

    shown = run(DVC + ["metrics", "show", "--json"], workspace).stdout
    assert "test_entity_f1" in shown and "latency_ms_p50" in shown
    plots = json.loads(run(DVC + ["plots", "show", "--json"], workspace).stdout)
    assert not plots.get("errors"), plots.get("errors")
    rendered = set(plots["data"])  # {"data": {plot id: [rendered definitions]}}
    assert rendered == {"dev_metric_per_epoch", "loss_per_epoch", "mlm_perplexity", "latency_vs_quality",
                        "prune_dev_per_step", "distill_dev_per_epoch", "confusion", "calibration",
                        "reports/evaluate/confusion.png", "reports/evaluate/calibration.png"}, rendered

    # Up to date in dvc.lock, yet --force runs every stage (none Cached) to the same results.
    monkeypatch.chdir(workspace)
    assert cli(["run", "--force"]) == 0
    flow_run, states = latest_flow_run()
    assert flow_run.name.endswith("-force") and states == states_of(), (flow_run.name, states)
    assert quality(evaluate_metrics(workspace)) == quality(first)
    assert digests(workspace / "models/promoted") == promoted, "the gate still refuses every variant"
    assert dvc_clean(workspace)


def test_bad_data_stops_the_flow_and_keeps_artifacts(tmp_path, tiny_bert, prefect_backend, monkeypatch):
    from flows.pipeline import pipeline

    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    quick_params(workspace)  # what a failed run leaves alone, not what the model learns
    run_flow(workspace, monkeypatch)
    model = (workspace / "models/finetune/model.safetensors").read_bytes()
    validated = (workspace / "data/ingest/train.parquet").read_bytes()
    with (workspace / "data/raw/train.conll").open("a") as handle:
        handle.write("\nAcme\tB-org\n")
    state = pipeline(return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"data/raw/train.conll line \d+: rule 'label_in_set'"):
        state.result()
    [(kind, markdown)] = artifacts_of(state.state_details.flow_run_id)["data-validation"]  # the UI says what broke, and where
    assert kind == "markdown" and markdown.startswith("# Data validation failed")
    assert re.search(r"data/raw/train.conll line \d+: rule 'label_in_set'", markdown)
    assert (workspace / "models/finetune/model.safetensors").read_bytes() == model
    assert (workspace / "data/ingest/train.parquet").read_bytes() == validated


PEOPLE = ("Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy")
PLACES = ("Paris", "London", "Berlin", "Rome", "Madrid", "Oslo", "Tokyo", "Lima")
TEMPLATES = ("{} and {} and {} .", "{} loves {} and {} .", "{} met {} and {} today .", "{} visited {} and {} .")


def separable_classification(workspace: Path) -> dict[str, list]:
    """A balanced toy set that the tiny model (random weights, no pretraining) learns in a few
    epochs: three places or three people in the same four templates, so the words alone decide.
    (The NER fixture sentences as classes are 10 places to 2 in train, and 3 rows in test.)"""
    def sentences(pool: tuple[str, ...], label: str) -> list[tuple[str, str]]:
        k = len(pool)
        return [(TEMPLATES[i % 4].format(pool[i % k], pool[(i + 1 + i // k) % k], pool[(i + 3 + 2 * (i // k)) % k]),
                 label) for i in range(40)]

    place, people = sentences(PLACES, "place"), sentences(PEOPLE, "no_place")
    assert len({text for text, _ in place + people}) == 80  # no row in two splits
    splits = {"train": place[:24] + people[:24], "dev": place[24:28] + people[24:28],
              "test": place[28:36] + people[28:36]}
    for split, rows in splits.items():
        write_tsv(workspace / f"data/raw/{split}.tsv", rows)
    return splits


def test_text_classification_runs_through_the_same_dag(tmp_path, tiny_bert):
    """The classification DAG learns (well above the 0.5 of chance on a balanced test split), and the
    INC variant goes through quantize and evaluate (the one DAG test that builds it)."""
    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    use_classification(workspace)
    splits = separable_classification(workspace)
    quick_params(workspace)
    set_param(workspace, "finetune", "epochs", 6)   # learnt from epoch 3 at lr 3e-3 to 1e-2 (measured)
    set_param(workspace, "finetune", "patience", 6)
    set_param(workspace, "prune", "max_train_samples", 12)    # their recovery is not what this test checks
    set_param(workspace, "distill", "max_train_samples", 12)
    set_param(workspace, "quantize", "inc_sources", ["finetune"])
    run(DVC + ["repro"], workspace)
    metrics = evaluate_metrics(workspace)
    scores = json.loads((workspace / "reports/evaluate/scores.json").read_text())
    assert scores["task"] == "classification"
    assert set(scores["test"]["per_class"]) == {"no_place", "place"}
    assert len(splits["test"]) == 16 and {label for _, label in splits["test"]} == {"place", "no_place"}
    assert metrics["test_accuracy"] >= 0.8 and metrics["dev"]["macro_f1"] >= 0.8, metrics  # 1.0 measured
    spec = json.loads((workspace / "models/finetune/pipeline.json").read_text())
    assert spec["task"] == "classification" and spec["labels"] == ["no_place", "place"]

    # INC: built by quantize, scored and timed by evaluate, refused by the gate (nothing to serve)
    [inc] = [v for v in json.loads((workspace / "models/quantize/variants.json").read_text()) if v["kind"] == "inc"]
    assert inc["name"] == "finetune_inc" and inc["method"] == "inc_dynamic"
    row = metrics["variants"]["finetune_inc"]
    assert row["test_score"] >= 0.8 and abs(row["test_score"] - metrics["test_accuracy"]) <= 2 / 16, row
    assert row["latency_ms_p50"] > 0 and row["size_mb"] > 0
    decision = {d["name"]: d for d in scores["gate"]}["finetune_inc"]
    assert not decision["passed"] and "no ONNX form" in decision["reasons"][0]
    assert metrics["promoted"] not in ("finetune_inc", "none")
    check_model_deliverables(workspace, "classification")


def test_a_second_run_in_the_same_workspace_fails_fast(tmp_path, tiny_bert, prefect_backend, monkeypatch):
    from flows.pipeline import pipeline
    from tinynlp.workspace import workspace_lock

    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    monkeypatch.chdir(workspace)
    with workspace_lock(workspace):  # a run in progress
        stage = run([sys.executable, "-m", "tasks", "ingest"], workspace, check=False)
        state = pipeline(return_state=True)
    assert stage.returncode == 4 and "another pipeline run is in progress" in stage.stderr
    assert state.is_failed()
    with pytest.raises(Exception, match="another pipeline run is in progress"):
        state.result()
    assert not (workspace / "data/ingest").exists()



def test_dask_task_runner_runs_independent_stages_at_once(tmp_path, tiny_bert, prefect_backend, monkeypatch):
    """prune and distill on two Dask worker processes at the same time; their DVC commits are
    serialised, so dvc.lock ends consistent and `dvc repro` has nothing to do."""
    from flows.pipeline import configured
    from tinynlp.config import load_params

    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    quick_params(workspace)
    set_param(workspace, "execution", "task_runner", "dask")
    # both long enough to outlast the ~2 s a second worker takes to start (prune at 1 epoch took
    # 2.1 s on a fresh clone: the overlap was a matter of tenths of a second), and no early stop
    # (distill, patience 2, once ended 0.1 s before prune began on CI)
    for stage in ("prune", "distill"):
        set_param(workspace, stage, "epochs", 6)
        set_param(workspace, stage, "patience", 6)
    monkeypatch.chdir(workspace)
    flow = configured(load_params("params.yaml"))
    state = flow(return_state=True)
    assert state.is_completed(), state
    runs = {r.name: r for r in task_runs(state)}
    assert {name: r.state.name for name, r in runs.items()} == states_of()
    prune, distill = runs["prune"], runs["distill"]
    assert prune.start_time < distill.end_time and distill.start_time < prune.end_time, "not concurrent"
    assert state.result()["test_entity_f1"] > 0
    assert dvc_clean(workspace)
    assert "Data and pipelines are up to date" in run(DVC + ["repro"], workspace).stdout
    _, states = run_flow(workspace, monkeypatch, flow)  # again: every stage Cached
    assert states == states_of("all")


def test_word_shapes_document_context_and_a_narrow_student_on_a_transfer_set_reach_every_variant(tmp_path, tiny_bert):
    """The NER quality options through `dvc repro`: word shapes and document context saved with the
    model down to the served one (shapes as the ONNX graph's token_type_ids, context in
    pipeline.json), the fallback said in the metrics, a narrower student trained on a transfer set,
    and predict and explain on the promoted model. (Casing markers: the DVC/Prefect parity test.)"""
    workspace = make_workspace(tmp_path / "ws", tiny_bert)
    quick_params(workspace)
    (workspace / "data/corpus.txt").write_text("Alice visited Berlin in May . Bob stayed home .\n"
                                               "Carol flew from Rome to Oslo with Dave .\n", encoding="utf-8")
    set_param(workspace, "paths", "corpus", "data/corpus.txt")
    set_param(workspace, "finetune", "casing", "shape")
    set_param(workspace, "finetune", "shape_dropout", 0.2)  # some training sentences with their shapes hidden
    set_param(workspace, "finetune", "context", {"tokens": 8, "fallback": "sentence_order"})
    for key, value in (("neurons_fraction", 0.5), ("heads_fraction", 0.5)):  # a narrower student
        set_param(workspace, "distill", key, value)
    set_param(workspace, "distill", "transfer", {"augmented_copies": 1, "corpus_texts": 2})
    run(DVC + ["repro"], workspace)
    finetune = json.loads((workspace / "reports/finetune/metrics.json").read_text())
    assert finetune["casing"] == "shape" and finetune["context"] == "sentence order"  # no -DOCSTART- lines
    assert finetune["shape_dropout"] == 0.2
    transfer = json.loads((workspace / "reports/distill/metrics.json").read_text())["transfer"]
    assert transfer["augmented"] > 0 and transfer["corpus"] == 2
    # the narrower student was saved at its shapes, exported and quantized like the rest
    config = json.loads((workspace / "models/finetune/config.json").read_text())
    shapes = json.loads((workspace / "models/distill/pipeline.json").read_text())["encoder_shapes"]["layers"]
    assert {(s["heads"], s["intermediate_size"]) for s in shapes} == {
        (config["num_attention_heads"] // 2, config["intermediate_size"] // 2)}
    assert "distill_int8" in evaluate_metrics(workspace)["variants"]
    promoted = workspace / "models/promoted"
    meta = json.loads((promoted / "pipeline.json").read_text())
    assert meta["casing"] == "shape" and meta["context"] == 8
    import onnx

    graph = onnx.load(str(promoted / "model.onnx"), load_external_data=False).graph
    assert "token_type_ids" in [i.name for i in graph.input]
    plain = evaluate_metrics(workspace)["promoted_test_score_types_0"]  # what a plain pipeline would get
    assert f"Fed token types 0, this model scores test entity F1 {plain:.4f}" in (promoted / "README.md").read_text()
    assert "20% of its training sentences' shapes hidden" in (promoted / "README.md").read_text()
    (workspace / "doc.txt").write_text("Alice lives in Paris .\nShe met Bob there .\n", encoding="utf-8")
    out = run([sys.executable, "-m", "cli.main", "predict", "--model", "models/promoted", "--json", "--document",
               "--file", "doc.txt"], workspace)
    assert [json.loads(line)["text"] for line in out.stdout.splitlines()] == ["Alice lives in Paris .",
                                                                              "She met Bob there ."]
    out = run([sys.executable, "-m", "cli.main", "explain", "--json", "Alice lives in Paris ."], workspace)
    record = json.loads(out.stdout.splitlines()[0])
    assert record["text"] == "Alice lives in Paris ."
    assert all(len(e["attributions"]) == 5 for e in record["explanations"])
