"""Retraining when data drifts: validate a new batch, test it for drift against the promoted model's
training data, and when it drifts (or when forced) add it to the dataset as a new git + DVC version,
retrain through the same DAG, and promote the challenger only if it beats the champion.

    python -m flows.retrain [FILE ...] [--force]

Without files, every file in `paths.incoming` is one batch. Git and DVC record everything: the
challenger is built on a branch `retrain/<batch id>` (a commit holding the batch and the retrained
DAG's dvc.lock); a promotion fast-forwards the starting branch to it, registers it with GTO as
`<retrain.model_name>@vN.0.0` in stage `retrain.stage` and pushes data and models to the DVC remote;
a rejection leaves the branch for inspection (`dvc metrics diff HEAD retrain/<id>`) and restores the
champion's workspace exactly. Either way the challenger's lineage record gains its retraining facet.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Iterator

import flows  # noqa: F401  (Prefect home and loggers, before prefect is imported)
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import versioning
from flows.pipeline import PARAMS_FILE, configured, run_flow_printing_result
from tinynlp import lineage, registry, retraining
from tinynlp.atomic import atomic_write_json
from tinynlp.config import Params, allowed_roots, load_params
from tinynlp.drift_check import run_drift, signal_rows
from tinynlp.errors import RetrainError
from tinynlp.ingestion import validate_batch
from tinynlp.lineage import DECISION_FILE
from tinynlp.model_dir import CARD_FILE
from tinynlp.modeling import available_cores
from tinynlp.reporting import markdown_table
from tinynlp.splits import read_split
from tinynlp.workspace import workspace_lock

log = logging.getLogger(__name__)


@task(name="validate", cache_policy=NO_CACHE)
def validate(files: list[Path], params: Params, scratch: Path) -> int:
    """Each file through the training split's Great Expectations rules; errors name file and line."""
    rows = 0
    for number, path in enumerate(files):
        rows += len(validate_batch(path, params, scratch / f"data_docs_{number}"))
    log.info("validate: %d file(s), %d rows passed the training data's rules", len(files), rows)
    return rows


@task(name="drift", cache_policy=NO_CACHE)
def drift(params: Params, batch_file: Path) -> dict:
    report = run_drift(params, batch_file)
    verdict = report["verdict"]
    rows = signal_rows(verdict, report.get("decided_on", params.drift.decide_on))
    create_markdown_artifact(
        key="drift-verdict", description="the new batch against the promoted model's training data",
        markdown=f"# Drift: **{'drift' if verdict['drifted'] else 'no drift'}**\n\n"
                 + "".join(f"- {r}\n" for r in verdict["reasons"]) + "\n" + markdown_table(rows, list(rows[0])))
    return report


@task(name="new_data_version", cache_policy=NO_CACHE)
def new_data_version(params: Params, files: list[Path], batch: str, from_incoming: bool) -> Path:
    """The batch, split into train and held-out parts, as data/batches/<id>/ tracked by DVC and
    committed on the challenger branch: from now on a git revision names this dataset."""
    records = retraining.read_batch(files, params.ingest)
    train, holdout = retraining.split_batch(records, params.retrain.holdout_fraction, params.retrain.seed)
    directory = Path(params.paths.batches) / batch
    written = retraining.write_batch(directory, train, holdout, params.ingest)
    versioning.commit_batch(directory, batch, f"data: batch {batch} ({len(train)} train, {len(holdout)} held-out rows)")
    if from_incoming:
        for path in files:
            path.unlink()
    log.info("new data version: %s (train %d, held-out %d rows) on branch retrain/%s",
             directory, len(train), len(holdout), batch)
    return written["holdout"]


@task(name="compare", cache_policy=NO_CACHE)
def compare(params: Params, champion_dir: Path, holdout_file: Path) -> retraining.Comparison:
    """Champion and challenger (the promoted model the retrained DAG left) on the old test split
    and on the batch's held-out part, through the same ONNX runtime they are served with."""
    threads = available_cores()
    old = read_split(params.paths.ingested, "test")
    new = retraining.columns_of(retraining.read_batch([holdout_file], params.ingest), params.ingest.task)
    scores = {}
    for role, directory in (("champion", champion_dir), ("challenger", Path(params.paths.promoted))):
        on_old = retraining.score_model_dir(directory, old, threads)
        on_new = retraining.score_model_dir(directory, new, threads)
        metric = on_old["metric"]
        scores[role] = {"old": round(on_old[metric], 4), "new": round(on_new[metric], 4)}
    return retraining.compare(metric, scores["champion"], scores["challenger"], params)


