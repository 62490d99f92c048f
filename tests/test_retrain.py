"""The retraining flow on a tiny model, on Prefect's real API, in a temporary git + DVC repo:
drift -> new data version -> retrain -> gate -> promotion registered with GTO, its lineage record,
a push, `dvc artifacts get` and `tinynlp lineage`; the "no drift"
and "challenger not better" paths leave the champion untouched; pull from the remote in a clone;
the scheduled deployment carries the cron from params."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TRAIN, make_workspace, run, write_conll
from tinynlp import retraining as batches
from tinynlp.config import IngestConfig, load_params

pytestmark = pytest.mark.slow
DVC = [sys.executable, "-m", "dvc"]
VERSION_TAG, STAGE_TAG = "tinynlp-model@v1.0.0", "tinynlp-model#prod#1"   # GTO: registration, stage assignment

# A new domain for the tiny model: unseen words (products and groups), longer sentences
NEW_DOMAIN = [(f"the {w}phone from {c}corp ships with {w}os and {c}cloud for {n} users today .",
               "O B-person O B-location O O B-person O B-location O O O O O")
              for w, c, n in zip(["zeta", "quark", "nimbus", "vortex", "helix", "orbit", "pixel", "sonic", "prism",
                                  "lumen", "axiom", "cobalt", "ember", "fjord", "gamma", "hydra", "ionic", "jolt"],
                                 ["acme", "globex", "initech", "umbra", "vanta", "wayne", "xeno", "yotta", "zenith",
                                  "apex", "borealis", "cirrus", "delta", "echo", "flux", "gale", "halo", "iris"],
                                 range(100, 1900, 100))]


def tiny_retrain_params(workspace: Path) -> None:
    """A short DAG (no pruning or distillation, one INT8 candidate) and drift tests that a handful
    of sentences can trigger: the flow's logic is under test here, the statistics in test_drift."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["prune"]["unstructured"]["enabled"] = False
    params["prune"]["structured"]["enabled"] = False
    params["distill"]["enabled"] = False
    params["quantize"].update(sources=["finetune"], methods=["ort_dynamic"], per_channel=[True])
    params["drift"].update(decide_on=["embedding", "vocabulary", "labels"], permutations=200)
    params["retrain"].update(holdout_fraction=0.3)
    params["retrain"]["gate"].update(max_old_drop=1.0, min_new_gain=0.0)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def git(workspace: Path, *args: str) -> str:
    return run(["git", *args], workspace).stdout.strip()


def digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def dvc_clean(workspace: Path) -> bool:
    return json.loads(run(DVC + ["status", "--json"], workspace).stdout) == {}


@pytest.fixture(scope="session")  # not module: xdist may interleave other modules, which would rebuild it
def champion(tmp_path_factory, tiny_bert) -> Path:
    """A workspace whose DAG has run and been committed: the champion is the promoted model."""
    workspace = make_workspace(tmp_path_factory.mktemp("retrain") / "ws", tiny_bert)
    tiny_retrain_params(workspace)
    run(DVC + ["repro"], workspace)
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "champion")
    return workspace


def retrain_in(workspace: Path, monkeypatch, **kwargs) -> dict:
    from flows.retrain import retrain

    monkeypatch.chdir(workspace)
    state = retrain(return_state=True, **kwargs)
    assert state.is_completed(), state
    return state.result()


def test_batch_split_and_render_round_trip(tmp_path):
    cfg = IngestConfig(entity_types=("location", "person"))
    path = write_conll(tmp_path / "in.conll", TRAIN)
    records = batches.read_batch([path], cfg)
    train, holdout = batches.split_batch(records, 0.25, seed=3)
    assert len(train) + len(holdout) == len(TRAIN) and len(holdout) == 3
    assert batches.split_batch(records, 0.25, seed=3) == (train, holdout)  # seeded
    written = batches.write_batch(tmp_path / "b", train, holdout, cfg)
    again = batches.read_batch([written["train"], written["holdout"]], cfg)
    assert [(s.tokens, s.tags) for s in again] == [(s.tokens, s.tags) for s in train + holdout]


