"""The Prefect UI and the DVC plots page in a real browser. `prefect server start` runs on a free
loopback port with its own home; the pipeline flow runs against it from a subprocess
(`python -m flows.pipeline`) in a tiny workspace; headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) opens the flow run page and the HTML of `dvc plots show`.
Checked through the REST API and the rendered page: every stage's task run and its state, the
artifacts, the plot titles and their drawn marks. Screenshots go to reports/ui/ (ignored by git)."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import ROOT, make_workspace, quick_params
from tasks.stages import STAGE_ORDER

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

SCREENSHOTS = ROOT / "reports" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# without the networking flags headless Chromium waits on connections that are refused offline
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")
WIDTH, HEIGHT = 1440, 1000
# create_markdown_artifact keys in flows/pipeline.py
ARTIFACTS = ("data-validation", "training-curves", "augment-report", "evaluate-metrics")
# declared plots with nothing to draw in the tiny workspace: pretraining is off by default, so its
# history is []. (With it on, `dvc plots show` cannot read that history: its epoch-0 row lacks
# train_loss, and DVC takes the fields from the first row.)
NO_DATA = {"mlm_perplexity"}
FINAL_STATES = {"Completed", "Cached"}              # both have state type COMPLETED
WAIT = 60                                           # seconds for anything the browser waits on


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**settings: str) -> dict:
    """This process's environment without its Prefect settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", **settings)
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prefect server exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=5).json() is True:
                    return
            time.sleep(0.5)
        pytest.fail(f"prefect server not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def post(self, path: str, body: dict | None = None):
        response = httpx.post(f"{self.api_url}{path}", json=body or {}, timeout=30)
        response.raise_for_status()
        return response.json()

    def get(self, path: str):
        response = httpx.get(f"{self.api_url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and any child
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@contextlib.contextmanager
def prefect_server(home: Path):
    """`prefect server start` on a free loopback port, its SQLite database in `home`; always stopped."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(PREFECT_HOME=str(home), PREFECT_SERVER_UI_API_URL=f"{url}/api",
                    PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--no-scheduler", "--no-late-runs"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(url, process, log)
    try:
        yield server
    finally:
        server.stop()


# Vega, Vega-Lite and vega-embed as one classic script, from the vl-convert-python wheel, so that
# the plots render offline; dvc-render writes Vega-Lite v5 specs, so the newest 5.x. Bundling takes
# seconds of CPU: a separate process, started with the server.
VEGA_BUNDLE = r"""
import sys, vl_convert
versions = [v for v in vl_convert.get_vegalite_versions() if v.startswith("5.")]
version = max(versions, key=lambda v: tuple(int(part) for part in v.split(".")), default=None)
bundle = vl_convert.javascript_bundle(vl_version=version)
open(sys.argv[1], "w", encoding="utf-8").write(bundle.replace("</script", "<\\/script"))
"""


@dataclass
class Bundle:
    path: Path
    process: subprocess.Popen

    def read(self, timeout: float = 120) -> str:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bundling vega with vl-convert took over {timeout:.0f}s")
        errors = self.path.with_suffix(".log").read_text(errors="replace")
        assert self.process.returncode == 0, f"bundling vega with vl-convert failed:\n{errors[-3000:]}"
        return self.path.read_text(encoding="utf-8")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_vega_bundle(path: Path) -> Bundle:
    with path.with_suffix(".log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-c", VEGA_BUNDLE, str(path)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    return Bundle(path, process)


@dataclass
class UiRun:
    server: Server
    workspace: Path
    flow_run: dict
    task_runs: list
    vega: Bundle
    terminal: str            # what `python -m flows.pipeline` printed (stdout, then stderr)


def wait_for_task_runs(server: Server, flow_run_id: str, timeout: float = 60) -> list:
    """The flow run's task runs once every stage has one in a final state (the server records
    task run states from events, a moment after the client sends them)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = server.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        if len(runs) >= len(STAGE_ORDER) and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs):
            return runs
        if time.monotonic() > deadline:
            return runs  # the test says what is missing
        time.sleep(0.5)


