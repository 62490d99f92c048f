"""`tinynlp serve` under limits: what one request may cost, requests in flight, micro-batching,
metrics, health and reloading a newly promoted model."""
from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import pytest

from cli import serve as serve_cli
from test_predict import NER_LABELS, promoted
from tinynlp.config import ServeConfig
from tinynlp.predict import Predictor
from tinynlp.errors import RequestRefused
from tinynlp.serving import parse_texts, wait_until_ready


def body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("raw, status, named", [
    (body({"texts": ["a"] * 5}), 413, "serve.max_texts"),
    (body({"texts": ["x" * 11]}), 413, "serve.max_chars"),
    (b'{"texts": ["caf\xe9"]}', 422, "not UTF-8 (byte 15"),
    (b"[" * 100_000 + b"]" * 100_000, 422, "nests deeper than 32"),
    (b'{"texts": ["a"', 422, "not JSON"),
    (body({"texts": "a"}), 422, "non-empty list of strings"),
    (body({"texts": []}), 422, "non-empty list of strings"),
    (body({"texts": ["a", 3]}), 422, "non-empty list of strings"),
    (body({"texts": ["a"], "document": "yes"}), 422, '"document" is true'),
])
def test_each_limit_is_refused_naming_it(raw, status, named):
    with pytest.raises(RequestRefused) as refused:
        parse_texts(raw, ServeConfig(max_texts=4, max_chars=10))
    assert refused.value.status == status and named in refused.value.message


def test_too_long_texts_are_cut_when_the_operator_chose_it():
    texts, cut, document = parse_texts(body({"texts": ["short", "x" * 25]}),
                                       ServeConfig(max_chars=10, too_long="truncate"))
    assert texts == ["short", "x" * 10] and cut == [1] and document is False


@pytest.fixture
def model(tiny_bert, tmp_path):
    return promoted(tiny_bert, tmp_path / "ner", "ner", NER_LABELS, favour="B-person")


def slow_outputs(monkeypatch, seconds: float):
    original = Predictor.served  # what the server's micro-batches call

    def served(self, texts, documents=None):
        time.sleep(seconds)
        return original(self, texts, documents)

    monkeypatch.setattr(Predictor, "served", served)


async def post_all(app, bodies: list) -> list:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))


