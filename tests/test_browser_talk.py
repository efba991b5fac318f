"""The talk in Chromium at 1280 x 720 (issue 26): a clicker's keys after touching every sidebar
control move the step and nothing else; presenter type for the back of a room (ticks >= 18 px,
legends >= 16 px, equations >= 26 px) and each chapter's punchline on screen; nothing wider than
its column; the dark theme across a reload and a page change; chapter keys through the title
cards; the console driving a follower window; the offline deck from file:// with the network off."""
import re
import time

import pytest

from tests import browser as b

pytestmark = pytest.mark.browser
LIVE = "seq_len=200&block_m=64&block_n=32&head_dim=32"


def _press(pg, key: str, times: int = 1):
    for _ in range(times):
        pg.keyboard.press(key)
        time.sleep(0.25)


# ---------------------------------------------------------------- keys never reach a widget
def _slider_values(pg) -> list[str]:
    return pg.locator('[data-testid="stSidebar"] [role="slider"]').evaluate_all(
        "els => els.map(e => e.getAttribute('aria-valuenow'))")


def test_a_clicker_after_touching_each_control_steps_and_changes_nothing_else(server, page):
    b.open_page(page, f"{server}/attention?{LIVE}&q_block=1&step=2")
    sidebar = page.locator('[data-testid="stSidebar"]')
    controls = sidebar.locator('[role="slider"], input[type="checkbox"], [data-baseweb="select"] input')
    n = controls.count()
    kinds = controls.evaluate_all("els => els.map(e => e.getAttribute('role') || e.type || e.tagName)")
    assert n >= 5 and "slider" in kinds and "checkbox" in kinds and "combobox" in kinds, kinds
    before_q = {k: v for k, v in b.query(page).items() if k != "step"}
    want = b.step(page)
    for k in range(n):
        control = controls.nth(k)
        if not control.is_visible():
            continue
        sliders = _slider_values(page)
        control.focus()
        for key in ("PageDown", "ArrowRight"):
            page.keyboard.press(key)
            want = min(want + 1, b.n_steps(page))
            b.wait_step(page, want)
        b.idle(page)
        assert _slider_values(page) == sliders, f"control {k}: a stepping key moved a slider"
        assert {k2: v for k2, v in b.query(page).items() if k2 != "step"} == before_q, page.url
        assert page.get_by_text("Running the kernel").count() == 0, "a stepping key re-ran the kernel"
        _press(page, "Home")
        want = 1
        b.wait_step(page, 1)
    b.no_errors(page)


# ---------------------------------------------------------------- type for the back of a room, punchlines, clipping
def _sizes(pg) -> dict:
    return pg.evaluate("""() => {
      const px = (sel) => [...document.querySelectorAll(sel)].filter(e => e.getBoundingClientRect().width > 0)
          .map(e => parseFloat(getComputedStyle(e).fontSize));
      return {ticks: px('.js-plotly-plot .xtick text, .js-plotly-plot .ytick text'),
              legend: px('.js-plotly-plot .legendtext'), katex: px('.katex'), words: px('#fa-words')};
    }""")


def _too_wide(pg) -> list:
    """Elements wider than what holds them: equations, figures, the words (4 px: rounding)."""
    return pg.evaluate("""() => [...document.querySelectorAll(
        '[data-testid="stMain"] .katex-display, [data-testid="stMain"] .js-plotly-plot, #fa-words, #fa-bytes')]
      .filter(e => e.getBoundingClientRect().width > 0)
      .filter(e => e.scrollWidth > e.clientWidth + 4 || e.getBoundingClientRect().right > window.innerWidth + 2)
      .map(e => [e.className.slice(0, 40), e.scrollWidth, e.clientWidth, Math.round(e.getBoundingClientRect().right)])
    """)


PRESENTER = {  # url -> (what must be on the screen: the chapter's point)
    "/softmax?scene=softmax-overflow&present=1": ["#fa-overflow .fa-bad", "#fa-words"],
    "/attention?scene=first-look&present=1&step=8": [".st-key-attn-out .katex", "#fa-bytes", "#fa-words"],
    "/attention?scene=split-kv&present=1&step=8": [".st-key-attn-merge .katex", "#fa-words"],
    "/attention?scene=causal&present=1": [".st-key-attn-eq .katex", "#fa-bytes", "#fa-words"],
    "/backward?scene=backward&present=1": [".st-key-bwd-eq .katex", "#fa-words"],
    "/orders?scene=fa1-order&present=1&step=4": ["[class*='st-key-ord-eq'] .katex", "#fa-words"],
}


@pytest.mark.parametrize("path", list(PRESENTER))
def test_presenter_type_punchlines_and_nothing_cut(server, page, tmp_path, path):
    b.open_page(page, f"{server}{path}")
    b.wait_charts(page, 2)
    b.idle(page)
    b.no_errors(page)
    for sel in PRESENTER[path]:
        loc = page.locator(sel)
        assert loc.count() >= 1, f"{path}: {sel} is not on the screen"
        assert b.fully_inside(loc.first.bounding_box()), f"{path}: {sel} is not inside 1280 x 720"
    got = _sizes(page)
    assert got["ticks"] and min(got["ticks"]) >= 18, (path, sorted(set(got["ticks"])))
    assert not got["legend"] or min(got["legend"]) >= 16, (path, sorted(set(got["legend"])))
    if "softmax" not in path:  # the softmax screen has no equations: its point is the NaN table
        assert got["katex"] and min(got["katex"]) >= 26, (path, sorted(set(got["katex"])))
    assert got["words"] and min(got["words"]) >= 22, (path, got["words"])
    assert not _too_wide(page), (path, _too_wide(page))
    b.shot(page, tmp_path, "talk_" + re.sub(r"\W+", "_", path.strip("/"))[:60])


