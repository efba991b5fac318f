"""What only a browser shows: `streamlit run app.py` in Debian's Chromium at 1280 x 720 (the
projector). Every page loads without an exception and fetches nothing from outside this machine;
a URL opens the exact step; presenter view fits one screen; the stepper's keys, clicker keys and
Space move the step by exactly what was pressed; the exports play offline; visitors do not share
state.

Scenes (traces recorded on a GPU, shipped under scenes/) keep this fast on the Triton interpreter;
the live configs are small (seq_len 200, 64 x 32 blocks)."""
import json
import re
import time
from pathlib import Path

import pytest

from tests import browser as b

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((ROOT / "scenes" / "manifest.json").read_text())
SCENES = {s["name"]: s for s in MANIFEST["scenes"]}
LIVE = "seq_len=200&block_m=64&block_n=32&head_dim=32"  # 4 q-blocks x 7 kv-blocks, non-causal: 7 steps each
VIEWPORT = {"width": 1280, "height": 720}

# page -> (path, what a reader must see, step label or None, charts in normal view, charts in presenter view)
PAGES = {
    "start": ("/", "FlashAttention, tile by tile", None, 0, 0),
    "attention": ("/attention?scene=first-look", None, "Step 3 of 8", 7, 4),
    "orders": ("/orders?scene=fa1-order", None, "Step 1 of 10", 2, 2),
    "softmax": ("/softmax?scene=softmax-rescales", None, "Step 5 of 24", 5, 2),
    "backward": ("/backward?scene=backward", None, "Step 3 of 4", 8, 4),
    "benchmarks": ("/benchmarks", "Benchmarks: the kernel you step through, timed", None, 3, 1),
    "ring": ("/ring?scene=ring-zigzag", None, "Step 2 of 4", 3, 2),
}


def _open(pg, url, text, charts):
    if text is None:
        b.open_page(pg, url)
    else:
        b.open_plain(pg, url, text)
    if charts:
        b.wait_charts(pg, charts)
    b.idle(pg)


def _sidebar_visible(pg) -> bool:
    sb = pg.locator('[data-testid="stSidebar"]')
    return sb.count() > 0 and sb.first.is_visible()


def _check(problems: list, what: str, want, got):
    if want != got:
        problems.append(f"{what}: want {want!r}, got {got!r}")


# ---------------------------------------------------------------- 1 and 7: every page, both views, nothing external
@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_in_normal_and_presenter_view_with_local_requests_only(server, page, tmp_path, name):
    path, text, want_label, charts, charts_present = PAGES[name]
    requests = []
    page.on("request", lambda r: requests.append(r.url))

    _open(page, server + path, text, charts)
    b.no_errors(page)
    assert _sidebar_visible(page), "the sidebar must show outside presenter view"
    assert page.locator(".js-plotly-plot").count() >= charts
    if want_label:
        assert want_label in b.label(page)
        q = b.query(page)
        assert q.get("scene") == path.split("scene=")[1], f"the URL lost the scene: {page.url}"
        assert q.get("step") == re.search(r"Step (\d+)", want_label).group(1), page.url
        assert "present" not in q
        assert b.stepper(page, "next").count() == 1 and b.stepper(page, "toggle").inner_text() == "Play"
    if name == "start":  # every shipped scene is a chapter's link, to its own page
        links = page.locator('[data-testid="stMain"] a[href*="scene="]')
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        linked = {re.search(r"scene=([\w-]+)", h).group(1) for h in hrefs}
        assert linked <= set(SCENES), f"links to scenes that do not exist: {linked - set(SCENES)}"
        assert len(linked) >= 12, f"only {len(linked)} scenes linked: {sorted(linked)}"
        for h in hrefs:
            scene = SCENES[re.search(r"scene=([\w-]+)", h).group(1)]
            target = re.search(r"(?:^|/)(\w+)\?", h).group(1)
            assert target in (scene["page"], "orders"), f"{h}: the scene of the {scene['page']} page opens {target}"
    if name == "benchmarks":
        assert page.get_by_text("No GPU here").count() == 1  # the interpreter: recorded results, said so
    b.shot(page, tmp_path, f"{name}_normal")
    b.shots_down_the_page(page, tmp_path, f"{name}_normal", 2)

    sep = "&" if "?" in path else "?"
    _open(page, f"{server}{path}{sep}present=1", text, charts_present)
    b.no_errors(page)
    if want_label:  # the stepping pages: one projector screen, no chrome
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stSidebar\"]')"
                               " || getComputedStyle(document.querySelector('[data-testid=\"stSidebar\"]')).display"
                               " === 'none'", timeout=30_000)
        assert not _sidebar_visible(page)
        assert not page.locator('header[data-testid="stHeader"]').is_visible()
        assert want_label in b.label(page)
        assert b.query(page).get("present") == "1", page.url
        assert page.locator(".js-plotly-plot").count() >= charts_present
        assert page.get_by_role("button", name="exit (P)").count() == 1
    b.shot(page, tmp_path, f"{name}_presenter")

    leaving = b.external(requests)
    assert requests, "no requests recorded"
    assert not leaving, f"{name}: requests that leave this machine: {leaving[:10]}"


