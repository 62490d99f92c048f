"""`tinynlp serve` under load, on loopback: 1, 8 and 32 concurrent clients sending a mix of request
sizes, with micro-batching on (`serve.batch_window_ms: 5`) and off (0) side by side, against the
offline ceiling (the same texts through the Predictor at batch 32, in one process); then hostile
requests, each of which must be answered within the time budget while /health keeps answering.

    python benchmarks/serve_load.py [--requests 1000] [--clients 1,8,32] [--model models/promoted]
        [--client raw|httpx] [--windows 5,0] [--also 'LABEL:max_batch=64'] [--baseline-ref REF]
        [--repeats 3] [--admission 16] [--rss-requests 10000] [--no-hostile]

Every server (one per `--windows` value, one per `--also` setting, and with `--baseline-ref` one
per window serving that commit's code with its params.yaml from a git worktree) is started at once
and warmed up; then the load runs pass by pass, each pass over every client count and server in
turn, so a slow spell of the shared machine hits all of them. Rows give the median over the `--repeats` passes.

Per run: requests/s, texts/s, p50/p95/p99 latency, answers by status, the CPU seconds the server
and the load generator used (both share the machine's cores), and the server's RSS before and
after (and after `--rss-requests` more). Request sizes: 70% one text, 20% four, 10% sixteen
(WNUT-17 test sentences).

`--admission N`: one more run at the largest client count, batching on, with `serve.max_in_flight: N`.
The server sheds what is over N with 503 and Retry-After; the clients wait as told and send the same
texts again. Its row gives the latency of answered attempts (p50/p95/p99_ms), the share of attempts
shed, and the latency a caller sees from its first attempt to its answer (`until_answered_p99_ms`).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, write_json  # noqa: E402
from benchmarks.predict_load import sentences  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402
from tinynlp.serving import wait_until_ready  # noqa: E402

SIZES = [1] * 7 + [4] * 2 + [16]
SERVER_FLAGS = ("loop", "http")  # --also keys that are flags of `tinynlp serve`, not of its serve section


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def start_server(model: str, port: int, serve: dict, workdir: Path, code: Path = ROOT) -> subprocess.Popen:
    """`tinynlp serve` from the code in `code` (this checkout, or a baseline's worktree), with that
    code's params.yaml and `serve` overrides; `loop` and `http` among them are `tinynlp serve`'s
    flags of those names (the event loop, the HTTP parser). Returns once /health/ready answers."""
    flags = [f"--{key}={serve[key]}" for key in SERVER_FLAGS if key in serve]
    params = yaml.safe_load((code / "params.yaml").read_text())
    params["serve"].update({k: v for k, v in serve.items() if k not in SERVER_FLAGS})
    path = workdir / f"params-{port}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    # `python -m` puts the working folder first on sys.path: `code`'s cli and tinynlp are served
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--model", str(Path(model).resolve()),
                                "--port", str(port), "--params", str(path), *flags], cwd=code,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(port, process)
    except RuntimeError as exc:
        process.kill()
        raise SystemExit(str(exc)) from exc
    return process


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _raw_post(reader, writer, body: bytes) -> tuple[int, float]:
    """One POST /predict on a kept-alive connection, as little client work as HTTP/1.1 allows:
    the status and the Retry-After seconds (0 without one)."""
    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
              for line in head.split(b"\r\n")[1:] if b":" in line}
    await reader.readexactly(int(fields[b"content-length"]))
    return status, float(fields.get(b"retry-after", 0))


async def load(port: int, texts: list[str], clients: int, total: int, seed: int, server_pid: int | None = None,
               client_kind: str = "raw", retry: bool = False) -> dict:
    """`total` requests from `clients` concurrent connections. `raw`: a minimal HTTP/1.1 client on
    asyncio streams, so the load generator takes little of the 2 cores the server needs; `httpx`:
    the client of the first measurements. CPU seconds of the server and of this process are kept.
    `retry` (raw client): a shed request (503 with Retry-After) is sent again after the wait."""
    import resource

    rng = random.Random(seed)
    plan = [[rng.choice(texts) for _ in range(rng.choice(SIZES))] for _ in range(total)]
    latencies, statuses, done_texts, until_answered = [], {}, 0, []
    queue = iter(plan)

    attempt_statuses: list[int] = []

    def record(started: float, status: int, batch: list[str]) -> None:
        nonlocal done_texts
        latencies.append(time.perf_counter() - started)
        attempt_statuses.append(status)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            done_texts += len(batch)

    async def raw_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for batch in queue:
                body, first = json.dumps({"texts": batch}).encode(), time.perf_counter()
                while True:
                    started = time.perf_counter()
                    status, wait = await _raw_post(reader, writer, body)
                    record(started, status, batch)
                    if not (retry and status == 503 and wait):
                        break
                    await asyncio.sleep(wait)
                if retry and status == 200:
                    until_answered.append(time.perf_counter() - first)
        finally:
            writer.close()

    async def httpx_client(http) -> None:
        for batch in queue:
            started = time.perf_counter()
            record(started, (await http.post("/predict", json={"texts": batch})).status_code, batch)

    usage = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
    client_cpu, server_cpu = usage(), cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    if client_kind == "raw":
        await asyncio.gather(*(raw_client() for _ in range(clients)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as http:
            await asyncio.gather(*(httpx_client(http) for _ in range(clients)))
    seconds = time.perf_counter() - started
    answered = sorted(t for t, status in zip(latencies, attempt_statuses) if status == 200) if retry else \
        sorted(latencies)
    pick = lambda values, q: round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else None
    extra = {"shed_share": round(statuses.get(503, 0) / len(latencies), 3),
             "until_answered_p99_ms": pick(sorted(until_answered), 0.99)} if retry else {}
    return {"requests_per_s": round(total / seconds, 1), "texts_per_s": round(done_texts / seconds, 1),
            "p50_ms": pick(answered, 0.50), "p95_ms": pick(answered, 0.95), "p99_ms": pick(answered, 0.99), **extra,
            "statuses": json.dumps(dict(sorted(statuses.items()))),
            "server_cpu_s": round(cpu_seconds(server_pid) - server_cpu, 1) if server_pid else None,
            "client_cpu_s": round(usage() - client_cpu, 1), "seconds": round(seconds, 1)}


def batching(window: float) -> str:
    return f"on ({window:g} ms)" if window else "off"


def batching_labels(windows: str) -> list[str]:
    """The labels of this checkout's servers, one per --windows value (the ones RSS is followed on)."""
    return [batching(float(w)) for w in windows.split(",")]


def server_configs(windows: str, also: list[str], baseline_ref: str | None, baseline: Path | None
                   ) -> dict[str, tuple[Path, dict]]:
    """Label -> (code folder, serve overrides) of every server to load."""
    values = [float(w) for w in windows.split(",")]
    servers = {batching(w): (ROOT, {"batch_window_ms": w}) for w in values}
    for spec in also:
        label, _, pairs = spec.partition(":")
        overrides = {k: yaml.safe_load(v) for k, v in (pair.split("=", 1) for pair in pairs.split(",") if pair)}
        servers[label] = (ROOT, {"batch_window_ms": next((w for w in values if w), 5.0), **overrides})
    if baseline_ref:
        servers.update({f"{baseline_ref}, {batching(w)}": (baseline, {"batch_window_ms": w}) for w in values})
    return servers


@contextlib.contextmanager
def baseline_checkout(ref: str | None, workdir: Path):
    """A detached git worktree of `ref` (None: nothing), removed afterwards."""
    if not ref:
        yield None
        return
    path = workdir / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)


