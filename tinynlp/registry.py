"""Model versions as git tags, read without DVC: GTO's `<name>@vN.0.0` (a registered version) and
`<name>#<stage>#<k>` (a stage assignment), which `gto show` lists and `dvc artifacts get` resolves,
and the legacy plain tags `<prefix>N` of models promoted before GTO versions (docs/lineage.md)."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tinynlp.lineage import LOCK_FILE, promoted_hash

_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class ModelVersion:
    version: str               # "v2.0.0"; a legacy version is named by its tag ("model-v1")
    tag: str                   # the git tag that registered it
    commit: str                # full sha of the commit it points at
    created: str               # when it was registered (the tag's time)
    order: tuple[int, ...]     # (N, minor, patch): GTO and legacy versions in one numbering
    stages: tuple[str, ...] = field(default=())   # GTO stages it holds now (e.g. prod)
    legacy: bool = False


def _git(root: str | Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def is_repository(root: str | Path = ".") -> bool:
    try:
        return _git(root, "rev-parse", "--git-dir").returncode == 0
    except OSError:
        return False


def _registered(name: str, root: str | Path) -> list[ModelVersion]:
    """The versions GTO sees (deregistered and deprecated ones left out), with their active stages."""
    from gto import api as gto  # GTO's own reading of its tags; only here (half a second to import)
    from gto.exceptions import ArtifactNotFound

    try:
        shown = gto.show(str(root), name, registered_only=True)
    except ArtifactNotFound:
        return []
    found = []
    for entry in shown:
        match = _SEMVER.match(entry["version"])
        if not match:
            continue
        stages = tuple(sorted({s["stage"] for s in entry.get("stages") or [] if s.get("is_active", True)}))
        created = entry["created_at"]
        created = created.isoformat() if hasattr(created, "isoformat") else str(created)
        found.append(ModelVersion(entry["version"], entry["ref"], entry["commit_hexsha"], created,
                                  tuple(int(g) for g in match.groups()), stages))
    return found


def _legacy(prefix: str, root: str | Path) -> list[ModelVersion]:
    listed = _git(root, "for-each-ref", f"refs/tags/{prefix}*",
                  "--format=%(refname:strip=2)%00%(*objectname)%00%(objectname)%00%(creatordate:iso-strict)")
    found = []
    for line in listed.stdout.splitlines():
        tag, target, obj, created = line.split("\0")
        number = tag[len(prefix):]
        if number.isdigit():  # an annotated tag points at its commit through the tag object
            found.append(ModelVersion(tag, tag, target or obj, created, (int(number), 0, 0), legacy=True))
    return found


def versions(name: str, legacy_prefix: str, root: str | Path = ".") -> list[ModelVersion]:
    """Every version of the model, oldest first: GTO-registered ones and the legacy tags."""
    if not is_repository(root):
        return []
    found = _registered(name, root) + (_legacy(legacy_prefix, root) if legacy_prefix else [])
    return sorted(found, key=lambda v: (v.order, not v.legacy))


def next_version(found: list[ModelVersion]) -> str:
    """The next major version, after GTO and legacy versions alike: v1.0.0 in a new registry,
    v3.0.0 after model-v2."""
    return f"v{max((v.order[0] for v in found), default=0) + 1}.0.0"


def version_tag(name: str, version: str) -> str:
    """The GTO tag that registers `version` of `name` (gto.tag.TagTemplates)."""
    return f"{name}@{version}"


def find(found: list[ModelVersion], query: str) -> ModelVersion | None:
    """A version by what a user types: v2.0.0, the GTO tag, a legacy tag, or just v2 or 2."""
    exact = next((v for v in found if query in (v.version, v.tag)), None)
    if exact is not None:
        return exact
    numbered = [v for v in found if query.removeprefix("v") == str(v.order[0]) and v.order[1:] == (0, 0)]
    return min(numbered, key=lambda v: v.legacy, default=None)  # a GTO version before a legacy tag


def show_file(rev: str, path: str | Path, root: str | Path = ".") -> str | None:
    """A file as committed at `rev` (path relative to `root`), or None when it is not there."""
    shown = _git(root, "show", f"{rev}:./{Path(path).as_posix()}")
    return shown.stdout if shown.returncode == 0 else None


def holding(found: list[ModelVersion], promoted: str, rev: str, root: str | Path = ".") -> ModelVersion | None:
    """The version whose promoted model is the one `rev` holds: the newest version whose dvc.lock
    records the same hash for the promoted folder as dvc.lock at `rev`."""
    def locked(at: str) -> str | None:
        text = show_file(at, LOCK_FILE, root)
        return promoted_hash(yaml.safe_load(text) or {}, promoted) if text else None

    target = locked(rev)
    if target is None:
        return None
    return next((v for v in reversed(found) if locked(v.commit) == target), None)