def test_a_batch_is_kept_redacted_in_redact_mode(tmp_path):
    from tinynlp.config import PiiConfig

    rows = TRAIN + [("mail bob.jones@example.org now", "O O O O")]
    path = write_conll(tmp_path / "in.conll", rows)
    cfg = IngestConfig(entity_types=("location", "person"), pii=PiiConfig(mode="redact"))
    train, holdout = batches.split_batch(batches.read_batch([path], cfg), 0.25, seed=3)
    written = batches.write_batch(tmp_path / "b", train, holdout, cfg)
    kept = "".join(p.read_text() for p in written.values())
    assert "bob" not in kept and "example" not in kept and "<EMAIL_ADDRESS>" in kept
    report_mode = batches.read_batch([path], IngestConfig(entity_types=("location", "person")))
    assert "bob" in " ".join(report_mode[-1].tokens)  # report mode keeps the data as it came


def test_batch_split_and_render_round_trip_for_tables(tmp_path):
    cfg = IngestConfig(task="classification", format="tsv", labels=("a", "b"))
    path = tmp_path / "in.tsv"
    path.write_text("text\tlabel\n" + "".join(f"text number {i}\t{'ab'[i % 2]}\n" for i in range(10)))
    records = batches.read_batch([path], cfg)
    train, holdout = batches.split_batch(records, 0.3, seed=0)
    written = batches.write_batch(tmp_path / "b", train, holdout, cfg)
    again = batches.read_batch([written["train"]], cfg)
    assert again["text"].tolist() == train["text"].tolist() and again["label"].tolist() == train["label"].tolist()


def test_gate_needs_a_gain_on_new_data_and_no_loss_on_old(tmp_path):
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", check_files=False)
    better = batches.compare("f1", {"old": 0.50, "new": 0.30}, {"old": 0.495, "new": 0.40}, params)
    assert better.promote
    worse_old = batches.compare("f1", {"old": 0.50, "new": 0.30}, {"old": 0.45, "new": 0.40}, params)
    assert not worse_old.promote and "drop +0.0500" in worse_old.reasons[0]
    no_gain = batches.compare("f1", {"old": 0.50, "new": 0.30}, {"old": 0.50, "new": 0.30}, params)
    assert not no_gain.promote and "gain +0.0000" in no_gain.reasons[1]