# ---------------------------------------------------------------- 2: deep links
def test_deep_link_opens_the_exact_step_and_the_url_follows(server, page):
    b.open_page(page, f"{server}/attention?{LIVE}&q_block=1&row=70&step=3")
    b.no_errors(page)
    text = b.label(page)
    assert "Step 3 of 7" in text  # 200 keys in blocks of 32: 7 kv-blocks, no mask
    assert "Q1 (rows 64–127) meets K2, V2 (keys 64–95)" in text, text
    assert page.get_by_text("Row 70", exact=False).count() >= 1  # the followed row, as a row of the sequence
    q = b.query(page)
    for k, v in {"seq_len": "200", "block_m": "64", "block_n": "32", "head_dim": "32", "q_block": "1", "row": "70",
                 "step": "3", "causal": "0"}.items():
        assert q.get(k) == v, f"URL parameter {k}: want {v}, got {q.get(k)} ({page.url})"
    # a change of step is written to the URL, and a reload opens it again
    b.stepper(page, "next").click()
    b.wait_step(page, 4)
    b.idle(page)
    deadline = time.time() + 10
    while b.query(page).get("step") != "4" and time.time() < deadline:
        time.sleep(0.2)
    assert b.query(page).get("step") == "4", page.url
    page.reload()
    page.wait_for_selector("#attn-step-label", timeout=120_000)
    b.idle(page)
    assert "Step 4 of 7" in b.label(page)

    b.open_page(page, f"{server}/attention?scene=causal&step=2")
    b.no_errors(page)
    assert "Step 2 of 5" in b.label(page)  # the causal scene: q-block 4 meets 5 kv-blocks
    assert b.query(page).get("scene") == "causal" and b.query(page).get("step") == "2", page.url

    b.open_page(page, f"{server}/attention?block_m=7")  # not a block size: a warning, the default, the page opens
    b.no_errors(page)
    warnings = page.locator('[data-testid="stAlertContentWarning"]')
    assert warnings.count() >= 1, "an invalid URL parameter must be reported"
    assert "block_m" in warnings.first.inner_text() and "'7'" in warnings.first.inner_text()
    assert re.search(r"Step 1 of \d+", b.label(page))
    assert b.query(page).get("block_m") == "64", page.url


# ---------------------------------------------------------------- 3: presenter view fits 1280 x 720
KEYED = ("attn-grid", "attn-ml", "attn-alpha", "attn-eq", "attn-acc")


