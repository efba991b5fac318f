"""What only a browser shows: `streamlit run app.py` in Debian's Chromium at 1280 x 720 (the
projector): every page loads without an exception, Next / the Right key / Play move the step, the
plotly charts render, state survives switching pages."""
import re
import time

import pytest

from tests import browser as b

pytestmark = pytest.mark.browser


def test_attention_page(server, page, tmp_path):
    b.open_page(page, server)
    b.no_errors(page)
    assert page.locator(".js-plotly-plot").count() >= 7  # grid, s, p, m/l, alpha, acc, memory
    assert "Step 1 of " in b.label(page)
    n = int(re.search(r"Step 1 of (\d+)", b.label(page)).group(1))
    assert n >= 4
    assert "Triton interpreter" in page.locator('[data-testid="stSidebar"]').inner_text() or "compiled" in \
        page.locator('[data-testid="stSidebar"]').inner_text()
    b.shot(page, tmp_path, "attention_step1")
    page.locator(".st-key-attn-next button").click()
    b.wait_step(page, 2)
    b.idle(page)
    b.no_errors(page)
    b.shot(page, tmp_path, "attention_step2")
    page.locator("#attn-step-label").click()  # focus the page, not a widget
    page.keyboard.press("ArrowRight")  # the Next button's shortcut
    b.wait_step(page, 3)
    page.keyboard.press("ArrowLeft")
    b.wait_step(page, 2)
    page.locator(".st-key-attn-step_slider input[type=range]").focus()
    page.keyboard.press("End")  # the step slider: to the last step
    b.wait_step(page, n)
    b.idle(page)
    b.no_errors(page)
    assert page.get_by_text("After the last step: out = acc").count() == 1
    b.shot(page, tmp_path, "attention_step4")
    b.shots_down_the_page(page, tmp_path, "attention_step4", 5)


def test_play_runs_to_the_end_and_stops(server, page):
    b.open_page(page, server)
    n = int(re.search(r"Step 1 of (\d+)", b.label(page)).group(1))
    page.locator(".st-key-attn-play button").click()
    b.wait_step(page, 2, timeout=20)
    b.wait_step(page, n, timeout=10 + 3 * n)
    b.idle(page)
    time.sleep(2.5)  # a stopped player stays put
    assert b.step(page) == n
    assert "Play" in page.locator(".st-key-attn-play button").inner_text()
    page.locator(".st-key-attn-play button").click()  # again: from the start
    b.wait_step(page, 2, timeout=20)
    page.locator(".st-key-attn-play button").click()  # pause
    b.idle(page)
    k = b.step(page)
    time.sleep(2.5)
    assert b.step(page) == k, "Pause must stop the steps"
    b.no_errors(page)


def test_causal_config(server, page, tmp_path):
    b.open_page(page, server)
    page.locator(".st-key-attn-causal label").click()  # the toggle
    b.idle(page)
    b.wait_step(page, 1)
    b.no_errors(page)
    page.locator(".st-key-attn-next button").click()
    b.wait_step(page, 2)
    b.idle(page)
    b.shot(page, tmp_path, "attention_causal_step2")


def _seq_len(pg) -> int:
    return int(pg.locator(".st-key-attn-seq_len input[type=range]").get_attribute("value"))


def test_softmax_page_and_state_across_pages(server, page, tmp_path):
    b.open_page(page, server)
    page.locator(".st-key-attn-seq_len input[type=range]").focus()
    page.keyboard.press("ArrowLeft")  # 256 -> 255: a new config, captured once
    b.idle(page)
    assert _seq_len(page) == 255
    page.locator(".st-key-attn-next button").click()
    b.wait_step(page, 2)
    b.idle(page)
    page.get_by_role("link", name="Softmax: naive, safe, online").click()
    page.wait_for_selector("#sm-step-label", timeout=120_000)
    b.idle(page)
    b.no_errors(page)
    assert "Step 1 of 12" in b.label(page)
    assert page.locator(".js-plotly-plot").count() >= 6
    b.shot(page, tmp_path, "softmax_step1")
    for k in (2, 3, 4, 5, 6):
        page.locator(".st-key-sm-next button").click()
        b.wait_step(page, k)
    b.idle(page)
    b.no_errors(page)
    b.shot(page, tmp_path, "softmax_step6")
    b.shots_down_the_page(page, tmp_path, "softmax_step6", 4)
    page.get_by_role("link", name="FlashAttention tiles").click()
    page.wait_for_selector("#attn-step-label", timeout=120_000)
    b.idle(page)
    assert b.step(page) == 2, "the attention page lost its step when switching pages"
    assert _seq_len(page) == 255, "the sequence length slider lost its value when switching pages"
    b.no_errors(page)


def test_backward_page(server, page, tmp_path):
    b.open_page(page, f"{server}/backward")
    b.no_errors(page)
    assert page.locator("#bwd-step-label").count() == 1
    assert page.locator(".js-plotly-plot").count() >= 8  # row, grid, P, dP, dS, D, accumulators, memory
    n = int(re.search(r"Step 1 of (\d+)", b.label(page)).group(1))
    assert n >= 3
    b.shot(page, tmp_path, "backward_step1")
    b.shots_down_the_page(page, tmp_path, "backward_step1", 4)
    page.locator(".st-key-bwd-next button").click()
    b.wait_step(page, 2)
    page.locator("#bwd-step-label").click()  # focus the page, not a widget
    page.keyboard.press("ArrowRight")  # the Next button's shortcut
    b.wait_step(page, 3)
    b.idle(page)
    b.no_errors(page)
    page.locator(".st-key-bwd-causal label").click()  # causal: a new trace, back to step 1
    b.idle(page)
    b.wait_step(page, 1)
    page.locator(".st-key-bwd-next button").click()
    b.wait_step(page, 2)
    b.idle(page)
    b.no_errors(page)
    b.shot(page, tmp_path, "backward_causal_step2")
    b.shot(page, tmp_path, "backward_causal_step2_scroll1", scroll=620)
