"""Fixtures: a tiny BERT built from config, tiny CoNLL splits, and a whole pipeline workspace
(git + DVC repo with the project's dvc.yaml and code) in a temporary directory."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

TRAIN = [
    ("Alice lives in Paris .", "B-person O O B-location O"),
    ("Bob visited London yesterday .", "B-person O B-location O O"),
    ("Carol and Dave went to Berlin .", "B-person O B-person O O B-location O"),
    ("New York is big .", "B-location I-location O O O"),
    ("Eve met Frank in Rome .", "B-person O B-person O B-location O"),
    ("I love Madrid in spring .", "O O B-location O O O"),
    ("Grace Hopper wrote code .", "B-person I-person O O O"),
    ("the weather in Oslo is cold .", "O O O B-location O O O"),
    ("Heidi flew to Tokyo .", "B-person O O B-location O"),
    ("nothing happened today .", "O O O O"),
    ("Ivan and Judy live in Lima .", "B-person O B-person O O B-location O"),
    ("Paris is lovely .", "B-location O O O"),
]
DEV = [
    ("Alice went to Rome .", "B-person O O B-location O"),
    ("Bob loves Oslo .", "B-person O B-location O"),
    ("the code is cold .", "O O O O O"),
]
TEST = [
    ("Carol lives in Tokyo .", "B-person O O B-location O"),
    ("Eve visited Berlin today .", "B-person O B-location O O"),
    ("Frank met Heidi .", "B-person O B-person O"),
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Every test is in exactly one tier: `unit` (the default: `make test-fast`), `slow` (whole-DAG and
# other end-to-end runs) or `browser` (a real Prefect server and Chromium). `make test` runs all.
TIERS = ("slow", "browser")


# Modules whose tests share nothing costly (each whole-DAG test builds its own workspace): under
# pytest-xdist their tests spread over the workers, first, as the longest units of work; every
# other module's tests stay together on one worker, so its session fixtures (a trained champion,
# a Prefect server) are built once, and modules go in the order of how many slow or browser tests
# they hold (the longest work first, so the quick unit-only modules fill the end evenly).
SPREAD_MODULES = {"test_pipeline"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    heavy: dict[str, int] = {}  # module: its slow and browser tests
    for item in items:
        tiers = [name for name in TIERS if item.get_closest_marker(name)]
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid}: in more than one tier ({', '.join(tiers)}); mark it with one")
        if not tiers:
            item.add_marker(pytest.mark.unit)
        else:
            heavy[item.module.__name__] = heavy.get(item.module.__name__, 0) + 1
    # a stable sort: each module's tests stay together and in their order
    items.sort(key=lambda item: (item.module.__name__ not in SPREAD_MODULES, -heavy.get(item.module.__name__, 0)))


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own; optional: xdist may be absent
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with our scopes: a module, or a single test of SPREAD_MODULES, in the
    order collected. (Not `--dist loadgroup`: on pytest 9.2 its groups are silently ignored,
    pytest-dev/pytest-xdist#1386, and each worker rebuilt the session fixtures.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if Path(module).stem in SPREAD_MODULES else module

    config.option.loadscopereorder = False  # keep the collection's order (the sort above), not test counts
    return ByModule(config, log)


def pytest_configure(config):
    """Under pytest-xdist (`make test`: -n auto), each worker and every process it starts (stages,
    dvc, Prefect) runs on its own share of the cores: torch sizes its threads to it, so two workers
    on 2 cores do not fight over both (oversubscribed, each would run slower than alone)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker and count > 1 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) % count::count] or cores)


