"""The whole talk as one offline HTML file (viz/deck.py): every stop's every step is a slide, with
the words and the numbers the app shows at that step; plotly.js inline once; no network address
anywhere in it (the browser test plays it from file:// with the network off)."""
import json
import re

import pytest

from kernels import steps
from viz import deck, script, talk
from viz.figures import attention as fa


@pytest.fixture(scope="module")
def built():
    loader = script.file_loader()
    return loader, deck.build(loader)


def _slides(html: str) -> list[dict]:
    body = re.search(r'<script type="application/json" id="slides">(.*?)</script>', html, re.S)[1]
    return json.loads(body.replace("<\\/", "</"))


def test_every_step_of_the_talk_is_a_slide(built):
    loader, html = built
    slides = _slides(html)
    scripts = [script.script(k, loader) for k in range(len(talk.STOPS))]
    assert len(slides) == sum(s.steps for s in scripts)
    k = 0
    for stop, s in zip(talk.STOPS, scripts, strict=True):
        for step in range(s.steps):
            assert slides[k]["chapter"] == stop.chapter and slides[k]["kind"] == s.kind
            if s.kind != "card":
                assert slides[k]["words"] == __import__("html").escape(s.say(step)), (k, s.title)
            k += 1
    assert {sl["kind"] for sl in slides} >= {"card", "attention", "softmax", "backward", "orders", "bench"}


def test_a_slide_carries_the_kernels_numbers(built):
    loader, html = built
    slides = _slides(html)
    index = next(k for k, s in enumerate(talk.STOPS) if s.scene == "first-look")
    first = sum(script.script(k, loader).steps for k in range(index))
    trace, walk, row = script.script(index, loader).data
    for k in (0, 2):
        u = steps.row_update(trace, walk[k], row)
        eq = " ".join(slides[first + k]["eq"])
        assert fa.html_num(u.m_new) in eq and fa.html_num(u.l_new) in eq, eq
        assert len(slides[first + k]["figs"]) == 3 and slides[first + k]["side"]["data"][0]["name"] == "acc"


def test_the_deck_needs_no_network(built):
    """plotly.js inline once (its bundle names map-tile servers that only map traces would fetch; the
    deck has none), and not one address in the rest: the slides and the player."""
    import plotly.offline

    _, html = built
    assert html.count("<script") == 3 and "<script src" not in html and "<link" not in html
    plotly_js = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
    assert html.count(plotly_js) == 1
    rest = html.replace(plotly_js, "")
    assert not re.findall(r"https?://|//cdn|@import|url\(", rest)
    assert all(t["type"] not in ("scattermapbox", "scattergeo", "choroplethmapbox", "scattermap")
               for sl in _slides(html) for f in sl["figs"] for t in f["data"])
