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


# ---------------------------------------------------------------- the new UI: stepper, URL, layout


def open_plain(pg, url, text, timeout=120_000):
    """Open a page that has no step label (start, benchmarks): wait for `text` in the main area."""
    pg.goto(url)
    pg.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=60_000)
    pg.locator('[data-testid="stMain"]').get_by_text(text).first.wait_for(timeout=timeout)
    idle(pg)


def wait_charts(pg, n: int, timeout=60_000):
    """Wait until at least n plotly charts have drawn (plotly.js is loaded on demand)."""
    pg.wait_for_function("n => [...document.querySelectorAll('.js-plotly-plot')]"
                         ".filter(e => e.querySelector('.main-svg')).length >= n", arg=n, timeout=timeout)


def n_steps(pg) -> int:
    return int(re.search(r"Step \d+ of (\d+)", label(pg)).group(1))


def focus_page(pg):
    """Click the step label: the keys then go to the document, not to a widget."""
    pg.locator("[id$='-step-label']").first.click()


def stepper(pg, action: str):
    """The stepper's button: prev, toggle (Play / Pause) or next."""
    return pg.locator(f".fa-stepper button[data-a={action}]")


def settled_step(pg, quiet=2.0, timeout=40.0) -> int:
    """The step once the label has not changed for `quiet` seconds and no script is running."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        try:
            now = (label(pg), pg.locator('[data-testid="stStatusWidget"]').count())
        except Exception:  # the label is being replaced
            now = None
        if now != last:
            last, since = now, time.time()
        elif now is not None and now[1] == 0 and time.time() - since >= quiet:
            return step(pg)
        time.sleep(0.1)
    raise AssertionError(f"the step label never settled: {label(pg)!r}")


def query(pg) -> dict:
    """The page URL's query parameters, one value each."""
    from urllib.parse import parse_qs, urlsplit

    return {k: v[-1] for k, v in parse_qs(urlsplit(pg.url).query).items()}


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    import struct

    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:8]!r}"
    return struct.unpack(">II", data[16:24])


def external(urls, hosts=("127.0.0.1", "localhost")) -> list[str]:
    """The URLs that leave this machine: anything but data:, blob: and the given hosts."""
    from urllib.parse import urlsplit

    out = []
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme in ("data", "blob", "about"):
            continue
        if parts.hostname not in hosts:
            out.append(u)
    return out


def fully_inside(box, width=1280, height=720) -> bool:
    return (box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width
            and box["y"] + box["height"] <= height)