def _presenter_fits(pg, what: str) -> list[str]:
    problems = []
    b.wait_charts(pg, 4)
    b.idle(pg)
    if _sidebar_visible(pg):
        problems.append(f"{what}: the sidebar is visible in presenter view")
    scrolled = pg.evaluate("[window.scrollY, document.querySelector('[data-testid=\"stMain\"]').scrollTop]")
    if scrolled != [0, 0]:
        problems.append(f"{what}: the page is scrolled: {scrolled}")
    for key in KEYED:
        loc = pg.locator(f".st-key-{key}")
        if loc.count() != 1:
            problems.append(f"{what}: {loc.count()} elements .st-key-{key}")
            continue
        box = loc.bounding_box()
        if not b.fully_inside(box):
            problems.append(f"{what}: .st-key-{key} is not inside 1280 x 720: {box}")
    # the equations must be readable whole: a projector cannot scroll sideways (4 px: KaTeX's rounding)
    cut = pg.locator(".st-key-attn-eq").evaluate(
        "el => [...el.querySelectorAll('.katex-display')].filter(e => e.scrollWidth > e.clientWidth + 4)"
        ".map(e => [e.scrollWidth, e.clientWidth])")
    if cut:
        problems.append(f"{what}: the update equations are wider than their column (scrollWidth, clientWidth): {cut}")
    return problems


def test_presenter_view_fits_one_screen(server, page, tmp_path):
    problems = []
    for scene in ("first-look", "bf16-long"):
        b.open_page(page, f"{server}/attention?scene={scene}&present=1")
        b.no_errors(page)
        problems += _presenter_fits(page, scene)
        b.shot(page, tmp_path, f"attention_presenter_{scene}")
    # the live kernel, switched with the P key from the normal view
    b.open_page(page, f"{server}/attention?{LIVE}&q_block=2&step=5")
    assert _sidebar_visible(page)
    b.focus_page(page)
    page.keyboard.press("p")
    page.wait_for_function("() => getComputedStyle(document.querySelector('[data-testid=\"stSidebar\"]')).display"
                           " === 'none'", timeout=30_000)
    b.idle(page)
    b.no_errors(page)
    assert "Step 5 of 7" in b.label(page)
    assert b.query(page).get("present") == "1", page.url
    problems += _presenter_fits(page, "live 200, 64x32")
    b.shot(page, tmp_path, "attention_presenter_live")
    assert not problems, "\n".join(problems)