def test_bodies_over_the_size_limit_are_refused_with_or_without_a_length(model):
    from fastapi.testclient import TestClient

    client = TestClient(serve_cli.build_app(model, cfg=ServeConfig(max_body_bytes=100)))
    declared = client.post("/predict", content=body({"texts": ["y" * 200]}), headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "serve.max_body_bytes" in declared.json()["detail"]
    chunked = client.post("/predict", content=(b'{"texts": ["' + b"z" * 50 for _ in range(4)))
    assert chunked.status_code == 413
    assert client.post("/predict", json={"texts": ["Alice ."]}).status_code == 200


def test_requests_over_the_in_flight_bound_get_503_with_retry_after(model, monkeypatch):
    slow_outputs(monkeypatch, 0.5)
    app = serve_cli.build_app(model, cfg=ServeConfig(max_in_flight=1, batch_window_ms=0))
    answers = asyncio.run(post_all(app, [{"texts": ["Alice ."]}, {"texts": ["Bob ."]}]))
    assert sorted(r.status_code for r in answers) == [200, 503]
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "serve.max_in_flight" in busy.json()["detail"]


def test_a_request_over_its_time_budget_gets_503(model, monkeypatch):
    slow_outputs(monkeypatch, 1.0)
    app = serve_cli.build_app(model, cfg=ServeConfig(timeout_s=0.2))
    [answer] = asyncio.run(post_all(app, [{"texts": ["Alice ."]}]))
    assert answer.status_code == 503 and "serve.timeout_s" in answer.json()["detail"]


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_answer(model):
    from fastapi.testclient import TestClient

    app = serve_cli.build_app(model, cfg=ServeConfig(batch_window_ms=100, max_batch=32))
    texts = [f"Alice number {i} ." for i in range(8)]
    answers = asyncio.run(post_all(app, [{"texts": [t]} for t in texts]))
    assert [r.json()["results"][0]["text"] for r in answers] == texts
    assert all(r.json()["results"][0]["entities"][1]["word"] == "number" for r in answers)
    exposition = TestClient(app).get("/metrics").text
    batches = float(next(l for l in exposition.splitlines() if l.startswith("tinynlp_batch_texts_count")).split()[-1])
    assert batches < 8, exposition  # fewer model calls than requests
    assert 'tinynlp_requests_total{endpoint="/predict",status="200"} 8.0' in exposition
    assert 'tinynlp_model_info{task="ner",variant="test",version="unversioned"} 1.0' in exposition


def test_an_idle_model_takes_a_request_at_once_and_a_backlog_starts_without_the_window():
    """An idle model has no load to gather: a lone request runs without waiting the window.
    Requests that queued while a batch ran have waited already, so the next batch starts as soon
    as the model is free."""
    from tinynlp.serving import MicroBatcher

    starts: list[tuple[float, list[str]]] = []

    def run(texts, documents):
        starts.append((time.perf_counter(), list(texts)))
        time.sleep(0.2)
        return texts

    async def scenario():
        batcher = MicroBatcher(run, window_s=0.5, max_batch=32)
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" runs; the others queue behind it
        rest = [asyncio.create_task(batcher.submit([t])) for t in "bcd"]
        answers = await asyncio.gather(first, *rest)
        await batcher.close()
        return answers

    submitted = time.perf_counter()
    assert asyncio.run(scenario()) == [["a"], ["b"], ["c"], ["d"]]
    assert [texts for _, texts in starts] == [["a"], ["b", "c", "d"]]
    assert starts[0][0] - submitted < 0.15  # not the 0.5 s window
    assert starts[1][0] - starts[0][0] < 0.45  # 0.2 s of the first batch, not 0.2 + the window


def test_while_another_batch_runs_a_free_worker_waits_the_window_for_company():
    """With a batch running, a request arriving at a free worker waits the window, and requests
    arriving within it join its batch."""
    from tinynlp.serving import MicroBatcher

    batches: list[list[str]] = []

    def run(texts, documents):
        batches.append(list(texts))
        time.sleep(0.6)
        return texts

    async def scenario():
        batcher = MicroBatcher(run, window_s=0.5, max_batch=32, workers=2)
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" runs on one worker
        second = asyncio.create_task(batcher.submit(["b"]))
        await asyncio.sleep(0.1)  # within b's window
        third = asyncio.create_task(batcher.submit(["c"]))
        answers = await asyncio.gather(first, second, third)
        await batcher.close()
        return answers

    assert asyncio.run(scenario()) == [["a"], ["b"], ["c"]]
    assert batches == [["a"], ["b", "c"]]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_bound_how_many_batches_run_at_once(workers):
    """With `workers` 2 a second batch starts while the first still runs; with 1 it waits."""
    from tinynlp.serving import MicroBatcher

    running, most = 0, 0
    lock = threading.Lock()

    def run(texts, documents):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return texts

    async def scenario():
        batcher = MicroBatcher(run, window_s=0.001, max_batch=1, workers=workers)
        answers = await asyncio.gather(*(batcher.submit([t]) for t in "abcd"))
        await batcher.close()
        return answers

    started = time.perf_counter()
    assert asyncio.run(scenario()) == [["a"], ["b"], ["c"], ["d"]]
    assert most == workers
    assert time.perf_counter() - started < 0.2 * 4 / workers + 0.15


def test_a_document_request_keeps_its_context_when_batched_with_others(tiny_bert, tmp_path):
    """Texts sent as one document are read together; a plain request in the same micro-batch is not
    read with them."""
    context_model = promoted(tiny_bert, tmp_path / "context", "ner", NER_LABELS, max_length=32, context=8)
    app = serve_cli.build_app(context_model, cfg=ServeConfig(batch_window_ms=100, max_batch=32))
    texts = ["alice lives in paris .", "bob wrote ."]
    document, plain = asyncio.run(post_all(app, [{"texts": texts, "document": True}, {"texts": texts}]))
    predictor = Predictor(context_model)
    expected = {"document": predictor.predict(texts, documents=[0, 0]), "plain": predictor.predict(texts)}
    assert expected["document"] != expected["plain"]
    for answer, kind in ((document, "document"), (plain, "plain")):
        assert [[e["score"] for e in r["entities"]] for r in answer.json()["results"]] == \
            [[e.score for e in entities] for entities in expected[kind]]


def test_health_says_live_at_once_and_ready_once_the_model_is_loaded(model):
    from fastapi.testclient import TestClient

    app = serve_cli.build_app(model, load_in_background=True)
    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "alive"}
        for _ in range(100):
            if client.get("/health/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/health/ready").json() == {"status": "ready"}
        assert client.post("/predict", json={"texts": ["Alice ."]}).status_code == 200


