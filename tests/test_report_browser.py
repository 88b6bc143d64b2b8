"""The published asv report, opened in a real headless Chromium over HTTP on 127.0.0.1.

Uses the report in $FITBENCH_ASV_HTML or .asv/html (what `.ci/run` publishes); without one, it runs a small
asv selection of this checkout's HEAD on every backend of the matrix (asv's virtualenv environments, quick)
and publishes it into a temporary folder.

asv's index.html loads jQuery, flot, bootstrap and friends from CDNs, and this machine has no internet.
The test server maps those URLs to the same libraries at the same versions installed from npm
(tests/report_assets, `npm ci` in .ci/run); the report files on disk are served unchanged otherwise.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = Path(__file__).resolve().parent / "report_assets" / "node_modules"
# CDN URL in asv's index.html -> file of the same library version from npm
CDN_TO_NPM = {
    r"https://code\.jquery\.com/jquery-3\.3\.1\.min\.js": "jquery/dist/jquery.min.js",
    r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/0\.8\.3/jquery\.flot\.min\.js": "flot/jquery.flot.js",
    r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/0\.8\.3/jquery\.flot\.(\w+)\.min\.js": r"flot/jquery.flot.\1.js",
    r"https://cdn\.jsdelivr\.net/npm/flot-orderbars@1\.0\.0/(js/[\w.]+)": r"flot-orderbars/\1",
    r"https://cdnjs\.cloudflare\.com/ajax/libs/stupidtable/[\d.]+/stupidtable\.min\.js":
        "stupid-table-plugin/stupidtable.min.js",
    r"https://cdnjs\.cloudflare\.com/ajax/libs/blueimp-md5/2\.19\.0/(js/md5\.min\.js)": r"blueimp-md5/\1",
    r"https://cdn\.jsdelivr\.net/npm/bootstrap@3\.1\.1/(dist/[\w/.]+)": r"bootstrap/\1",
}
ARTIFACTS = ROOT / "artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FIT_GRAPH = "bench_fit.FitLoop.time_fit_10_steps"
THROUGHPUT_GRAPH = "bench_fit.FitLoop.track_samples_per_second"  # .ci/run runs it on every backend
BACKENDS = ["tensorflow", "jax", "torch"]  # asv.conf.json's KERAS_BACKEND axis

pytestmark = pytest.mark.browser


def _publish_small_report(tmp: Path) -> Path:
    """asv run (quick) of HEAD in the matrix's virtualenv, every backend: one fit cell of the time and
    throughput benchmarks, and the determinism tracks on tensorflow; then publish."""
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), results_dir=str(tmp / "results"),
                html_dir=str(tmp / "html"), env_dir=str(tmp / "env"))
    (tmp / "asv.conf.json").write_text(json.dumps(conf))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FITBENCH_PROFILE": "quick"}
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes"], cwd=tmp, env=env, check=True, capture_output=True)
    from fitbench.regress.asvdata import backend_environments

    envs = backend_environments(str(tmp), None, every=True)
    one_cell = r"FitLoop\.(time_fit_10_steps|track_samples_per_second)\('functional', True, 'cpu', 32\)"
    for selection, backends in ((one_cell, [*BACKENDS, "tf-keras"]), ("track_seq", ["tensorflow"])):
        environments = [arg for b in backends for arg in ("-E", envs[b])]
        run = subprocess.run([*asv, "run", "--quick", *environments, "--bench", selection, "HEAD^!"],
                             cwd=tmp, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    subprocess.run([*asv, "publish"], cwd=tmp, env=env, check=True, capture_output=True)
    return tmp / "html"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("FITBENCH_ASV_HTML")
    for candidate in ([Path(given)] if given else []) + [ROOT / ".asv" / "html"]:
        if (candidate / "index.json").exists():
            return candidate
    if given:
        pytest.fail(f"FITBENCH_ASV_HTML={given} holds no published asv report")
    return _publish_small_report(tmp_path_factory.mktemp("asv"))


@pytest.fixture(scope="module")
def server_url(report_dir: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(report_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def offline_html(html: str) -> str:
    """asv's page with its CDN libraries pointed at /_vendor/ (npm copies); SRI hashes dropped with them."""
    html = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", html)
    for pattern, local in CDN_TO_NPM.items():
        html = re.sub(pattern, lambda m, local=local: "_vendor/" + m.expand(local), html)
    return html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def translate_path(self, path: str) -> str:
        if path.startswith("/_vendor/"):
            return str(VENDOR / path[len("/_vendor/"):].split("?")[0])
        return super().translate_path(path)

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/", "/index.html"):
            body = offline_html((Path(self.directory) / "index.html").read_text()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def test_every_cdn_library_of_the_report_has_a_local_copy(report_dir):
    html = offline_html((report_dir / "index.html").read_text())
    assert "https://" not in re.sub(r"<a [^>]*>", "", html.split("</head>")[0])
    for src in re.findall(r'(?:src|href)="_vendor/([^"]+)"', html):
        assert (VENDOR / src).is_file(), f"{src}: run `npm ci --prefix tests/report_assets`"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        message = "Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver: object, condition: object, timeout: float = 60) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_index_lists_the_fitbench_benchmarks(browser, server_url):
    from selenium.webdriver.common.by import By

    browser.get(server_url + "index.html")
    _wait(browser, lambda d: "FitLoop" in d.find_element(By.TAG_NAME, "body").text)
    text = browser.find_element(By.TAG_NAME, "body").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "asv-index.png"))
    assert "fitbench" in browser.title or "fitbench" in text
    assert "time_fit_10_steps" in text
    assert "Determinism" in text


