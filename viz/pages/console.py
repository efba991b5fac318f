"""Speaker console: the talk's stops and steps on the speaker's screen, driving a room.

The speaker steps here (the same keys and clicker as the pages); every window opened with
`follow=ROOM` (the projector, the audience's laptops) shows the same stop and step within a
second, read-only. Here: the stop and step, the words to say now, the next step's, the notes, a
timer, and the links the followers open.
"""
import html
import time

import streamlit as st

from viz import page, script, talk, urlstate
from viz.controls import plain
from viz.stepper import stepper

ss = st.session_state
asked = page.arrive_view("console", {"room": talk.room_name})
ss.setdefault("console.room_text", asked.get("room", "talk"))
with st.sidebar:
    name = st.text_input("room", key="console.room_text", max_chars=24,
                         help="1-24 lowercase letters, digits and dashes: the followers' URLs name it")
try:
    ROOM = talk.room_name(name)
except ValueError as e:
    st.error(f"room {name[:24]!r}: {e}")
    st.stop()
if ss.get("console.at_room") != ROOM:  # a room carries on where its console left it
    r = talk.room(ROOM)
    ss["console.stop"], ss["console.step"], ss["console.at_room"] = r.stop, r.step, ROOM
ss.setdefault("console.playing", False)


def move_to(new_stop: int, last: bool = False) -> None:
    new_stop = max(0, min(new_stop, talk.last()))
    s = script.script(new_stop)
    ss["console.stop"], ss["console.step"] = new_stop, s.steps - 1 if last else s.opening


stop = ss["console.stop"]
move = ss.pop("talk.move", None)  # the stepper's press past an end, or a chapter key
if move is not None:
    kind, delta = move
    move_to(talk.card_of(talk.STOPS[stop].chapter + delta) if kind == "chapter" else stop + delta, last=delta < 0
            and kind != "chapter")
    stop = ss["console.stop"]
S = script.script(stop)
ss["console.step"] = min(max(0, int(ss["console.step"])), S.steps - 1)
top = st.columns([2.2, 3.4], vertical_alignment="center")
with top[0]:
    stepper("console", S.steps, lead_on=True)  # here=None: presses past the ends come back as talk.move, above
step = ss["console.step"]
room = talk.room(ROOM)
if (room.stop, room.step) != (stop, step):
    talk.set_room(ROOM, stop, step)
urlstate.write({"room": ROOM})
top[1].markdown(f"**{plain(S.title)}** · stop {stop + 1} of {len(talk.STOPS)} · step {step + 1} of {S.steps}")

st.html(f"<div id='console-now' class='fa-words' style='font-size:1.6rem'>{html.escape(S.say(step))}</div>")
if step + 1 < S.steps:
    nxt = f"step {step + 2}: {S.say(step + 1)}"
elif stop < talk.last():
    N = script.script(stop + 1)
    nxt = f"the next stop, {N.title}: {N.say(N.opening)}"
else:
    nxt = "the end of the talk"
st.html(f"<div id='console-next' style='font-size:1.15rem;opacity:.8'><b>Next</b>, {html.escape(nxt)}</div>")
c1, c2 = st.columns([1.6, 1])
with c1:
    st.markdown(f"**Notes.** {plain(S.notes)}")
    b = st.columns(4)
    b[0].button("◀ stop", on_click=move_to, args=(stop - 1, True), key="console.prev_stop", width="stretch")
    b[1].button("stop ▶", on_click=move_to, args=(stop + 1,), key="console.next_stop", width="stretch")
    b[2].button("◀◀ chapter", key="console.prev_ch", width="stretch",
                on_click=lambda: move_to(talk.card_of(talk.STOPS[stop].chapter - 1)))
    b[3].button("chapter ▶▶", key="console.next_ch", width="stretch",
                on_click=lambda: move_to(talk.card_of(talk.STOPS[stop].chapter + 1)))
with c2:

    @st.fragment(run_every=1.0)
    def timer():
        r = talk.room(ROOM)
        secs = int(time.time() - r.started)
        st.markdown(f"<div id='console-timer' style='font-size:2.2rem;font-variant-numeric:tabular-nums'>"
                    f"{secs // 60:02d}:{secs % 60:02d}</div>", unsafe_allow_html=True)
        st.caption(f"since the timer started · room {ROOM}, version {r.version}")

    timer()
    st.button("restart the timer", key="console.timer_reset", on_click=lambda: talk.restart_timer(ROOM))
base = (st.context.url or "").split("?")[0].rsplit("/", 1)[0]
follow = f"{base}/?follow={ROOM}&present=1"
st.markdown("**The audience's window** (the projector, or anyone's laptop): open "
            f"[{plain(follow)}]({follow}): it shows this stop and step within a second, read-only. "
            "Keys here: → / ← step (past the ends: the next or previous stop), ] / [ chapters.")