def test_reload_serves_a_newly_promoted_model_and_keeps_the_old_one_if_the_new_fails(model, tiny_bert, tmp_path):
    from fastapi.testclient import TestClient

    client = TestClient(serve_cli.build_app(model))
    assert client.post("/predict", json={"texts": ["Alice ."]}).json()["results"][0]["entities"][0]["entity_group"] == "person"
    shutil.rmtree(model)
    promoted(tiny_bert, model, "ner", NER_LABELS, favour="B-location")
    assert client.post("/admin/reload").json()["status"] == "loaded"
    assert client.post("/predict", json={"texts": ["Alice ."]}).json()["results"][0]["entities"][0]["entity_group"] == "location"
    (model / "model.onnx").unlink()
    failed = client.post("/admin/reload")
    assert failed.status_code == 409 and "kept the model being served" in failed.json()["detail"]
    assert client.post("/predict", json={"texts": ["Alice ."]}).status_code == 200


def test_the_loaded_model_is_kept_out_of_full_collections_and_a_replaced_one_is_still_freed(model):
    """A full collection of the server's heap took about 150 ms with every request waiting: the
    p99 under load. What is loaded is frozen; what a reload replaces is collected."""
    import gc
    import weakref

    from tinynlp.serving import freeze_heap

    class Cyclic:  # freed only by the cyclic collector, as a replaced model's cycles are
        pass

    gc.unfreeze()
    serve_cli.build_app(model)
    assert gc.get_freeze_count() > 0
    old = Cyclic()
    old.me = old
    alive = weakref.ref(old)
    freeze_heap()
    del old
    gc.collect()
    assert alive() is not None  # frozen: full collections skip it
    freeze_heap()  # the next load
    assert alive() is None
    gc.unfreeze()


def test_waiting_for_a_server_names_the_port_when_it_exits_first_or_never_gets_ready():
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    gone.wait()
    with pytest.raises(RuntimeError, match=f"port {port} exited with status 3"):
        wait_until_ready(port, gone)
    with pytest.raises(RuntimeError, match=f"port {port} was not ready after 1 s"):
        wait_until_ready(port, timeout_s=1.0)


@pytest.mark.parametrize("loop, http", [("uvloop", "httptools"), ("asyncio", "h11")])
def test_the_server_process_answers_on_either_event_loop_and_parser_and_stops_on_sigterm(model, loop, http):
    """`tinynlp serve` as an operator starts it: uvloop and httptools (installed with tinynlp, and
    what auto picks) or the standard library's loop and pure-Python h11."""
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--model", str(model), "--port", str(port),
                               "--params", "absent.yaml", f"--loop={loop}", f"--http={http}"], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_ready(port, server)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"texts": ["Alice ."]}, timeout=10)
        assert answer.json()["results"][0]["entities"][0]["entity_group"] == "person"
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    # uvicorn finishes what is in flight, then raises the signal again: the exit a supervisor expects
    assert server.returncode == -signal.SIGTERM and "Finished server process" in output, output
