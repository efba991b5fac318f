"""The talk: the source documents' story as one sequence a speaker walks with a clicker.

The story has nine chapters (STORY); each chapter is a title card on the start page, then its
scenes, each on its page. `STOPS` is that sequence, card, scenes, next card, ... In talk mode
(`talk=1` in the URL, set by the deck), a press past a scene's last step goes to the next stop and
a press before its first step to the previous one; `]` / `[` (Shift + → / ←) jump to the next or
previous chapter's card from anywhere. The speaker console (viz/pages/console.py) drives a room:
`rooms()` holds each room's stop and step on the server, and every window opened with
`follow=ROOM` (the projector, the audience's laptops) shows what the console shows, read-only.

Not for: what a step draws (the pages) or its words (viz/words.py).
"""
import threading
import time
from dataclasses import dataclass

import streamlit as st

ATTN, SOFTMAX, BWD, ORDERS, BENCH, START, RING = (
    "viz/pages/attention.py", "viz/pages/softmax.py", "viz/pages/backward.py", "viz/pages/orders.py",
    "viz/pages/benchmarks.py", "viz/pages/start.py", "viz/pages/ring.py")
PATHS = {ATTN: "attention", SOFTMAX: "softmax", BWD: "backward", ORDERS: "orders", BENCH: "benchmarks", START: "",
         RING: "ring"}
# (chapter, its point, page, scene names in the order a talk takes them)
STORY = (
    ("1 · Softmax three ways", "Naive softmax overflows; safe softmax reads the row three times; online softmax "
     "keeps a running max and sum and reads it twice.", SOFTMAX, ("softmax-overflow", "softmax-rescales")),
    ("2 · One q-block, tile by tile", "FlashAttention folds the second pass into P V: each K, V tile is read once "
     "per q-block, the running max, sum and accumulator rescaled as it goes.", ATTN,
     ("first-look", "every-step-rescales", "max-in-first-block", "scores-x100")),
    ("3 · Masks and edges", "Causal attention skips whole tiles and masks the diagonal ones; a ragged last "
     "block; bfloat16 at 4096.", ATTN, ("causal", "ragged", "bf16-long")),
    ("4 · FlashAttention-1 against FlashAttention-2", "The same tiles in both loop orders, stepping together: "
     "what each keeps on chip, and what each sends back to memory.", ORDERS, ("fa1-order",)),
    ("5 · Merging partial states", "Split-KV: each program's (m, ℓ, O) over part of the keys, merged; the "
     "merge of flash-decoding and of attention across GPUs.", ATTN, ("split-kv",)),
    ("6 · As models run it", "A sliding window skips the tiles outside it; packed documents mask across their "
     "edges; GQA's query heads share each K/V tile; decode's one query splits its long cache over programs.", ATTN,
     ("sliding-window", "documents", "gqa", "decode")),
    ("7 · Beyond one GPU", "Ring attention: each rank keeps a shard of Q while the K/V shards go round the ring, and "
     "merges the kernel's partial states as split-KV does (recorded on CPU: four gloo processes).", RING,
     ("ring-zigzag", "ring-contiguous")),
    ("8 · The backward", "dS = P ∘ (dP − D): the softmax Jacobian never built, one kv-block's program at a time.",
     BWD, ("backward",)),
    ("9 · How fast", "The same kernel against PyTorch's FlashAttention-2 and cuDNN, measured on the H200.",
     BENCH, ()),
)


@dataclass(frozen=True)
class Stop:
    chapter: int  # 0-based
    page: str  # the page file
    scene: str | None  # None: the chapter's title card (or the Benchmarks page of the last chapter)

    @property
    def card(self) -> bool:
        return self.page == START


def _stops() -> tuple[Stop, ...]:
    out = []
    for k, (_, _, page, names) in enumerate(STORY):
        out.append(Stop(k, START, None))
        out += [Stop(k, page, n) for n in names] or [Stop(k, page, None)]
    return tuple(out)


STOPS = _stops()