@pytest.mark.parametrize("path", ["/attention?scene=first-look", "/softmax?scene=softmax-overflow",
                                  "/orders?scene=fa1-order", "/backward?scene=backward"])
def test_normal_view_cuts_nothing(server, page, path):
    b.open_page(page, f"{server}{path}")
    b.wait_charts(page, 2)
    for y in (0, 700, 1400, 2100):
        page.evaluate(f"document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, {y})")
        time.sleep(0.6)
        assert not _too_wide(page), (path, y, _too_wide(page))


# ---------------------------------------------------------------- the dark theme stays
def _dark(pg) -> bool:
    return pg.evaluate("getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor") \
        == "rgb(14, 17, 23)"


def test_dark_theme_survives_a_reload_and_a_page_change(server, page):
    b.open_page(page, f"{server}/attention?scene=causal&theme=dark")
    assert _dark(page)
    page.reload()
    b.open_page(page, page.url)
    assert _dark(page) and b.query(page).get("theme") == "dark"
    page.locator('[data-testid="stSidebarNav"] a[href$="softmax"]').click()
    page.wait_for_selector("#sm-step-label", timeout=60_000)
    b.idle(page)
    assert _dark(page) and b.query(page).get("theme") == "dark", page.url


# ---------------------------------------------------------------- the talk: cards, chapter keys, the console
def test_chapter_keys_walk_the_title_cards_and_scenes(server, page, tmp_path):
    b.open_plain(page, f"{server}/?chapter=1&talk=1&present=1", "Softmax three ways")
    b.shot(page, tmp_path, "talk_card_1")
    page.locator(".fa-card").click()
    _press(page, "PageDown")  # the card's one step: on to the chapter's first scene
    page.wait_for_selector("#sm-step-label", timeout=60_000)
    b.idle(page)
    assert b.query(page).get("scene") == "softmax-overflow" and b.query(page).get("present") == "1", page.url
    _press(page, "]")  # the next chapter's card
    page.wait_for_selector(".fa-card", timeout=60_000)
    b.idle(page)
    assert b.query(page).get("chapter") == "2" and page.get_by_text("One q-block, tile by tile").count() >= 1
    _press(page, "[")
    page.wait_for_function("() => location.search.includes('chapter=1')", timeout=60_000)
    _press(page, "PageUp")  # before the first card: nowhere to go, no error
    b.idle(page)
    b.no_errors(page)


def test_the_console_drives_a_follower(server, browser):
    room = f"room-{int(time.time()) % 100000}"
    speaker = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    audience = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    b.open_plain(speaker, f"{server}/console?room={room}", "The audience's window")
    b.open_plain(audience, f"{server}/?follow={room}&present=1", "Softmax three ways")
    speaker.locator("#console-now").click()
    _press(speaker, "ArrowRight")  # past the card's one step: the first scene
    audience.wait_for_selector("#sm-step-label", timeout=60_000)
    assert b.query(audience).get("scene") == "softmax-overflow" and b.query(audience).get("follow") == room
    assert audience.locator(".fa-stepper").count() == 0, "a follower has no stepper of its own"
    _press(speaker, "ArrowRight", 2)
    b.wait_step(audience, 3, timeout=20)
    assert "step 3 of 12" in speaker.locator("[data-testid='stMain']").inner_text()
    speaker.context.close()
    audience.context.close()


# ---------------------------------------------------------------- the offline deck
def test_the_offline_deck_plays_from_a_file_with_the_network_off(browser, tmp_path):
    from viz import deck, script

    path = tmp_path / "talk.html"
    path.write_text(deck.build(script.file_loader()), encoding="utf-8")
    ctx = browser.new_context(viewport={"width": 1280, "height": 720}, offline=True)
    pg = ctx.new_page()
    requests, errors = [], []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(f"file://{path}#1")
    pg.wait_for_selector("#ctitle", timeout=30_000)
    assert "Softmax three ways" in pg.locator("#deck").inner_text()
    _press(pg, "]")  # chapter 2's card
    assert "One q-block, tile by tile" in pg.locator("#deck").inner_text()
    card = int(pg.evaluate("location.hash")[1:])
    _press(pg, "ArrowRight")
    assert pg.evaluate("location.hash") == f"#{card + 1}"
    pg.wait_for_selector("#figs .main-svg", timeout=30_000)
    assert "m<sub>new</sub>" in pg.locator("#eq").inner_html()
    _press(pg, "]")
    assert "Masks and edges" in pg.locator("#deck").inner_text()
    _press(pg, "End")
    pg.wait_for_selector("#figs .main-svg", timeout=30_000)
    assert "PyTorch" in pg.locator("#words").inner_text()
    pg.screenshot(path=str(tmp_path / "deck.png"))
    assert not errors, errors
    assert all(u.startswith("file:") for u in requests), [u for u in requests if not u.startswith("file:")]
    ctx.close()