def test_retraining_flow_paths(champion, prefect_backend, monkeypatch, tmp_path, capsys):
    workspace = champion
    start = git(workspace, "rev-parse", "HEAD")
    champion_model = digest(workspace / "models/promoted")

    # 1. No drift: sentences like the training data. Nothing is retrained or committed.
    write_conll(workspace / "data/incoming/same.conll", TRAIN[:6])
    decision = retrain_in(workspace, monkeypatch)
    assert decision["outcome"] == "no drift"
    assert git(workspace, "rev-parse", "HEAD") == start
    assert not (workspace / "data/incoming/same.conll").exists(), "a checked file leaves the queue"
    assert (workspace / "data/incoming/checked" / decision["batch"] / "drift.json").is_file()
    assert digest(workspace / "models/promoted") == champion_model

    # 2. Drift: a new domain. New data version, retrained DAG, challenger promoted, registered with GTO, pushed.
    write_conll(workspace / "data/incoming/new.conll", NEW_DOMAIN)
    decision = retrain_in(workspace, monkeypatch)
    assert decision["outcome"] == "promoted", decision
    assert decision["version"] == "v1.0.0" and decision["tag"] == VERSION_TAG and decision["parent"] is None
    assert set(git(workspace, "tag", "--list").split()) == {VERSION_TAG, STAGE_TAG}
    assert decision["challenger"]["new"] > decision["champion"]["new"]
    batch = workspace / "data/batches" / decision["batch"]
    assert (batch / "train.conll").is_file() and (batch / "holdout.conll").is_file()
    log = git(workspace, "log", "--format=%s", f"{start}..HEAD").splitlines()
    assert log[0].startswith("retrain: promote") and log[1].startswith("data: batch")
    assert git(workspace, "status", "--porcelain", "--untracked-files=no") == ""
    assert dvc_clean(workspace)
    ingest = json.loads((workspace / "reports/ingest/metrics.json").read_text())
    assert ingest["batches"] == 1 and ingest["train_sentences"] == len(TRAIN) + len(NEW_DOMAIN) - 5
    recorded = json.loads((workspace / "reports/retrain/decision.json").read_text())
    assert recorded["promote"] is True and recorded["tag"] == VERSION_TAG
    promoted_model = digest(workspace / "models/promoted")
    assert promoted_model != champion_model

    # The registry: GTO lists the version in its stage; `dvc artifacts get` fetches exactly that model.
    shown = json.loads(run(["gto", "show", "--json"], workspace).stdout)
    assert shown["tinynlp-model"]["version"] == "v1.0.0" and shown["tinynlp-model"]["stage"] == {"prod": "v1.0.0"}
    run(DVC + ["artifacts", "get", ".", "tinynlp-model", "--rev", "v1.0.0", "-o", str(tmp_path / "fetched")], workspace)
    assert digest(tmp_path / "fetched") == promoted_model
    # Its lineage record has the retraining facet, in the model folder and the committed copy alike.
    record = json.loads((workspace / "models/promoted/lineage.json").read_text())
    assert json.loads(git(workspace, "show", f"{VERSION_TAG}:reports/evaluate/lineage.json")) == record
    retrained = record["run"]["facets"]["tinynlp_retraining"]
    assert retrained["version"] == "v1.0.0" and retrained["outcome"] == "promoted" and retrained["parent"] is None
    promoted_batch = decision["batch"]
    assert retrained["batch"] == promoted_batch and retrained["drift"]["report"] == "reports/drift/report.json"
    assert retrained["decision"]["promote"] is True and retrained["decision"]["reasons"] == decision["reasons"]
    assert record["run"]["facets"]["tinynlp_code"]["description"].endswith(", clean")
    assert {i["name"] for i in record["inputs"]} >= {"data/raw/train.conll", "data/batches"}

    # The remote holds it: a fresh clone pulls the exact promoted model.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    remote = (workspace / "storage/dvc-remote").resolve()
    run(DVC + ["remote", "add", "--local", "local", str(remote)], clone)
    run(DVC + ["pull", "-r", "local"], clone)
    assert digest(clone / "models/promoted") == promoted_model
    assert (clone / "data/batches" / decision["batch"] / "train.conll").is_file()

    # 3. Retraining forced, but the challenger is not better (the gate asks for an impossible gain):
    #    the champion stays, byte for byte, and the challenger waits on its branch.
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["retrain"]["gate"]["min_new_gain"] = 1.0
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(workspace, "commit", "-qam", "stricter retraining gate")
    head = git(workspace, "rev-parse", "HEAD")
    write_conll(workspace / "data/incoming/more.conll", [(t.replace("the ", "a "), tags) for t, tags in NEW_DOMAIN])
    decision = retrain_in(workspace, monkeypatch, force=True)
    assert decision["outcome"] == "rejected" and "needed > 1.0" in decision["reasons"][1]
    assert git(workspace, "rev-parse", "HEAD") == head
    assert set(git(workspace, "tag", "--list").split()) == {VERSION_TAG, STAGE_TAG}
    assert decision["branch"] in git(workspace, "branch", "--list", "retrain/*")
    rejected = json.loads(git(workspace, "show", f"{decision['branch']}:reports/evaluate/lineage.json"))
    retrained = rejected["run"]["facets"]["tinynlp_retraining"]
    assert retrained["outcome"] == "rejected" and retrained["version"] is None
    assert retrained["parent"]["version"] == "v1.0.0", "the champion it was measured against"
    assert not (workspace / "data/batches" / decision["batch"]).exists()
    assert digest(workspace / "models/promoted") == promoted_model
    assert dvc_clean(workspace)

    # `tinynlp lineage`: the chain from git alone.
    from cli.main import main

    capsys.readouterr()  # what the flow runs printed
    assert main(["lineage", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["version"] == "v1.0.0" and entry["stages"] == ["prod"] and entry["parent"] is None
    assert entry["commit"] == git(workspace, "rev-parse", VERSION_TAG + "^{commit}")
    assert any(w.startswith(f"retrained on batch {promoted_batch} (drift: ") for w in entry["why"]), entry["why"]


def test_a_dirty_workspace_is_refused(champion, prefect_backend, monkeypatch):
    from flows.retrain import retrain
    from tinynlp.errors import RetrainError

    monkeypatch.chdir(champion)
    (champion / "params.yaml").write_text((champion / "params.yaml").read_text() + "\n")
    write_conll(champion / "data/incoming/x.conll", NEW_DOMAIN[:4])
    try:
        with pytest.raises(RetrainError, match="uncommitted changes"):
            retrain()
    finally:
        git(champion, "checkout", "params.yaml")
        (champion / "data/incoming/x.conll").unlink()


def test_scheduled_deployment_uses_the_cron_from_params(prefect_backend, monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.deploy import DEPLOYMENT, build

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", check_files=False)
    deployment_id = build(params).apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.name == DEPLOYMENT and deployment.flow_id
    assert [s.schedule.cron for s in deployment.schedules] == [params.retrain.schedule]
    assert deployment.schedules[0].schedule.timezone == params.retrain.timezone
    assert deployment.global_concurrency_limit.limit == 1  # one retraining run at a time


def test_dvc_experiments_run_on_the_same_dag(champion):
    """`dvc exp run -S section.key=value`: a params experiment through dvc.yaml, workspace untouched."""
    before = digest(champion / "models/promoted")
    run(DVC + ["exp", "run", "--temp", "-n", "lr-exp", "-S", "finetune.learning_rate=0.005"], champion)
    shown = run(DVC + ["exp", "show", "--json"], champion).stdout
    assert "lr-exp" in shown and "0.005" in shown
    assert digest(champion / "models/promoted") == before and dvc_clean(champion)


def test_retraining_runs_queue_per_workspace(prefect_backend, tmp_path):
    """A global concurrency limit of 1 per workspace, on Prefect's real API: a second run in the
    same workspace waits for the first one's slot; a run in another workspace does not."""
    import threading
    import time

    from prefect.client.orchestration import get_client

    from flows.retrain import workspace_limit_name, workspace_slot

    here, elsewhere = tmp_path / "a", tmp_path / "b"
    assert workspace_limit_name(here) != workspace_limit_name(elsewhere)
    events: list[str] = []
    first_holds, release = threading.Event(), threading.Event()

    def first():
        with workspace_slot(here):
            events.append("first in")
            first_holds.set()
            release.wait(30)
            events.append("first out")

    def second():
        with workspace_slot(here, wait_seconds=60):
            events.append("second in")

    holder = threading.Thread(target=first)
    holder.start()
    assert first_holds.wait(60)
    waiter = threading.Thread(target=second)
    waiter.start()
    with workspace_slot(elsewhere, wait_seconds=10):  # another workspace is not held up
        events.append("other workspace in")
    time.sleep(2)
    assert "second in" not in events, "the second run did not wait for the slot"
    release.set()
    holder.join(60)
    waiter.join(60)
    assert events.index("first out") < events.index("second in")
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(workspace_limit_name(here))
    assert limit.limit == 1 and limit.active_slots == 0


def test_every_work_pool_deployment_runs_the_retrain_flow_on_the_params_cron():
    from conftest import ROOT

    spec = yaml.safe_load((ROOT / "flows/prefect.yaml").read_text(encoding="utf-8"))
    cron = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["retrain"]["schedule"]
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"scheduled-retrain", "scheduled-retrain-docker", "scheduled-retrain-k8s"}
    for name, deployment in deployments.items():
        module, function = deployment["entrypoint"].split(":")
        assert (ROOT / module).is_file() and f"def {function}(" in (ROOT / module).read_text(), name
        assert [s["cron"] for s in deployment["schedules"]] == [cron], name
        assert deployment["concurrency_limit"] == 1 and deployment["work_pool"]["name"], name