def stop_of(page: str, scene: str | None, chapter: int | None = None) -> int | None:
    """The index in STOPS of this page and scene (a card: its chapter), or None."""
    for k, s in enumerate(STOPS):
        if s.page == page and (s.scene == scene if page != START else s.chapter == chapter):
            return k
    return None


def last() -> int:
    return len(STOPS) - 1


def card_of(chapter: int) -> int:
    return stop_of(START, None, max(0, min(chapter, len(STORY) - 1)))


def query_of(stop: Stop, **extra) -> dict:
    """The URL query that opens a stop (in talk mode), plus extra parameters (step, present, ...)."""
    q = {"chapter": stop.chapter + 1} if stop.card else ({"scene": stop.scene} if stop.scene else {})
    return {**q, "talk": 1, **{k: v for k, v in extra.items() if v is not None}}


def go(index: int, last: bool = False, step: int | None = None) -> None:
    """Open stop `index` (clamped): its page, with its query, in talk mode (never returns); `last`:
    at its last step (a press back from the next stop), `step` (1-based): at that step."""
    stop = STOPS[max(0, min(index, len(STOPS) - 1))]
    ss = st.session_state
    ss.setdefault("url.applied", set()).discard(PATHS[stop.page] or "start")  # the page reads this URL again
    if last:
        ss["talk.to_last"], step = True, 10**6

    extra = {"step": step, "present": 1 if ss.get("app.present") else None,
             "theme": "dark" if ss.get("app.dark") else None, "follow": ss.get("talk.follow")}
    st.switch_page(stop.page, query_params=query_of(stop, **extra))


def handle(move: tuple | None, here: int | None) -> None:
    """A press the stepper counted past the ends (("beyond", +1 / -1)) or a chapter key
    (("chapter", +1 / -1)), at stop `here`: go where it leads (talk mode only for "beyond")."""
    if move is None or here is None:
        return
    kind, delta = move
    if kind == "chapter":
        go(card_of(STOPS[here].chapter + delta))
    elif kind == "beyond" and st.session_state.get("talk.on"):
        go(here + delta, last=delta < 0)  # back: the previous stop's last step


# ---------------------------------------------------------------- rooms: a console drives every follower
@dataclass
class Room:
    stop: int = 0
    step: int = 0  # 0-based
    version: int = 0
    started: float = 0.0  # time.time() of the console's timer start


@st.cache_resource
def rooms() -> dict:
    """{room name: Room}, one per server; a lock guards it."""
    return {"_lock": threading.Lock()}


def room(name: str) -> Room:
    r = rooms()
    with r["_lock"]:
        return r.setdefault(name, Room(started=time.time()))


def set_room(name: str, stop: int, step: int) -> Room:
    r = rooms()
    with r["_lock"]:
        old = r.setdefault(name, Room(started=time.time()))
        old.stop, old.step, old.version = max(0, min(stop, len(STOPS) - 1)), max(0, step), old.version + 1
        return old


def restart_timer(name: str) -> None:
    r = rooms()
    with r["_lock"]:
        r.setdefault(name, Room()).started = time.time()


ROOM_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def room_name(text: str) -> str:
    """A room's name as typed or in a URL: lowercase letters, digits, dashes, 1-24 of them; ValueError else."""
    if not (0 < len(text) <= 24 and set(text) <= ROOM_NAME_CHARS):
        raise ValueError("a room is named with 1 to 24 lowercase letters, digits and dashes")
    return text


FOLLOW_SECONDS = 1.0  # how often a following window looks at its room


def follower(step_key: str, here: int | None) -> None:
    """In a window that follows a room: every FOLLOW_SECONDS, go where the room's console went (another
    stop: its page; this stop: its step). Nothing in a window that follows no room."""
    ss = st.session_state
    name = ss.get("talk.follow")
    if not name:
        return

    @st.fragment(run_every=FOLLOW_SECONDS)
    def look():
        r = room(name)
        if r.version == ss.get("talk.seen_version"):
            return
        ss["talk.seen_version"] = r.version
        if here is None or r.stop != here:
            go(r.stop, step=r.step + 1)  # a card has one step: step 1
        elif ss.get(step_key) != r.step:
            ss[step_key] = r.step
            st.rerun(scope="app")

    look()