@pytest.fixture(scope="session")  # not module: xdist may interleave other modules, which would rebuild it
def ui_run(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("ui")
    vega = start_vega_bundle(root / "vega-bundle.js")
    try:
        with prefect_server(root / "server-home") as server:
            # the server takes half a minute to migrate its database: build the model meanwhile
            workspace = make_workspace(root / "ws", request.getfixturevalue("tiny_bert"))
            quick_params(workspace)
            server.wait_healthy()
            env = clean_env(PREFECT_API_URL=server.api_url, PREFECT_HOME=str(root / "client-home"))
            try:
                flow = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=workspace, env=env,
                                      stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired as exc:
                output = (exc.stdout or b"") + (exc.stderr or b"")
                output = output.decode(errors="replace") if isinstance(output, bytes) else output
                pytest.fail(f"python -m flows.pipeline did not finish in {exc.timeout}s:\n{output[-3000:]}")
            assert flow.returncode == 0, f"python -m flows.pipeline failed ({flow.returncode}):\n" \
                                         f"{flow.stdout[-3000:]}\n{flow.stderr[-3000:]}"
            runs = server.post("/flow_runs/filter", {"flows": {"name": {"any_": ["pipeline"]}}})
            assert len(runs) == 1, f"expected the one flow run of this test on a fresh server, got {runs}"
            task_runs = wait_for_task_runs(server, runs[0]["id"])
            yield UiRun(server, workspace, runs[0], task_runs, vega, flow.stdout + flow.stderr)
    finally:
        vega.stop()


@pytest.fixture(scope="session")  # not module: xdist may interleave other modules, which would rebuild it
def browser(tmp_path_factory):
    """Headless Debian Chromium through Selenium, with the driver path given (Selenium Manager never
    runs, so nothing is downloaded)."""
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not Path(path).is_file():
            pytest.fail(f"{what} not found at {path}: the browser test needs Debian's browser, "
                        f"`apt-get install chromium chromium-driver` (.ci/run installs it)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"{exc}: the browser test needs selenium, pip install -e '.[test]'", pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> str:
    with contextlib.suppress(Exception):
        return "\n".join(e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE")[-3000:]
    return ""


def wait_until(driver, condition, what: str, reload: bool = False):
    """Wait for `condition`; with `reload`, reload the page once half way, as a user would when a
    list stays empty (a tab's API call that the page made while the machine was loaded)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    if reload:
        try:
            return WebDriverWait(driver, WAIT / 2, poll_frequency=0.25).until(condition)
        except TimeoutException:
            # the reload itself can time out while the machine is starved (CI: the renderer gave no
            # answer for 60 s while the other worker ran DAGs): the wait below still gets its time
            with contextlib.suppress(TimeoutException):
                driver.refresh()
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.25).until(condition)
    except TimeoutException:
        waited = WAIT * 1.5 if reload else WAIT
        pytest.fail(f"the browser did not show {what} within {waited:g}s at {driver.current_url}"
                    f"{' (reloaded once)' if reload else ''}\n"
                    f"console errors:\n{console_errors(driver)}\npage text:\n{text_of(driver)[:2000]}")


def text_of(driver, css: str = "body") -> str:
    """The rendered text of the elements `css` selects (innerText: one call, fast on a big page)."""
    with contextlib.suppress(Exception):
        return driver.execute_script("return Array.from(document.querySelectorAll(arguments[0]))"
                                     ".map(e => e.innerText).join('\\n')", css)
    return ""


def screenshot(driver, name: str) -> Path:
    """The whole page: the window is made as tall as its longest scrolling box, then shot."""
    extra = driver.execute_script("""
        let extra = document.documentElement.scrollHeight - window.innerHeight;
        for (const el of document.querySelectorAll('*')) {
            if (/(auto|scroll)/.test(getComputedStyle(el).overflowY))
                extra = Math.max(extra, el.scrollHeight - el.clientHeight);
        }
        return extra;""")
    if extra > 0:
        driver.set_window_size(WIDTH, min(HEIGHT + extra + 40, 8000))
        time.sleep(1)  # relayout
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    driver.set_window_size(WIDTH, HEIGHT)
    return path


def test_flow_run_tasks_and_artifacts_in_the_api(ui_run):
    server, flow_run = ui_run.server, ui_run.flow_run
    assert flow_run["state_type"] == "COMPLETED", flow_run["state"]
    # named from the data and settings, tagged with the task, dataset, data version and model
    name = re.fullmatch(r"ner-data-([0-9a-f]{8})-params-[0-9a-f]{8}", flow_run["name"])
    assert name, flow_run["name"]
    checkpoint = Path(yaml.safe_load((ui_run.workspace / "params.yaml").read_text())["pretrain"]["checkpoint"])
    assert set(flow_run["tags"]) == {"task:ner", "dataset:raw", f"data:{name.group(1)}", f"model:{checkpoint.name}"}
    states = {run["name"]: (run["state_type"], run["state_name"]) for run in ui_run.task_runs}
    assert sorted(states) == sorted(STAGE_ORDER), states
    for stage, (state_type, state_name) in states.items():
        assert state_type == "COMPLETED" and state_name in FINAL_STATES, (stage, state_type, state_name)
    assert all(run["flow_run_id"] == flow_run["id"] for run in ui_run.task_runs)

    artifacts = server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})
    by_key = {artifact["key"]: artifact for artifact in artifacts}
    assert set(ARTIFACTS) <= set(by_key), sorted(by_key)
    assert all(by_key[key]["type"] == "markdown" for key in ARTIFACTS)
    assert by_key["evaluate-metrics"]["data"].startswith("# Evaluation")
    assert "Promoted" in by_key["evaluate-metrics"]["data"]
    assert "| train |" in by_key["data-validation"]["data"] and "## finetune" in by_key["training-curves"]["data"]
    # training stages show a progress bar while they train, left at 100% when done
    progress = {a["key"]: a for a in artifacts if a["type"] == "progress"}
    assert {"finetune-progress", "prune-progress", "distill-progress"} <= set(progress), sorted(progress)
    assert all(float(a["data"]) == 100.0 for a in progress.values()), progress


# A console log line as Prefect prints it: "13:06:22.768 | INFO    | tasks.ingest - message"
CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (\w+)\s*\| ([\w.]+) - (.*)$")
PROJECT = ("tinynlp", "tasks", "flows")
# what libraries print when left at their defaults: torch/absl-style warnings, DVC's lock-file
# chatter, Python warnings, progress bars
NOISE = re.compile(r"^[IWE]\d{4} \d\d:|lock file 'dvc.lock'|\w+Warning:|\d+%\|")


def flow_run_logs(server: Server, flow_run_id: str) -> list[dict]:
    logs, offset = [], 0
    while page := server.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                               "limit": 200, "offset": offset, "sort": "TIMESTAMP_ASC"}):
        logs += page
        offset += len(page)
    return logs


def test_the_run_graph_the_ui_draws_is_the_dag_of_the_stage_table(ui_run):
    """The UI draws a flow run's graph from /flow_runs/{id}/graph-v2: its edges must be the stage
    table's (ingest -> augment, pretrain -> finetune -> prune, distill -> quantize -> evaluate),
    not every task hanging off ingest."""
    from tasks.stages import upstream
    from tinynlp.config import load_params

    graph = ui_run.server.get(f"/flow_runs/{ui_run.flow_run['id']}/graph-v2")
    nodes = [node for _, node in graph["nodes"]]
    names = {node["id"]: node["label"] for node in nodes}
    # a parent edge appears once per reference to it in the task's inputs: the set is what is drawn
    drawn = {node["label"]: sorted({names[edge["id"]] for edge in node["parents"]}) for node in nodes}
    params = load_params(ui_run.workspace / "params.yaml", check_files=False)  # its paths are the workspace's
    expected = {stage: sorted(after) for stage, after in upstream(params).items()}
    assert drawn == expected, f"the UI graph's edges {drawn} are not the stage table's {expected}"
    assert drawn["finetune"] == ["augment", "pretrain"] and drawn["quantize"] == ["distill", "prune"], drawn


def test_flow_run_logs_are_the_terminal_lines_once_each_without_library_noise(ui_run):
    """The project's log lines reach the run's logs in the UI, the same lines as the terminal
    shows, each as often (nothing doubled, nothing lost); no library prints noise at the default
    level (Prefect's log_prints used to catch the bytecode listing dill prints to a captured stdout)."""
    from collections import Counter

    logs = flow_run_logs(ui_run.server, ui_run.flow_run["id"])
    names = {log["name"] for log in logs}
    assert {"tinynlp.training", "tasks.finetune", "tasks.evaluate"} <= names, sorted(names)
    ui = Counter((log["name"], log["message"].splitlines()[0]) for log in logs
                 if log["name"].startswith(PROJECT) and log["message"].strip())
    console = [m.groups() for m in map(CONSOLE_LINE.match, ui_run.terminal.splitlines()) if m]
    terminal = Counter((name, message) for _, name, message in console if name.startswith(PROJECT))
    assert sum(terminal.values()) > 20, ui_run.terminal[-2000:]
    assert terminal == ui, (f"only in the terminal: {list((terminal - ui).items())[:5]}; "
                            f"only in the UI: {list((ui - terminal).items())[:5]}")
    printed = [line for line in ui_run.terminal.splitlines() if NOISE.search(line)]
    library_warnings = [(level, name, message[:100]) for level, name, message in console
                        if level in ("WARNING", "ERROR") and not name.startswith(PROJECT)]
    noise = [log["message"] for log in logs if re.search(r"\b(LOAD_GLOBAL|RETURN_VALUE|RESUME)\b", log["message"])]
    assert not printed and not library_warnings and not noise, (printed[:5], library_warnings[:5], noise[:5])


def test_flow_run_page_shows_the_tasks_and_artifacts(ui_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    flow_run = ui_run.flow_run
    browser.get(f"{ui_run.server.url}/runs/flow-run/{flow_run['id']}")
    wait_until(browser, lambda d: flow_run["name"] in text_of(d, ".page-heading__crumbs"),
               f"the flow run name {flow_run['name']!r} in the page heading")
    wait_until(browser, lambda d: all(tag in text_of(d, ".page-heading") for tag in flow_run["tags"]),
               f"the tags {flow_run['tags']} in the page heading")
    # a DOM click: Selenium's own click waits on navigations the client-side router never makes
    tab = wait_until(browser, EC.element_to_be_clickable((By.ID, "task-runs")), "the Task Runs tab")
    browser.execute_script("arguments[0].click()", tab)
    listed_js = """return Array.from(document.querySelectorAll('.task-run-list-item')).map(item => {
        const link = item.querySelector('a[href*="/runs/task-run/"]');
        const badge = item.querySelector('.state-badge');
        return [link ? link.textContent.trim() : '', link ? link.getAttribute('href').split('/').pop() : '',
                badge ? badge.textContent.trim() : ''];
    });"""
    listed = wait_until(browser, lambda d: (rows := d.execute_script(listed_js)) and len(rows) >= len(STAGE_ORDER)
                        and all(all(row) for row in rows) and rows, "a row for every task run", reload=True)
    expected = {run["name"]: (run["id"], run["state_name"]) for run in ui_run.task_runs}
    assert {name: (run_id, state) for name, run_id, state in listed} == expected, listed
    # the flow run graph is drawn (a WebGL canvas; software rendering with --disable-gpu)
    assert browser.find_elements(By.CSS_SELECTOR, "canvas"), "no flow run graph canvas"
    page = text_of(browser)
    assert f"{len(STAGE_ORDER)} Task runs" in page, page[:2000]
    screenshot(browser, "flow-run.png")

    browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "artifacts"))
    wait_until(browser, lambda d: all(key in text_of(d, ".p-tabs__content") for key in ARTIFACTS),
               f"the artifacts {ARTIFACTS} on the Artifacts tab", reload=True)
    screenshot(browser, "flow-run-artifacts.png")


def declared_plots(workspace: Path) -> dict[str, str]:
    """{plot id: title} of the top-level `plots:` in dvc.yaml that Vega draws (not the pictures)."""
    plots = yaml.safe_load((workspace / "dvc.yaml").read_text())["plots"]
    return {name: spec["title"] for entry in plots if isinstance(entry, dict) for name, spec in entry.items()}


def declared_images(workspace: Path) -> dict[str, str]:
    """{div id DVC gives it: path} of the pictures declared in `plots:` (a bare path each)."""
    plots = yaml.safe_load((workspace / "dvc.yaml").read_text())["plots"]
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    paths = [entry.replace("${paths.reports}", params["paths"]["reports"]) for entry in plots if isinstance(entry, str)]
    return {re.sub(r"[^A-Za-z0-9]", "_", path): path for path in paths}


def render_dvc_plots(workspace: Path, command: list[str], bundle: str, browser) -> dict:
    """Run `dvc plots show|diff ...` with a template that inlines Vega (DVC's own page loads it
    from a CDN), open the page in the browser and return {plot id: {marks, texts}} once every
    embedded plot has drawn (or None for a declared plot without a div)."""
    recorder = """
    window.__plots = {rendered: [], errors: []};
    (function () {
      const embed = window.vegaEmbed;
      window.vegaEmbed = function (el, spec, opts) {
        return embed(el, spec, Object.assign({renderer: "svg", actions: false}, opts || {}))
          .then(function (result) { window.__plots.rendered.push(el); return result; })
          .catch(function (error) { window.__plots.errors.push(el + ": " + error); });
      };
    })();"""
    template = workspace.parent / f"plots-template-{workspace.name}.html"
    template.write_text("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>DVC Plot</title>\n"
                        f"<script>{bundle}</script>\n<script>{recorder}</script>\n</head>\n<body>\n{{plot_divs}}\n"
                        "</body>\n</html>\n", encoding="utf-8")
    try:
        shown = subprocess.run([sys.executable, "-m", "dvc", "plots", *command, "--html-template", str(template)],
                               cwd=workspace, env=clean_env(), capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dvc plots {' '.join(command)} did not finish in 120s")
    assert shown.returncode == 0, f"dvc plots {' '.join(command)} failed:\n{shown.stdout}\n{shown.stderr}"
    page = workspace / "dvc_plots" / "index.html"
    assert "<script src=" not in page.read_text(encoding="utf-8"), "the plots page still loads a script from outside"

    plots, images = declared_plots(workspace), declared_images(workspace)
    browser.get(page.as_uri())
    ids = browser.execute_script("return Array.from(document.querySelectorAll('body > div[id]')).map(d => d.id)")
    assert sorted(ids) == sorted([*plots, *images]), f"the page draws {sorted(ids)}, dvc.yaml declares {sorted(plots)}"
    loaded = browser.execute_script("""return Array.from(arguments[0]).map(id =>
        Array.from(document.querySelectorAll('#' + id + ' img')).every(i => i.complete && i.naturalWidth > 0))""",
                                    list(images))
    assert images and all(loaded), f"pictures {list(images)} did not load: {loaded}"
    divs = len(plots)
    status = wait_until(browser, lambda d: (s := d.execute_script("return window.__plots")) and
                        len(s["rendered"]) + len(s["errors"]) >= divs and s, f"{divs} embedded plots")
    assert not status["errors"], status["errors"]
    return browser.execute_script("""return Object.fromEntries(Array.from(arguments[0]).map(id => {
        const div = document.getElementById(id);
        if (!div) return [id, null];
        const marks = Array.from(div.querySelectorAll('svg g.role-mark')).reduce((n, g) => n + g.children.length, 0);
        const texts = Array.from(div.querySelectorAll('svg text')).map(t => t.textContent);
        return [id, {marks: marks, texts: texts}];
    }));""", list(plots))


def test_dvc_plots_render_offline_in_the_browser(ui_run, browser):
    workspace = ui_run.workspace
    drawn = render_dvc_plots(workspace, ["show"], ui_run.vega.read(), browser)
    plots = declared_plots(workspace)
    assert NO_DATA <= set(plots), sorted(plots)
    for name, title in plots.items():
        assert drawn[name] is not None, f"no <div id={name}> on the plots page"
        if name in NO_DATA:
            assert drawn[name]["marks"] == 0, f"plot {name} has data now: take it out of NO_DATA"
            continue
        assert title in drawn[name]["texts"], (name, title, drawn[name]["texts"])
        assert drawn[name]["marks"] > 0, f"plot {name} drew no marks"
    screenshot(browser, "plots.png")


def test_dvc_plots_diff_draws_both_revisions_in_the_browser(ui_run, browser, tmp_path):
    """The run is committed; finetune is re-run with one more epoch; `dvc plots diff HEAD` draws
    the committed curve and the workspace's side by side, each named in the legend."""
    workspace = tmp_path / "ws-diff"
    shutil.copytree(ui_run.workspace, workspace, symlinks=True)
    for command in (["git", "add", "-A"], ["git", "commit", "-qm", "first run"]):
        subprocess.run(command, cwd=workspace, check=True, capture_output=True)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["finetune"]["epochs"] += 1
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", "finetune"], cwd=workspace,
                           env=clean_env(), capture_output=True, text=True, timeout=300)
    assert repro.returncode == 0, f"dvc repro -s finetune failed:\n{repro.stdout[-2000:]}\n{repro.stderr[-2000:]}"
    drawn = render_dvc_plots(workspace, ["diff", "HEAD"], ui_run.vega.read(), browser)
    for name in ("dev_metric_per_epoch", "loss_per_epoch"):
        legend = " ".join(drawn[name]["texts"])
        assert "HEAD" in legend and "workspace" in legend, (name, drawn[name]["texts"])
        assert drawn[name]["marks"] > 0, f"plot {name} drew no marks"
    screenshot(browser, "plots-diff.png")