def write_conll(path: Path, rows, sep: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = ["\n".join(f"{tok}{sep}{tag}" for tok, tag in zip(text.split(), tags.split())) for text, tags in rows]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def build_tiny_bert(directory: Path) -> Path:
    """A 2-layer, hidden-32 BERT and a WordPiece tokenizer over the fixture vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w.lower() for rows in (TRAIN, DEV, TEST) for text, _ in rows for w in text.split()})
    pieces = sorted({"##" + c for w in words for c in w} | {c for w in words for c in w})
    directory.mkdir(parents=True, exist_ok=True)
    entries = SPECIALS + words + [p for p in pieces if p not in words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(entries)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def prefect_backend():
    """Prefect's real API on a temporary SQLite database, shared by every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def tiny_params(model_dir: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"].update(train="data/raw/train.conll", dev="data/raw/dev.conll", test="data/raw/test.conll")
    params["ingest"]["entity_types"] = ["location", "person"]
    params["pretrain"].update(checkpoint=str(model_dir), epochs=2, batch_size=4, learning_rate=1e-3, block_size=16)
    params["finetune"].update(epochs=12, batch_size=4, learning_rate=1e-2,
                              max_length=32, stride=4, patience=12)
    params["prune"].update(epochs=2, batch_size=4, learning_rate=5e-3, patience=2)
    params["prune"]["structured"]["importance_samples"] = 8
    params["prune"]["unstructured"]["enabled"] = True  # off by default; the tiny DAG keeps it covered
    params["distill"].update(epochs=8, batch_size=4, learning_rate=1e-2, patience=8)
    # INC compiles a program per input shape (seconds each): only the classification DAG test turns it on
    params["quantize"].update(calibration_samples=8, inc_sources=[])
    params["evaluate"].update(batch_size=8, latency_samples=10, warmup=2, throughput_batch=4)
    params["evaluate"]["gate"]["max_drop"] = 0.5  # tiny models are noisy; the gate's rules have unit tests
    return params


def quick_params(workspace: Path) -> None:
    """The tiny workspace's params with fewer epochs and INT8 candidates: the same DAG, sooner, for
    tests about the runs themselves (UI, concurrency) rather than what the model learns."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["pretrain"]["enabled"] = False  # its default (the browser test expects an empty MLM plot)
    params["finetune"].update(epochs=4, patience=4)
    params["prune"].update(epochs=1)
    params["distill"].update(epochs=2, patience=2)
    params["quantize"].update(methods=["ort_dynamic"], per_channel=[True])
    params["evaluate"].update(warmup=1, timing_rounds=2, turn_warmup=1)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def as_classification(rows) -> list[tuple[str, str]]:
    """The NER fixture sentences labelled by whether they name a place: a learnable toy task."""
    return [(text, "place" if "location" in tags else "no_place") for text, tags in rows]


def write_tsv(path: Path | str, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows), encoding="utf-8")
    return path


def use_classification(workspace: Path) -> None:
    """Switch a workspace to the text-classification variant of the fixture data."""
    for split, rows in (("train", TRAIN), ("dev", DEV), ("test", TEST)):
        write_tsv(workspace / f"data/raw/{split}.tsv", as_classification(rows))
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["paths"].update(train="data/raw/train.tsv", dev="data/raw/dev.tsv", test="data/raw/test.tsv")
    params["ingest"].update(task="classification", format="tsv", entity_types=[], labels=["no_place", "place"])
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


_WORKSPACE_TEMPLATES: dict[Path, Path] = {}  # model dir -> a finished workspace, copied for each test


def make_workspace(path: Path, model_dir: Path) -> Path:
    """A git + DVC repo holding this project's DAG, code and tiny data: what a user's clone is.
    Built once per model dir and copied after (`git init` and `dvc init` took over a second a test)."""
    template = _WORKSPACE_TEMPLATES.get(model_dir)
    if template is None:
        template = _build_workspace(Path(tempfile.mkdtemp(prefix="workspace-template-")) / "ws", model_dir)
        atexit.register(shutil.rmtree, template.parent, True)
        _WORKSPACE_TEMPLATES[model_dir] = template
    shutil.copytree(template, path, symlinks=True, dirs_exist_ok=True)
    return path


def _build_workspace(path: Path, model_dir: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for item in ("dvc.yaml", "tasks", "tinynlp", "flows", "cli"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, path / item)
    (path / "data/batches").mkdir(parents=True)
    shutil.copy(ROOT / "data/batches/README.md", path / "data/batches/README.md")
    write_conll(path / "data/raw/train.conll", TRAIN)
    write_conll(path / "data/raw/dev.conll", DEV)
    write_conll(path / "data/raw/test.conll", TEST)
    (path / "params.yaml").write_text(yaml.safe_dump(tiny_params(model_dir), sort_keys=False))
    run(["git", "init", "-q"], path)
    run(["git", "config", "user.email", "ci@example.com"], path)
    run(["git", "config", "user.name", "ci"], path)
    run([sys.executable, "-m", "dvc", "init", "-q"], path)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], path)
    return path


@pytest.fixture
def workspace(tmp_path, tiny_bert, monkeypatch) -> Path:
    ws = make_workspace(tmp_path / "ws", tiny_bert)
    monkeypatch.chdir(ws)
    return ws
