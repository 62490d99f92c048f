"""A DVC remote on S3-compatible storage: a local S3 server (moto, on loopback) started by the test;
data and a model pushed from one git + DVC repo, pulled byte for byte into a fresh `git clone` of it,
with the README's commands and the retraining flow's remote resolution (`flows.versioning.ensure_remote`).
Credentials are fake and live only in the environment of the processes that talk to the server."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

for _module in ("moto.server", "boto3", "dvc_s3"):
    if importlib.util.find_spec(_module) is None:  # declared dependencies: fail, never skip
        raise ImportError(f"{_module} is missing: the S3 remote test needs `pip install -e '.[test]'` "
                          "(dvc-s3 in the dependencies, moto[server] and boto3 in the test extra)")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "tinynlp-dvc"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _s3_env(tmp: Path) -> dict[str, str]:
    """The environment of every process that talks to the server: fake credentials, no AWS or DVC
    config of the machine's user, no proxy for loopback, no analytics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env.update(CREDENTIALS, AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
               NO_PROXY=no_proxy, no_proxy=no_proxy, DVC_NO_ANALYTICS="1",
               DVC_GLOBAL_CONFIG_DIR=str(tmp / "dvc-global"), DVC_SYSTEM_CONFIG_DIR=str(tmp / "dvc-system"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return env


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port, up until the module's tests are done."""
    tmp = tmp_path_factory.mktemp("s3")
    env = _s3_env(tmp)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"moto server exited ({server.returncode}):\n{(tmp / 'moto.log').read_text()}")
            try:
                with opener.open(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto server did not answer on {endpoint} within 60 s:\n"
                                f"{(tmp / 'moto.log').read_text()}")
                time.sleep(0.2)
        yield {"endpoint": endpoint, "env": env, "tmp": tmp}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _client(s3):
    import boto3
    from botocore.config import Config

    # credentials passed here, not set in this process's environment
    return boto3.client("s3", endpoint_url=s3["endpoint"], region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        config=Config(proxies={"http": "", "https": ""}))


def _keys(client, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _dvc(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd, env)


def _params(remote: str, remote_url: str):
    from tinynlp.config import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["retrain"].update(remote=remote, remote_url=remote_url)
    return parse_params(raw, "params.yaml (S3 remote test)", check_files=False)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tracked(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes()
            for top in ("data", "models") for p in sorted((ws / top).rglob("*")) if p.is_file()
            and p.name != ".gitignore" and p.suffix != ".dvc"}


@pytest.mark.slow
def test_push_and_pull_data_and_models_through_an_s3_remote(s3, tmp_path, monkeypatch):
    from flows.versioning import ensure_remote  # before any chdir: `flows` sets PREFECT_HOME from the cwd

    env, endpoint = s3["env"], s3["endpoint"]
    client = _client(s3)
    client.create_bucket(Bucket=BUCKET)

    # A git + DVC repo with a data file and a model directory tracked by DVC.
    ws = tmp_path / "ws"
    rng = random.Random(0)
    (ws / "data/raw").mkdir(parents=True)
    (ws / "data/raw/train.tsv").write_text("text\tlabel\n" + "".join(
        f"sentence {i} about {rng.choice(['Paris', 'Oslo', 'Lima'])}\t{rng.choice(['place', 'no_place'])}\n"
        for i in range(2000)), encoding="utf-8")
    model = ws / "models/classifier"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"hidden_size": 32, "num_labels": 2}), encoding="utf-8")
    (model / "model.safetensors").write_bytes(rng.randbytes(1_500_000))
    (model / "tokenizer.json").write_text(json.dumps({"vocab": {f"w{i}": i for i in range(500)}}), encoding="utf-8")
    _run(["git", "init", "-q"], ws, env)
    _run(["git", "config", "user.email", "ci@example.com"], ws, env)
    _run(["git", "config", "user.name", "ci"], ws, env)
    _dvc(["init", "-q"], ws, env)
    _dvc(["add", "-q", "data/raw/train.tsv", "models/classifier"], ws, env)

    # The README's commands: the remote (bucket, path, endpoint; no secrets) is committed.
    _dvc(["remote", "add", "-d", "storage", f"s3://{BUCKET}/store"], ws, env)
    _dvc(["remote", "modify", "storage", "endpointurl", endpoint], ws, env)
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "commit", "-q", "-m", "data, model and the S3 remote"], ws, env)
    config = (ws / ".dvc/config").read_text(encoding="utf-8")
    assert f"s3://{BUCKET}/store" in config and "testing" not in config

    # retrain.remote: storage -> the retraining flow pushes to that remote and creates nothing.
    monkeypatch.chdir(ws)
    assert ensure_remote(_params("storage", "storage/dvc-remote")) == "storage"
    assert not (ws / ".dvc/config.local").exists()

    before = json.loads(_dvc(["status", "-c", "--json"], ws, env) or "{}")
    assert before, "nothing to push: the remote already holds everything?"
    _dvc(["push", "-r", "storage"], ws, env)
    assert json.loads(_dvc(["status", "-c", "--json"], ws, env) or "{}") == {}

    keys = _keys(client, "store/")
    data_md5 = _md5(ws / "data/raw/train.tsv")
    weights_md5 = _md5(model / "model.safetensors")
    assert f"store/files/md5/{data_md5[:2]}/{data_md5[2:]}" in keys
    assert f"store/files/md5/{weights_md5[:2]}/{weights_md5[2:]}" in keys
    assert any(k.endswith(".dir") for k in keys), f"no directory manifest for the model in {sorted(keys)}"
    assert len(keys) == 5, sorted(keys)  # data file + 3 model files + the model's .dir manifest

    # A fresh clone: git brings the pointers and the remote's config, `dvc pull` the bytes.
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(ws), str(clone)], tmp_path, env)
    assert not (clone / "data/raw/train.tsv").exists() and not (clone / "models/classifier").exists()
    assert json.loads(_dvc(["status", "-c", "--json"], clone, env) or "{}"), "clone reports in sync before pull"
    _dvc(["pull"], clone, env)
    original, pulled = _tracked(ws), _tracked(clone)
    assert sorted(pulled) == ["data/raw/train.tsv", "models/classifier/config.json",
                              "models/classifier/model.safetensors", "models/classifier/tokenizer.json"]
    assert pulled == original
    assert json.loads(_dvc(["status", "-c", "--json"], clone, env) or "{}") == {}
    assert "up to date" in _dvc(["status"], clone, env).lower()

    # A remote the repo does not have: the flow creates it from retrain.remote_url in .dvc/config.local
    # (never committed); the endpoint of an S3-compatible server goes there too, and the push lands.
    monkeypatch.chdir(clone)
    assert ensure_remote(_params("backup", f"s3://{BUCKET}/backup")) == "backup"
    _dvc(["remote", "modify", "--local", "backup", "endpointurl", endpoint], clone, env)
    local = (clone / ".dvc/config.local").read_text(encoding="utf-8")
    assert f"s3://{BUCKET}/backup" in local and "testing" not in local
    _dvc(["push", "-r", "backup"], clone, env)
    assert {k.removeprefix("backup/") for k in _keys(client, "backup/")} == {k.removeprefix("store/") for k in keys}
    assert _run(["git", "status", "--porcelain"], clone, env) == ""  # config.local stays out of git
    for gone in (clone / ".dvc/cache", clone / "models/classifier"):
        shutil.rmtree(gone)
    (clone / "data/raw/train.tsv").unlink()
    _dvc(["pull", "-r", "backup"], clone, env)
    assert _tracked(clone) == original
