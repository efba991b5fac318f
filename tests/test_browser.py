"""What only a browser shows: `streamlit run app.py` in Debian's Chromium at 1280 x 720 (the
projector), every page loads without an exception, Next / the Right key / Play move the step, the
plotly charts render, state survives switching pages. Screenshots go to the test's tmp_path and
to /tmp/shots/ for a person to look at. Run with `-m browser`."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path("/tmp/shots")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out = proc.stdout.read().decode(errors="replace")
            pytest.fail(f"streamlit did not become healthy within 60 s:\n{out[-3000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    pg = context.new_page()
    yield pg
    context.close()


def _idle(pg, timeout=120_000):
    """Wait for the script run to end: Streamlit shows its status widget while running."""
    time.sleep(0.5)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    time.sleep(0.5)


def _open(pg, url):
    pg.goto(url)
    pg.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=60_000)
    pg.wait_for_selector("[id$='-step-label']", timeout=120_000)
    _idle(pg)


def _label(pg) -> str:
    return pg.locator("[id$='-step-label']").first.inner_text()


def _step(pg) -> int:
    return int(re.search(r"Step (\d+) of", _label(pg)).group(1))


def _wait_step(pg, k: int, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if _step(pg) == k:
                return
        except Exception:  # the label is being replaced
            pass
        time.sleep(0.2)
    raise AssertionError(f"step label stayed at {_label(pg)!r}, want step {k}")


def _no_errors(pg):
    exc = pg.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"exception on the page: {exc.first.inner_text()}"
    err = pg.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"error on the page: {err.first.inner_text()}"


def _shot(pg, tmp_path, name, scroll=None):
    if scroll is not None:
        pg.evaluate(f"document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, {scroll})")
        time.sleep(0.8)
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path))
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def _scroll_height(pg) -> int:
    return pg.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")


def _shots_down_the_page(pg, tmp_path, name, most):
    """Screenshots of up to `most` screens below the first, 620 px apart: NAME_scroll1.png, ..."""
    height, y = _scroll_height(pg), 0
    for k in range(1, most + 1):
        y += 620
        if y >= height - 200:
            break
        _shot(pg, tmp_path, f"{name}_scroll{k}", scroll=y)


def test_attention_page(server, page, tmp_path):
    _open(page, server)
    _no_errors(page)
    assert page.locator(".js-plotly-plot").count() >= 7  # grid, s, p, m/l, alpha, acc, memory
    assert "Step 1 of " in _label(page)
    n = int(re.search(r"Step 1 of (\d+)", _label(page)).group(1))
    assert n >= 4
    assert "Triton interpreter" in page.locator('[data-testid="stSidebar"]').inner_text() or "compiled" in \
        page.locator('[data-testid="stSidebar"]').inner_text()
    _shot(page, tmp_path, "attention_step1")
    page.locator(".st-key-attn-next button").click()
    _wait_step(page, 2)
    _idle(page)
    _no_errors(page)
    _shot(page, tmp_path, "attention_step2")
    page.locator("#attn-step-label").click()  # focus the page, not a widget
    page.keyboard.press("ArrowRight")  # the Next button's shortcut
    _wait_step(page, 3)
    page.keyboard.press("ArrowLeft")
    _wait_step(page, 2)
    page.locator(".st-key-attn-step_slider input[type=range]").focus()
    page.keyboard.press("End")  # the step slider: to the last step
    _wait_step(page, n)
    _idle(page)
    _no_errors(page)
    assert page.get_by_text("After the last step: out = acc").count() == 1
    _shot(page, tmp_path, "attention_step4")
    _shots_down_the_page(page, tmp_path, "attention_step4", 5)


def test_play_runs_to_the_end_and_stops(server, page):
    _open(page, server)
    n = int(re.search(r"Step 1 of (\d+)", _label(page)).group(1))
    page.locator(".st-key-attn-play button").click()
    _wait_step(page, 2, timeout=20)
    _wait_step(page, n, timeout=10 + 3 * n)
    _idle(page)
    time.sleep(2.5)  # a stopped player stays put
    assert _step(page) == n
    assert "Play" in page.locator(".st-key-attn-play button").inner_text()
    page.locator(".st-key-attn-play button").click()  # again: from the start
    _wait_step(page, 2, timeout=20)
    page.locator(".st-key-attn-play button").click()  # pause
    _idle(page)
    k = _step(page)
    time.sleep(2.5)
    assert _step(page) == k, "Pause must stop the steps"
    _no_errors(page)


def test_causal_config(server, page, tmp_path):
    _open(page, server)
    page.locator(".st-key-attn-causal label").click()  # the toggle
    _idle(page)
    _wait_step(page, 1)
    _no_errors(page)
    page.locator(".st-key-attn-next button").click()
    _wait_step(page, 2)
    _idle(page)
    _shot(page, tmp_path, "attention_causal_step2")


def _seq_len(pg) -> int:
    return int(pg.locator(".st-key-attn-seq_len input[type=range]").get_attribute("value"))


def test_softmax_page_and_state_across_pages(server, page, tmp_path):
    _open(page, server)
    page.locator(".st-key-attn-seq_len input[type=range]").focus()
    page.keyboard.press("ArrowLeft")  # 256 -> 255: a new config, captured once
    _idle(page)
    assert _seq_len(page) == 255
    page.locator(".st-key-attn-next button").click()
    _wait_step(page, 2)
    _idle(page)
    page.get_by_role("link", name="Softmax: naive, safe, online").click()
    page.wait_for_selector("#sm-step-label", timeout=120_000)
    _idle(page)
    _no_errors(page)
    assert "Step 1 of 12" in _label(page)
    assert page.locator(".js-plotly-plot").count() >= 6
    _shot(page, tmp_path, "softmax_step1")
    for k in (2, 3, 4, 5, 6):
        page.locator(".st-key-sm-next button").click()
        _wait_step(page, k)
    _idle(page)
    _no_errors(page)
    _shot(page, tmp_path, "softmax_step6")
    _shots_down_the_page(page, tmp_path, "softmax_step6", 4)
    page.get_by_role("link", name="FlashAttention tiles").click()
    page.wait_for_selector("#attn-step-label", timeout=120_000)
    _idle(page)
    assert _step(page) == 2, "the attention page lost its step when switching pages"
    assert _seq_len(page) == 255, "the sequence length slider lost its value when switching pages"
    _no_errors(page)


def test_backward_page(server, page, tmp_path):
    _open(page, f"{server}/backward")
    _no_errors(page)
    assert page.locator("#bwd-step-label").count() == 1
    assert page.locator(".js-plotly-plot").count() >= 8  # row, grid, P, dP, dS, D, accumulators, memory
    n = int(re.search(r"Step 1 of (\d+)", _label(page)).group(1))
    assert n >= 3
    _shot(page, tmp_path, "backward_step1")
    _shots_down_the_page(page, tmp_path, "backward_step1", 4)
    page.locator(".st-key-bwd-next button").click()
    _wait_step(page, 2)
    page.locator("#bwd-step-label").click()  # focus the page, not a widget
    page.keyboard.press("ArrowRight")  # the Next button's shortcut
    _wait_step(page, 3)
    _idle(page)
    _no_errors(page)
    page.locator(".st-key-bwd-causal label").click()  # causal: a new trace, back to step 1
    _idle(page)
    _wait_step(page, 1)
    page.locator(".st-key-bwd-next button").click()
    _wait_step(page, 2)
    _idle(page)
    _no_errors(page)
    _shot(page, tmp_path, "backward_causal_step2")
    _shot(page, tmp_path, "backward_causal_step2_scroll1", scroll=620)
