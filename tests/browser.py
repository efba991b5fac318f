"""What the browser tests share: waiting for Streamlit, reading the step label, screenshots.

Screenshots go to the test's tmp_path and to /tmp/shots/ for a person to look at.
"""
import re
import shutil
import time
from pathlib import Path

SHOTS = Path("/tmp/shots")


def idle(pg, timeout=120_000):
    """Wait for the script run to end: Streamlit shows its status widget while running."""
    time.sleep(0.5)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    time.sleep(0.5)


def open_page(pg, url):
    pg.goto(url)
    pg.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=60_000)
    pg.wait_for_selector("[id$='-step-label']", timeout=120_000)
    idle(pg)


def label(pg) -> str:
    return pg.locator("[id$='-step-label']").first.inner_text()


def step(pg) -> int:
    return int(re.search(r"Step (\d+) of", label(pg)).group(1))


def wait_step(pg, k: int, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if step(pg) == k:
                return
        except Exception:  # the label is being replaced
            pass
        time.sleep(0.2)
    raise AssertionError(f"step label stayed at {label(pg)!r}, want step {k}")


def no_errors(pg):
    exc = pg.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"exception on the page: {exc.first.inner_text()}"
    err = pg.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"error on the page: {err.first.inner_text()}"


def shot(pg, tmp_path, name, scroll=None):
    if scroll is not None:
        pg.evaluate(f"document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, {scroll})")
        time.sleep(0.8)
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path))
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def scroll_height(pg) -> int:
    return pg.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")


def shots_down_the_page(pg, tmp_path, name, most):
    """Screenshots of up to `most` screens below the first, 620 px apart: NAME_scroll1.png, ..."""
    height, y = scroll_height(pg), 0
    for k in range(1, most + 1):
        y += 620
        if y >= height - 200:
            break
        shot(pg, tmp_path, f"{name}_scroll{k}", scroll=y)