def test_ring_presenter_view_fits_one_screen(server, page, tmp_path):
    """The Ring attention page at 1280 x 720 in presenter view, at its first and last step (the last
    adds lse and the check against float64): the lanes, the chunk pairs and the merge on one screen,
    the equations never wider than their column."""
    problems = []
    for scene in ("ring-zigzag", "ring-contiguous"):
        for step in (1, 4):
            b.open_page(page, f"{server}/ring?scene={scene}&step={step}&present=1")
            b.no_errors(page)
            b.wait_charts(page, 2)
            b.idle(page)
            what = f"{scene} step {step}"
            if _sidebar_visible(page):
                problems.append(f"{what}: the sidebar is visible in presenter view")
            for key in ("ring-lanes", "ring-pairs", "ring-eq"):
                box = page.locator(f".st-key-{key}").first.bounding_box()
                if box is None or not b.fully_inside(box):
                    problems.append(f"{what}: .st-key-{key} is not inside 1280 x 720: {box}")
            cut = page.locator("[data-testid='stMain'] .katex-display").evaluate_all(
                "els => els.filter(e => e.scrollWidth > e.clientWidth + 4).map(e => [e.scrollWidth, e.clientWidth])")
            if cut:
                problems.append(f"{what}: equations wider than their column (scrollWidth, clientWidth): {cut}")
            b.shot(page, tmp_path, f"ring_presenter_{scene}_{step}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- 4: keys and a clicker
def test_arrow_keys_and_clicker_move_exactly_what_was_pressed(server, page):
    b.open_page(page, f"{server}/attention?scene=bf16-long&step=1")
    assert "Step 1 of 32" in b.label(page)
    problems = []
    b.focus_page(page)
    for _ in range(5):
        page.keyboard.press("ArrowRight")
        time.sleep(0.15)
    k = b.settled_step(page)
    _check(problems, "five ArrowRight presses from step 1", 6, k)
    page.keyboard.press("ArrowLeft")
    k2 = b.settled_step(page)
    _check(problems, "one ArrowLeft", k - 1, k2)
    page.keyboard.press("PageDown")  # a presentation clicker's 'next'
    k3 = b.settled_step(page)
    _check(problems, "one PageDown", k2 + 1, k3)
    page.keyboard.press("PageUp")
    k4 = b.settled_step(page)
    _check(problems, "one PageUp", k3 - 1, k4)
    _check(problems, "the URL's step", str(k4), b.query(page).get("step"))
    b.no_errors(page)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- 5: Space plays and pauses
def test_space_plays_and_pauses(server, page):
    b.open_page(page, f"{server}/attention?scene=bf16-long&step=1")
    b.focus_page(page)
    page.keyboard.press(" ")
    b.wait_step(page, 2, timeout=20)  # it moves by itself, one step a second
    assert b.stepper(page, "toggle").inner_text() == "Pause"
    b.wait_step(page, 5, timeout=20)  # and keeps going
    assert b.stepper(page, "toggle").inner_text() == "Pause", "play stopped by itself"
    b.focus_page(page)
    page.keyboard.press(" ")
    deadline = time.time() + 15
    while b.stepper(page, "toggle").inner_text() != "Play" and time.time() < deadline:
        time.sleep(0.2)
    assert b.stepper(page, "toggle").inner_text() == "Play", "Space did not pause"
    b.idle(page)
    k = b.step(page)
    time.sleep(2.5)
    assert b.step(page) == k, "a paused player must stay put"
    b.no_errors(page)


def test_back_undoes_one_step_per_press(server, page):
    """Each step is one browser-history entry, and Back applies the URL it goes back to: two steps
    forward, two presses of Back, and the page is where it started (not a step re-written on top)."""
    b.open_page(page, f"{server}/attention?scene=first-look")
    assert "Step 3 of 8" in b.label(page)
    b.focus_page(page)
    for k in (4, 5):
        page.keyboard.press("ArrowRight")
        b.wait_step(page, k)
        b.idle(page)
    for k in (4, 3):
        page.go_back()
        b.wait_step(page, k)
        b.idle(page)
        assert b.query(page).get("step") == str(k), page.url
    b.no_errors(page)


# ---------------------------------------------------------------- 6: export for slides
def test_export_html_plays_offline_and_png_is_1920x1080(server, browser, page, tmp_path):
    b.open_page(page, f"{server}/attention?scene=first-look")
    assert "Step 3 of 8" in b.label(page)
    b.stepper(page, "next").click()
    b.wait_step(page, 4)
    b.idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Export for slides").click()
    html_button = sidebar.get_by_role("button", name=re.compile(r"Animated HTML \(this q-block.*plays offline\)"))
    html_button.wait_for(timeout=20_000)
    with page.expect_download(timeout=120_000) as dl:
        html_button.click()
    html = tmp_path / "anim.html"
    dl.value.save_as(html)
    assert dl.value.suggested_filename == "flashattention_512_64x64_q3.html"
    assert html.stat().st_size > 1_000_000  # plotly.js is inside

    # the file alone, every request off this machine refused
    context = browser.new_context(viewport=VIEWPORT)
    try:
        refused = []

        def only_files(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        off = context.new_page()
        errors = []
        off.on("pageerror", lambda e: errors.append(str(e)))
        off.goto(html.as_uri())
        off.wait_for_function("() => window.Plotly && document.querySelector('.js-plotly-plot')"
                              " && document.querySelector('.js-plotly-plot')._transitionData", timeout=30_000)
        frames, steps, active = off.evaluate(
            "() => { const gd = document.querySelector('.js-plotly-plot');"
            " return [gd._transitionData._frames.length, gd.layout.sliders[0].steps.length,"
            " gd.layout.sliders[0].active]; }")
        assert (frames, steps, active) == (8, 8, 0), "one frame and one slider step per step of q-block 3"
        off.locator(".updatemenu-button", has_text="Play").click()
        off.wait_for_function("() => document.querySelector('.js-plotly-plot').layout.sliders[0].active >= 2",
                              timeout=15_000)
        assert not refused, f"the exported HTML asked the network for: {refused}"
        assert not errors, f"script errors in the exported HTML: {errors}"
        b.shot(off, tmp_path, "export_html_playing")
    finally:
        context.close()

    png_button = sidebar.get_by_role("button", name="The step on screen as a 1920×1080 PNG")
    with page.expect_download(timeout=180_000) as dl:
        png_button.click()
    png = tmp_path / "step.png"
    dl.value.save_as(png)
    assert b.png_size(png.read_bytes()) == (1920, 1080)
    b.no_errors(page)
    assert "Step 4 of 8" in b.label(page)
    from viz.export import png_title

    title = png_title(png.read_bytes()) or ""
    assert title.startswith("Step 4: Q3 meets K3"), f"the PNG must show the step on screen (4), not {title!r}"


# ---------------------------------------------------------------- 8: eight visitors at once
def test_eight_visitors_each_keep_their_own_step(server, browser):
    """Eight sessions on one server (presenter view: the lightest page, two CPU cores here): visitor k
    clicks Next k times, the eight clicking at once, 0.1 s apart; each ends at its own step. (Clicks,
    not keys: what is tested here is that sessions stay apart; the keys are test_arrow_keys_...)"""
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(8)]
    try:
        pages = [c.new_page() for c in contexts]
        for pg in pages:  # all eight sessions start before any is waited for
            pg.goto(f"{server}/attention?scene=first-look&step=1&present=1", wait_until="commit")
        for pg in pages:
            pg.wait_for_selector("#attn-step-label", timeout=180_000)
        for pg in pages:
            b.wait_step(pg, 1, timeout=60)
            pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        for r in range(7):  # one click of every visitor still clicking, then the next round: all at once
            for k, pg in enumerate(pages):
                if k > r:
                    b.stepper(pg, "next").evaluate("e => e.click()")
            time.sleep(0.1)
        for k, pg in enumerate(pages):
            b.wait_step(pg, k + 1, timeout=60)
        time.sleep(2)  # no late press arrives
        got = [b.step(pg) for pg in pages]
        assert got == [1, 2, 3, 4, 5, 6, 7, 8], f"steps of the eight visitors: {got}"
        for pg in pages:
            pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
        urls = [b.query(pg).get("step") for pg in pages]
        assert urls == [str(k) for k in range(1, 9)], f"the URLs' steps: {urls}"
        for pg in pages:
            b.no_errors(pg)
    finally:
        for c in contexts:
            c.close()


# ---------------------------------------------------------------- 9: the other stepping pages, by key
@pytest.mark.parametrize("path, n", [("/backward?scene=backward&step=1", 4), ("/softmax?scene=softmax-rescales&step=1", 24),
                                     ("/orders?scene=fa1-order&step=1", 10)])
def test_other_pages_step_by_key(server, page, tmp_path, path, n):
    b.open_page(page, server + path)
    first = b.label(page)
    assert f"Step 1 of {n}" in first
    b.focus_page(page)
    page.keyboard.press("ArrowRight")
    b.wait_step(page, 2)
    second = b.label(page)
    assert second != first and f"Step 2 of {n}" in second
    b.idle(page)
    assert b.query(page).get("step") == "2", page.url
    page.keyboard.press("End")
    b.wait_step(page, n)
    page.keyboard.press("Home")
    b.wait_step(page, 1)
    b.idle(page)
    assert b.label(page) == first
    b.no_errors(page)
    b.shot(page, tmp_path, f"{path.split('?')[0].strip('/')}_keys")