@task(name="record", cache_policy=NO_CACHE)
def record(params: Params, comparison: retraining.Comparison, batch: str, branch: str, drift_report: dict,
           forced: bool = False) -> dict:
    """Commit the challenger (dvc.lock, reports, its lineage record) on its branch; on promotion
    fast-forward the champion's branch, register the version with GTO and push data and models;
    otherwise restore the champion exactly."""
    card = json.loads((Path(params.paths.promoted) / CARD_FILE).read_text(encoding="utf-8"))
    found = registry.versions(params.retrain.model_name, params.retrain.tag_prefix)
    parent = registry.holding(found, params.paths.promoted, branch)  # the champion's version, if registered
    decision = {"batch": batch, **comparison.as_dict(), "challenger_variant": card["variant"],
                "data_version": card["data_version"], "drift": drift_report["verdict"]["reasons"],
                "parent": parent.version if parent else None}
    if comparison.promote:  # named now so that the committed decision and lineage carry it
        decision["version"] = registry.next_version(found)
        decision["tag"] = registry.version_tag(params.retrain.model_name, decision["version"])
    atomic_write_json(Path(params.paths.reports) / "retrain" / DECISION_FILE, decision)
    _record_lineage(params, card, decision, parent, versioning.git("rev-parse", branch), forced)
    verb = "promote" if comparison.promote else "reject"
    remote = versioning.commit_challenger(params, f"retrain: {verb} challenger {card['variant']} on batch {batch}\n\n"
                                          + "\n".join(comparison.reasons))
    if comparison.promote:
        tags = versioning.promote_challenger(
            branch, batch, params, decision["version"],
            f"{card['variant']}: {comparison.metric} old {comparison.challenger['old']}, new "
            f"{comparison.challenger['new']}; data {card['data_version']}; batch {batch}")
        log.info("promoted %s as %s %s (tags %s); pushed to DVC remote %r", card["variant"],
                 params.retrain.model_name, decision["version"], ", ".join(tags), remote)
    else:
        versioning.restore_champion(params, branch, batch)
        decision["branch"] = versioning.challenger_branch(batch)
        log.warning("kept the champion; the challenger stays on branch %s: %s", decision["branch"],
                    "; ".join(comparison.reasons))
    return decision


def _record_lineage(params: Params, card: dict, decision: dict, parent, champion_commit: str, forced: bool) -> None:
    """The retraining facet (version, parent, the drift report that triggered it, the decision) added
    to the challenger's lineage record, in the model folder and in its git-tracked copy; dvc.lock
    records the model folder's new hash."""
    promoted, reports = Path(params.paths.promoted), Path(params.paths.reports)
    record = lineage.read_lineage(promoted) or _lineage_from_card(params, card)
    drift_file = reports / "drift" / "report.json"
    block = {"version": decision.get("version"), "tag": decision.get("tag"),
             "outcome": "promoted" if decision["promote"] else "rejected",
             "parent": {"version": parent.version, "tag": parent.tag, "commit": parent.commit} if parent else None,
             "champion_commit": champion_commit, "batch": decision["batch"],
             "drift": {"report": drift_file.as_posix(), "sha256": hashlib.sha256(drift_file.read_bytes()).hexdigest(),
                       "forced": forced, "reasons": decision["drift"]},
             "decision": {"file": (reports / "retrain" / DECISION_FILE).as_posix(),
                          **{key: decision[key] for key in ("metric", "champion", "challenger", "promote", "reasons")}}}
    record = lineage.with_retraining(record, block)
    lineage.write_lineage(promoted, record)
    lineage.write_lineage(reports / "evaluate", record)
    versioning.record_promoted_edit(params)


def _lineage_from_card(params: Params, card: dict) -> dict:
    """A record for a promoted model that has none (promoted before lineage records existed), from its
    card and the evaluate stage's scores.json."""
    scores_file = Path(params.paths.reports) / "evaluate" / "scores.json"
    scores = json.loads(scores_file.read_text(encoding="utf-8")) if scores_file.is_file() else {}
    decisions = scores.get("gate", []) if scores.get("promoted") == card["variant"] else []
    gate = {"chosen": card["variant"], "decisions": decisions, "budget": card.get("gate", {}),
            "note": "rebuilt by the retraining flow from the model card: the evaluate stage wrote no lineage record"}
    return lineage.build_lineage(params, variant=card["variant"], scores=card.get("metrics", {}), gate=gate,
                                 torch_source=card.get("torch_source", ""))


def _archive(files: list[Path], target: Path, report: dict) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.move(str(path), target / path.name)
    atomic_write_json(target / "drift.json", report)


