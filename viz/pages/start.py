"""Start: what this app is, and the story of the source documents in order, each chapter a link to
the page (and the GPU-recorded scene) that tells it; `chapter=N` shows chapter N's title card, the
talk's stop before its scenes (viz/talk.py), large in presenter view."""
import html

import streamlit as st

from kernels import backend, scenes
from viz import deck, page, stepping, talk, urlstate
from viz.controls import plain
from viz.stepper import stepper

ss = st.session_state
page.arrive_view("start", {"chapter": urlstate.CHAPTER})  # a bad chapter= is named once, on arrival
try:  # the URL's chapter on every run: the sidebar's Start link (no chapter) is the story
    CHAPTER = urlstate.CHAPTER(st.query_params["chapter"]) - 1 if "chapter" in st.query_params else None
except ValueError:
    CHAPTER = None
problem = backend.torch_build_problem()
if problem:
    st.warning(plain(problem), icon=":material/warning:")
try:
    shipped, recorded = scenes.read_manifest()
except ValueError as e:
    st.error(f"The shipped scenes cannot be read: {plain(str(e))}")
    shipped, recorded = [], {}
by_name = {s.name: s for s in shipped}


def card(chapter: int) -> None:
    """Chapter `chapter`'s title card: its number and title, its point, the scenes it walks."""
    title, point, _, names = talk.STORY[chapter]
    number, _, name = title.partition(" · ")
    here = talk.card_of(chapter)
    stepping.defaults("start")
    ss.pop("talk.to_last", None)  # a card has one step: back from the next stop lands on it
    talk.follower("start.step", here)
    if not ss.get("talk.follow"):
        top = st.columns([2.2, 3.4], vertical_alignment="center")
        with top[0]:
            stepper("start", 1, here)
        top[1].caption("→ / PgDn: the chapter's first scene · ← / PgUp: back · ] / [ (Shift + → / ←): next / "
                       "previous chapter · P: presenter view")
    scenes_of = [by_name[n].title for n in names if n in by_name] or ["the Benchmarks page"]
    big = ss[stepping.PRESENT]
    st.html(f"""<div class="fa-card" style="margin-top:{'9vh' if big else '2rem'}">
      <div style="font-size:{'1.6rem' if big else '1.1rem'};opacity:.7">Chapter {html.escape(number)} of
        {len(talk.STORY)}</div>
      <div style="font-size:{'3.4rem' if big else '2.2rem'};font-weight:700;line-height:1.15;margin:.3rem 0 1.2rem 0">
        {html.escape(name)}</div>
      <div style="font-size:{'1.9rem' if big else '1.3rem'};line-height:1.35;max-width:60rem">{html.escape(point)}</div>
      <div style="font-size:{'1.35rem' if big else '1.05rem'};margin-top:1.6rem;opacity:.8">
        {'Scenes' if len(scenes_of) > 1 else 'Scene'}: {html.escape(' · '.join(scenes_of))}</div></div>""")
    if not big:
        st.page_link("viz/pages/start.py", label="Back to the story", icon=":material/arrow_back:")


def story() -> None:
    st.markdown("## FlashAttention, tile by tile")
    st.markdown("Step through the tiles of a **real Triton FlashAttention kernel**: the running max, running sum "
                "and rescaled accumulator it computed, checked against float64, next to the memory accesses of "
                f"naive, safe and online softmax. Kernels here: **{backend.describe()}**"
                + ("" if backend.HAVE_TRITON else " — every scene below replays a trace a GPU recorded") + ".")
    if recorded:
        elsewhere = [s.name for s in shipped if s.recorded]  # scenes that say what recorded them
        st.caption(plain(f"Scenes recorded on {recorded.get('gpu')} (torch {recorded.get('torch')}, triton "
                         f"{recorded.get('triton')}, {recorded.get('date', '')[:10]})"
                         + (f", except {', '.join(elsewhere)}: each says where it was recorded." if elsewhere else "."))
                   + " Keys on every stepping "
                   "page: ← → (or a clicker's PgUp / PgDn) step, Space plays, P presenter view; in a talk, ] / [ "
                   "jump between chapters.")
    b1, b2, b3 = st.columns([1, 1, 1.4])
    b1.page_link("viz/pages/start.py", label="Give the talk (presenter view)", icon=":material/slideshow:",
                 query_params={"chapter": 1, "talk": 1, "present": 1})
    b2.page_link("viz/pages/console.py", label="Speaker console", icon=":material/co_present:")
    with b3:
        dark = bool(ss.get(stepping.DARK))

        def deck_file() -> bytes:
            try:
                return deck.cached(dark)
            except Exception as e:  # the kernels are busy, or a scene cannot be read: say so
                st.toast(plain(f"The deck could not be built now: {type(e).__name__}: {str(e)[:160]}"))
                return b""

        st.download_button("The whole talk as one offline HTML file (about 18 MB; 30 s to build the first time)",
                           data=deck_file, file_name=f"flashattention-talk{'-dark' if dark else ''}.html", mime="text/html",
                           icon=":material/download:", on_click="ignore", key="start.deck")
    left, right = st.columns(2, gap="large")
    for k, (title, what, target, names) in enumerate(talk.STORY):
        with (left if k < (len(talk.STORY) + 1) // 2 else right).container(border=True):
            st.markdown(f"**{title}**  \n{what}")
            links = [by_name[n] for n in names if n in by_name]
            for s in links:
                st.page_link(target, label=plain(s.title), icon=":material/play_circle:", query_params={"scene": s.name})
            if not links:
                st.page_link(target, label="open the page", icon=":material/arrow_forward:")


if CHAPTER is not None:
    urlstate.write({"chapter": CHAPTER + 1})
    card(CHAPTER)
else:
    urlstate.write({})
    talk.follower("start.step", None)  # a window following a room goes where its console is
    story()