def open_graph(browser: object, server_url: str, graph: str) -> str:
    """Open a benchmark's graph page, wait until its plot is drawn, and return the parameter panel's text."""
    from selenium.webdriver.common.by import By

    browser.get(server_url + "index.html#" + graph)
    canvas = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#main-graph canvas.flot-base"))[0]
    # Something was drawn: the plot canvas has opaque pixels (an empty canvas is all transparent).
    drawn = _wait(browser, lambda d: d.execute_script(
        "const c = arguments[0]; const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < px.length; i += 4) { if (px[i] > 0) n++; } return n || false;", canvas))
    assert drawn > 100
    assert not browser.find_element(By.ID, "error").is_displayed()
    return browser.find_element(By.ID, "graphdisplay-navigation").text


def test_fit_loop_graph_page_renders_a_plot(browser, server_url, report_dir):
    panel = open_graph(browser, server_url, FIT_GRAPH)
    # The parameter panel lists the fit loop's axes (asv shows those with more than one value; `device` has
    # one on a machine without a GPU).
    index = json.loads((report_dir / "index.json").read_text())
    names, values = index["benchmarks"][FIT_GRAPH]["param_names"], index["benchmarks"][FIT_GRAPH]["params"]
    shown = [n for n, v in zip(names, values) if len(v) > 1]
    assert {"api", "jit", "batch_size"} <= set(shown)
    for name in shown:
        assert name in panel
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "asv-fit-loop-graph.png"))


def test_the_report_has_the_backend_axis_with_every_backend(report_dir):
    index = json.loads((report_dir / "index.json").read_text())
    assert set(BACKENDS) <= set(index["params"]["env-KERAS_BACKEND"])
    # each backend has its own results for the throughput graph (one graph file per environment)
    graphs = [p for p in (report_dir / "graphs").rglob(THROUGHPUT_GRAPH + ".json")]
    backends_with_points = {b for p in graphs for b in BACKENDS if f"env-KERAS_BACKEND-{b}" in p.parts
                            and json.loads(p.read_text())}
    assert backends_with_points == set(BACKENDS), graphs
    # the Keras 2 row (tf-keras on TensorFlow) is one more environment, with its own throughput points
    assert "1" in index["params"]["env-TF_USE_LEGACY_KERAS"]
    assert any("env-TF_USE_LEGACY_KERAS-1" in p.parts and json.loads(p.read_text()) for p in graphs), graphs


def test_throughput_graph_page_shows_the_backends_side_by_side(browser, server_url):
    from selenium.webdriver.common.by import By

    panel = open_graph(browser, server_url, THROUGHPUT_GRAPH)
    assert "KERAS_BACKEND" in panel
    for backend in BACKENDS:
        assert backend in panel
    # one plotted series per backend: flot's legend names each series by its parameters
    legend = browser.find_element(By.CSS_SELECTOR, "#main-graph .legend").text
    for backend in BACKENDS:
        assert f"env-KERAS_BACKEND-{backend}" in legend, legend
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "asv-throughput-by-backend.png"))