def _scratch(params: Params, batch: str) -> Path:
    path = Path(params.paths.checkpoints) / "retrain" / batch
    path.mkdir(parents=True, exist_ok=True)
    return path


def _summary(decision: dict) -> str:
    if decision["outcome"] == "no drift":
        return "# Retraining: no drift, champion kept\n\n" + "".join(f"- {r}\n" for r in decision["drift"])
    rows = [{"model": role, f"old test {decision['metric']}": decision[role]["old"],
             f"new held-out {decision['metric']}": decision[role]["new"]} for role in ("champion", "challenger")]
    head = (f"# Retraining: challenger {'promoted as ' + decision['tag'] if decision['promote'] else 'rejected'}"
            f"\n\nBatch `{decision['batch']}`; drift: " + "; ".join(decision["drift"]) + "\n\n")
    return head + markdown_table(rows, list(rows[0])) + "\n\n" + "".join(f"- {r}\n" for r in decision["reasons"])


def workspace_limit_name(root: str | Path = ".") -> str:
    """The Prefect global concurrency limit of one workspace (a clone on one machine)."""
    return "tinynlp-workspace-" + hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]


@contextlib.contextmanager
def workspace_slot(root: str | Path = ".", wait_seconds: float | None = None) -> Iterator[None]:
    """Retraining runs queue for their workspace: a global concurrency limit of 1 named after it
    (created on first use; the UI's Concurrency page shows it), so runs from any number of
    deployments or schedules wait their turn instead of failing at the workspace lock, while
    runs in other workspaces go ahead."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = workspace_limit_name(root)
    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
        except ObjectAlreadyExists:  # another run created it between the read and the write
            pass
    with concurrency(name, occupy=1, timeout_seconds=wait_seconds, strict=True):
        yield


# no log_prints: stages log through logging, and Prefect's patched print() would defeat libraries that
# capture stdout (dill disassembles functions to hash them for datasets: the listing ended up in the logs)
@flow(name="retrain")
def retrain(files: list[str] | None = None, force: bool = False) -> dict:
    """One batch: validate -> drift -> (new data version -> DAG -> champion vs challenger -> record)."""
    params = load_params(PARAMS_FILE)
    with workspace_slot(), workspace_lock(nested_runs=True):  # the pipeline flow below runs inside this lock
        from_incoming = not files
        paths = ([Path(f) for f in files] if files  # named on the command line: explicit, allowed
                 else retraining.incoming_files(params.paths.incoming, allowed_roots(params.paths)))
        if not paths:
            log.info("retrain: nothing in %s", params.paths.incoming)
            return {"outcome": "no data"}
        branch = versioning.require_clean_repo()
        batch = retraining.batch_id(paths)
        scratch = _scratch(params, batch)
        validate(paths, params, scratch)
        combined = scratch / f"batch{retraining.SUFFIXES[params.ingest.format]}"
        combined.write_text(retraining.render(retraining.read_batch(paths, params.ingest), params.ingest), encoding="utf-8")
        report = drift(params, combined)
        drifted = report["verdict"]["drifted"]
        if not drifted and not force:
            decision = {"outcome": "no drift", "batch": batch, "drift": report["verdict"]["reasons"]}
            if from_incoming:  # checked files leave the queue, with the report that cleared them
                _archive(paths, Path(params.paths.incoming) / "checked" / batch, report)
        else:
            champion = scratch / "champion"
            if not (Path(params.paths.promoted) / CARD_FILE).is_file():
                raise RetrainError(f"no champion in {params.paths.promoted}: run the pipeline once first (dvc repro)")
            shutil.copytree(params.paths.promoted, champion, dirs_exist_ok=True)
            holdout = new_data_version(params, paths, batch, from_incoming)
            try:
                configured(params)(force=False)
                comparison = compare(params, champion, holdout)
            except BaseException:
                versioning.restore_champion(params, branch, batch)
                log.error("retraining failed; branch retrain/%s keeps the batch, %s the champion", batch, branch)
                raise
            decision = {"outcome": "promoted" if comparison.promote else "rejected",
                        **record(params, comparison, batch, branch, report, forced=not drifted)}
            decision["drift"] = report["verdict"]["reasons"] + ([] if drifted else ["(forced)"])
        create_markdown_artifact(key="retrain-decision", markdown=_summary(decision),
                                 description="champion against challenger and the promotion decision")
        return decision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="batch files (default: everything in paths.incoming)")
    parser.add_argument("--force", action="store_true", help="retrain even without drift")
    args = parser.parse_args(argv)

    return run_flow_printing_result(retrain, args.files or None, args.force)


if __name__ == "__main__":
    sys.exit(main())
