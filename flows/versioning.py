"""The git and DVC plumbing of the retraining flow: every data and model version is a commit. A
batch goes onto a branch `retrain/<batch id>` as a DVC-tracked folder; the retrained DAG's
dvc.lock and reports follow on that branch; a promotion fast-forwards the champion's branch and
registers it with GTO (`<name>@vN.0.0`, stage tag `<name>#<stage>#<k>`), a rejection restores the
champion's workspace exactly."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from tinynlp.config import Params
from tinynlp.errors import RetrainError

log = logging.getLogger(__name__)


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RetrainError(f"git {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def require_clean_repo() -> str:
    """The branch the champion lives on. Retraining commits, so uncommitted changes to tracked files
    would be swept into the challenger's commit: refuse them with the list."""
    try:
        branch = git("symbolic-ref", "--short", "HEAD")
    except RetrainError:
        raise RetrainError("retraining needs a git repository on a branch (it commits each data and model "
                           "version); run `git init` and commit the workspace first") from None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    if dirty:
        raise RetrainError(f"uncommitted changes to tracked files; commit or stash them first:\n{dirty}")
    return branch


def dvc_repo():
    from dvc.repo import Repo

    return Repo(".")


def ensure_remote(params: Params) -> str:
    """The DVC remote named in params; created in .dvc/config.local (a local folder by default) when
    the repository has none by that name, so a fresh clone pushes without any set-up."""
    with dvc_repo() as repo:
        remotes = repo.config.get("remote", {})
    name = params.retrain.remote
    if name not in remotes:
        url = params.retrain.remote_url
        if "://" not in url:
            Path(url).mkdir(parents=True, exist_ok=True)
            url = str(Path(url).resolve())
        subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "--local", name, url],
                       check=True, capture_output=True, text=True)
        log.info("DVC remote %r created in .dvc/config.local: %s", name, url)
    return name


def challenger_branch(batch: str) -> str:
    return f"retrain/{batch}"


def commit_batch(directory: Path, batch: str, message: str) -> None:
    """A new branch for the challenger, holding the batch folder as a DVC-tracked dataset."""
    git("switch", "-q", "-c", challenger_branch(batch))
    with dvc_repo() as repo:
        repo.add(str(directory))
    git("add", f"{directory}.dvc", str(directory.parent / ".gitignore"))
    git("commit", "-q", "-m", message)


def commit_challenger(params: Params, message: str) -> str:
    """The retrained DAG (dvc.lock, reports, batches) committed on the challenger branch, its data
    and models pushed to the DVC remote (kept whatever the decision); the remote's name."""
    git("add", "-A", "dvc.lock", params.paths.reports, params.paths.batches)
    git("commit", "-q", "--allow-empty", "-m", message)
    remote = ensure_remote(params)
    with dvc_repo() as repo:
        repo.push(remote=remote)
    return remote


def record_promoted_edit(params: Params) -> None:
    """After a file inside the promoted model folder changed (its lineage record), record the folder's
    new hash in dvc.lock and cache it, as `dvc commit -f <stage>` does, so `dvc status` stays clean."""
    from flows.dvc_sync import commit_stage
    from tasks.stages import STAGES

    promoted = "${paths.promoted}"
    commit_stage(next(s.name for s in STAGES if any(o.path == promoted for o in s.outs)))


def promote_challenger(branch: str, batch: str, params: Params, version: str, message: str) -> list[str]:
    """Fast-forward the champion's branch to the challenger, drop the challenger branch, and register
    the model version with GTO and assign it the stage (two annotated tags); the tags made."""
    from gto import api as gto

    git("switch", "-q", branch)
    git("merge", "-q", "--ff-only", challenger_branch(batch))
    git("branch", "-q", "-d", challenger_branch(batch))
    name, stage = params.retrain.model_name, params.retrain.stage
    registered = gto.register(".", name, "HEAD", version=version, message=message)
    assigned = gto.assign(".", name, stage, version=version, message=f"{stage}: {message}")
    return [registered.tag, assigned.tag]


def restore_champion(params: Params, branch: str, batch: str) -> None:
    """Back to the champion's branch with its exact data and models (from the DVC cache); the batch
    folder, untracked there, goes (it stays in the cache and on the challenger branch)."""
    git("switch", "-q", "-f", branch)
    shutil.rmtree(Path(params.paths.batches) / batch, ignore_errors=True)
    with dvc_repo() as repo:
        repo.checkout(force=True)