def median_rows(runs: list[dict]) -> list[dict]:
    """Per server and client count: the median of each measure over the repeats."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["server"], run["clients"]), []).append(run)
    rows = []
    for (server, clients), group in groups.items():
        row = {"server": server, "clients": clients, "repeats": len(group)}
        for key, value in group[0].items():
            if key not in row and key != "repeat" and isinstance(value, (int, float)) and value is not None:
                row[key] = round(statistics.median(r[key] for r in group), 2)
        row["statuses"] = json.dumps(dict(sorted(sum((collections.Counter(json.loads(r["statuses"])) for r in group),
                                                     collections.Counter()).items())))
        rows.append(row)
    return rows


def offline_ceiling(model: str, texts: list[str]) -> float:
    from tinynlp.predict import Predictor

    predictor = Predictor(model)
    predictor.predict(texts[:64])  # warm up
    started = time.perf_counter()
    predictor.predict(texts)
    return round(len(texts) / (time.perf_counter() - started), 1)


async def hostile(port: int, budget: float) -> list[dict]:
    """Each hostile request with the time it took to be answered, while /health is polled."""
    import httpx

    cases = {
        "10 MB body": b'{"texts": ["' + b"x" * 10_000_000 + b'"]}',
        "1M-character text": json.dumps({"texts": ["y" * 1_000_000]}).encode(),
        "100k texts": json.dumps({"texts": ["a"] * 100_000}).encode(),
        "invalid UTF-8": b'{"texts": ["caf\xe9"]}',
        "nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
    }
    rows, health_failures = [], 0

    async def poll_health(stop: asyncio.Event) -> None:
        nonlocal health_failures
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            while not stop.is_set():
                try:
                    if (await http.get("/health/live")).status_code != 200:
                        health_failures += 1
                except httpx.HTTPError:
                    health_failures += 1
                await asyncio.sleep(0.1)

    stop = asyncio.Event()
    poller = asyncio.create_task(poll_health(stop))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=budget + 30) as http:
        for name, body in cases.items():
            started = time.perf_counter()
            response = await http.post("/predict", content=body, headers={"content-type": "application/json"})
            rows.append({"request": name, "status": response.status_code,
                         "seconds": round(time.perf_counter() - started, 3), "detail": response.json()["detail"][:90]})
        rows.append(await _trickle(port, budget))
    stop.set()
    await poller
    for row in rows:
        row["health_failures_during_run"] = health_failures
    return rows


async def _trickle(port: int, budget: float) -> dict:
    """A client that sends its body one byte every half second: cut off at the time budget."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"texts": ["' + b"z" * 200 + b'"]}'
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode())
    started = time.perf_counter()
    status = None
    for byte in body:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 0.5)
        except (asyncio.TimeoutError, ConnectionError):
            continue
        if line:
            status = int(line.split()[1])
            break
    writer.close()
    return {"request": "slow client (1 byte / 0.5 s)", "status": status,
            "seconds": round(time.perf_counter() - started, 3), "detail": "cut off by serve.timeout_s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/promoted")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator (see load())")
    parser.add_argument("--windows", default="5,0", help="batch_window_ms values, one run each (0: batching off)")
    parser.add_argument("--rss-requests", type=int, default=0, help="then this many requests more at the largest "
                                                                   "client count to each --windows server, RSS "
                                                                   "before and after (flat?)")
    parser.add_argument("--admission", type=int, default=0,
                        help="then a run at the largest client count with serve.max_in_flight at this bound, the "
                             "clients retrying shed requests after Retry-After")
    parser.add_argument("--also", action="append", default=[],
                        help="one more server, batching on: LABEL:key=value,... of the serve section, "
                             "e.g. 'batch 64:max_batch=64', or the serve command's loop and http, e.g. "
                             "'h11:loop=asyncio,http=h11'")
    parser.add_argument("--baseline-ref", help="a git commit whose code serves too, beside this checkout's "
                                               "(each --windows value), from a worktree of it")
    parser.add_argument("--repeats", type=int, default=1,
                        help="passes over every server and client count; rows give the median of them")
    parser.add_argument("--no-hostile", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/serve_load.json"))
    args = parser.parse_args()
    texts = sentences(yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]["ingested"])
    ceiling = offline_ceiling(args.model, texts)
    rows, runs, port, rss = [], [], 8790, {}
    with tempfile.TemporaryDirectory() as workdir, baseline_checkout(args.baseline_ref, Path(workdir)) as baseline:
        clients_list = [int(c) for c in args.clients.split(",")]
        servers = server_configs(args.windows, args.also, args.baseline_ref, baseline)
        started = {}
        try:
            for label, (code, serve) in servers.items():
                port += 1
                started[label] = (port, start_server(args.model, port, {"max_in_flight": 256, **serve}, Path(workdir),
                                                     code))
                rss[label] = {"before_mb": rss_mb(started[label][1].pid)}
                # untimed warm-up: the first NER answer imports seqeval and ORT grows its arenas
                asyncio.run(load(port, texts, max(clients_list), 100, args.seed, None, args.client))
            # every server's runs interleaved, pass by pass: a slow spell of the machine hits them all
            # and each pass starts with another server, so no server always runs first
            order = list(started.items())
            for repeat in range(args.repeats):
                for clients in clients_list:
                    shift = repeat % len(order)
                    for label, (port_of, server) in order[shift:] + order[:shift]:
                        result = asyncio.run(load(port_of, texts, clients, args.requests, args.seed + repeat,
                                                  server.pid, args.client))
                        runs.append({"server": label, "clients": clients, "repeat": repeat, **result,
                                     "vs_offline": round(result["texts_per_s"] / ceiling, 2)})
                        print(markdown_table(runs[-1:], list(runs[-1])), flush=True)
            rows = median_rows(runs)
            print(markdown_table(rows, list(rows[0])), flush=True)
            for label, (port_of, server) in started.items():
                rss[label]["after_mb"] = rss_mb(server.pid)
                if args.rss_requests and servers[label][0] == ROOT and label in batching_labels(args.windows):
                    asyncio.run(load(port_of, texts, max(clients_list), args.rss_requests, args.seed + 1, server.pid,
                                     args.client))
                    rss[label][f"after_{args.rss_requests}_more_mb"] = rss_mb(server.pid)
                print(f"server RSS, {label}: {rss[label]}", flush=True)
        finally:
            for _, server in started.values():
                server.terminate()
                server.wait(30)
        admission = []
        if args.admission:
            window = next((float(w) for w in args.windows.split(",") if float(w)), 5.0)
            port += 1
            server = start_server(args.model, port, {"batch_window_ms": window, "max_in_flight": args.admission},
                                  Path(workdir))
            try:
                result = asyncio.run(load(port, texts, max(clients_list), args.requests, args.seed, server.pid,
                                          "raw", retry=True))
                admission.append({"batching": batching(window), "max_in_flight": args.admission,
                                  "clients": max(clients_list), **result,
                                  "vs_offline": round(result["texts_per_s"] / ceiling, 2)})
                print(markdown_table(admission, list(admission[0])), flush=True)
            finally:
                server.terminate()
                server.wait(30)
        hostile_rows = []
        if not args.no_hostile:
            port += 1
            server = start_server(args.model, port, {}, Path(workdir))
            try:
                hostile_rows = asyncio.run(hostile(port, 10.0))
            finally:
                server.terminate()
                server.wait(30)
    print(f"\noffline ceiling: {ceiling} texts/s (Predictor, batch 32); server RSS: {rss}\n")
    if hostile_rows:
        print(markdown_table(hostile_rows, list(hostile_rows[0])))
    write_json(Path(args.out), {"offline_texts_per_s": ceiling, "requests_per_run": args.requests,
                                "repeats": args.repeats, "baseline_ref": args.baseline_ref,
                                "client": args.client, "cpu_count": os.cpu_count(), "rows": rows, "runs": runs,
                                "server_rss": rss,
                                "admission": admission, "hostile": hostile_rows})


if __name__ == "__main__":
    main()
