"""What every stepping page shares: the play timer, the presenter and theme toggles, and the step
fragment that redraws one step without rerunning the page.

A page calls `play_controls(prefix)` in its sidebar and `step_fragment(prefix, n_steps, draw)`
where the step goes; `draw(step)` draws step `step` (0-based). Steps, play and the presenter view
live in session_state under `{prefix}.step`, `{prefix}.playing` and `app.present`.

Not for: the buttons and keys themselves (viz/stepper.py) or the URL (viz/urlstate.py).
"""
import streamlit as st

from viz import present

SPEEDS = (0.25, 0.5, 1.0, 2.0)
PRESENT, DARK = "app.present", "app.dark"  # presenter view and the dark theme: one for every page


def defaults(prefix: str) -> None:
    ss = st.session_state
    for key, value in {f"{prefix}.step": 0, f"{prefix}.playing": False, f"{prefix}.speed": 1.0,
                       f"{prefix}.loop": False, PRESENT: False, DARK: False, "talk.on": False}.items():
        ss.setdefault(key, value)


def restart(prefix: str) -> None:
    st.session_state[f"{prefix}.step"], st.session_state[f"{prefix}.playing"] = 0, False


def page_style() -> None:
    """The presenter and dark CSS for this run (call before drawing anything)."""
    present.apply(st.session_state[PRESENT], st.session_state[DARK])


def _view_toggle(label: str, key: str, help: str | None = None) -> None:
    """A sidebar toggle for a view setting kept under a plain session key (`key`): the widget has its
    own key, set from the setting before it is drawn, so the setting survives every page (a widget's
    own state is dropped on a page that does not draw it) and the P key or the URL may change it."""
    ss = st.session_state
    ss[f"{key}_w"] = bool(ss.get(key, False))
    st.toggle(label, key=f"{key}_w", help=help, on_change=lambda: ss.update({key: ss[f"{key}_w"]}))


def play_controls(prefix: str) -> None:
    """Presenter view, dark theme, talk mode, play speed and loop (in the sidebar)."""
    _view_toggle("presenter view", PRESENT, help="one projector screen per step (key P); the URL's present=1")
    _view_toggle("dark projector theme", DARK, help="the URL's theme=dark")
    _view_toggle("talk mode", "talk.on", help="past a scene's last step, Next goes on to the next scene of the story "
                 "(Start: the talk), before its first step back; the URL's talk=1")
    st.select_slider("play: seconds per step", SPEEDS, key=f"{prefix}.speed", persist_state="session")
    st.toggle("loop when playing", key=f"{prefix}.loop", help="play again from the first step after the last",
              persist_state="session")
    st.caption("Keys: ← → (a clicker's PgUp / PgDn) step, Home / End, Space plays, P presenter view, ] / [ chapters.")


def exit_presenter(prefix: str) -> None:
    """A small button in presenter view (the sidebar is hidden there)."""
    st.button("exit (P)", key=f"{prefix}.exit_present", type="tertiary", help="leave presenter view",
              on_click=lambda: st.session_state.update({PRESENT: False}))


def step_fragment(prefix: str, n_steps: int, draw, here: int | None = None) -> None:
    """Run draw(step) in a fragment that the play timer reruns every `{prefix}.speed` seconds
    while playing; a press that starts or stops play, or toggles presenter view, reruns the page.
    here: the page's stop in the talk; a window that follows a room goes where its console goes."""
    ss = st.session_state
    from viz import talk

    talk.follower(f"{prefix}.step", here)
    asked = ss.pop(f"{prefix}.url_step", None)
    to_last = ss.pop("talk.to_last", False)  # the talk came back from the next stop: the last step, no warning
    if asked is not None and asked > n_steps and not to_last:
        st.warning(f"URL parameter step={asked} is past the last step of this view ({n_steps}): showing "
                   f"step {n_steps}.")
    playing, presenting = bool(ss[f"{prefix}.playing"]), bool(ss[PRESENT])
    tick_key = f"{prefix}.tick_seen"

    @st.fragment(run_every=ss[f"{prefix}.speed"] if playing else None)
    def view():
        if bool(ss[f"{prefix}.playing"]) != playing or bool(ss[PRESENT]) != presenting:
            st.rerun()  # the whole page: start or stop the timer, or change the layout
        step = min(max(0, int(ss[f"{prefix}.step"])), n_steps - 1)
        if playing and ss.get(tick_key) is not None:  # a tick of the play timer: one step forward
            if step >= n_steps - 1:
                step = 0 if ss[f"{prefix}.loop"] else n_steps - 1
                ss[f"{prefix}.playing"] = bool(ss[f"{prefix}.loop"])
            else:
                step += 1
        ss[tick_key] = True if playing and ss[f"{prefix}.playing"] else None
        ss[f"{prefix}.step"] = step
        draw(step)

    view()
