"""Where a stepping page's trace comes from, one way for every page: the URL on arrival (a scene or
a live config, the followed block and row, the step, presenter view), a shipped scene opening where
its narration starts, and a trace file uploaded in place of either.

Each page names what differs: its key prefix, the URL parameters it reads and the session keys they
land in, the trace kind it replays, and where a scene opens (`opening(scene) -> {key: value}`).

Not for: the Scenes selectbox and the config widgets (viz/controls.py) or parsing a parameter
(viz/urlstate.py).
"""
import streamlit as st

from viz import controls, state, stepping, urlstate

PAGE_OF_KIND = {"forward": "FlashAttention tiles", "backward": "Backward", "softmax": "Softmax"}


def defaults(prefix: str) -> None:
    ss = st.session_state
    for key, value in {f"{prefix}.upload_n": 0, f"{prefix}.loaded": None, f"{prefix}.load_error": None}.items():
        ss.setdefault(key, value)
    stepping.defaults(prefix)


def arrive(prefix: str, page: str, spec: dict, config_fields, positions: dict, opening) -> None:
    """Once per session and page, apply the URL: scene=NAME (opened where `opening` says; None from
    `opening` means there is no such scene here: a message) or the config fields (the live kernel),
    then the parameters in `positions` ({param: session key}), the step and present=1. Messages for
    what did not parse are shown by `show_url_problems`."""
    if not urlstate.arrived(page):
        return
    ss = st.session_state
    values, problems = urlstate.read(spec)
    if "scene" in values:
        opened = opening(values["scene"])
        if opened is None:
            problems.append(f"URL parameter scene={values['scene']!r} names no scene of this page; using the default.")
        else:
            ss[f"{prefix}.source"] = values["scene"]
            ss.update(opened)
    elif any(f in values for f in config_fields):
        ss[f"{prefix}.source"] = controls.LIVE
        ss.update({f"{prefix}.{f}": values[f] for f in config_fields if f in values})
    ss.update({key: values[param] for param, key in positions.items() if param in values})
    if "step" in values:
        ss[f"{prefix}.step"], ss[f"{prefix}.url_step"] = values["step"] - 1, values["step"]
    if "present" in values:
        ss["app.present"] = values["present"]
    ss[f"{prefix}.url_problems"] = problems


def show_url_problems(prefix: str) -> None:
    for problem in st.session_state.pop(f"{prefix}.url_problems", []):
        st.warning(problem)


def scene_opening(page: str, where):
    """`opening` for a page's shipped scenes: `where(scene)` -> {key: value}, None for a name that is
    not a scene of this page."""
    def opening(name: str):
        scene = state.scene_by_name(name)
        return None if scene is None or scene.page != page else {**where(scene)}
    return opening


def callbacks(prefix: str, kind: str, opening):
    """(new_source, uploaded, back): the Scenes selectbox's on_change (a scene opens where its
    narration starts), the uploader's on_change (the file is checked; a refusal is kept as the
    message to show), and the button back from a file to the scenes and the live kernel."""
    ss = st.session_state

    def new_source():
        ss[f"{prefix}.loaded"], ss[f"{prefix}.load_error"] = None, None
        stepping.restart(prefix)
        ss.update(opening(ss[f"{prefix}.source"]) or {})

    def uploaded():
        f = ss.get(f"{prefix}.upload.{ss[f'{prefix}.upload_n']}")
        if f is None:
            return
        try:
            ss[f"{prefix}.loaded"] = {"name": f.name, "trace": state.load_trace(f.getvalue(), f.name, kind=kind)}
            ss[f"{prefix}.load_error"] = None
            stepping.restart(prefix)
        except ValueError as e:
            ss[f"{prefix}.loaded"], ss[f"{prefix}.load_error"] = None, str(e)

    def back():
        ss[f"{prefix}.loaded"], ss[f"{prefix}.load_error"] = None, None
        ss[f"{prefix}.upload_n"] += 1  # a fresh uploader: the old file is gone
        stepping.restart(prefix)

    return new_source, uploaded, back


def upload_box(prefix: str, kind: str, uploaded, back) -> None:
    """The sidebar expander that loads a trace file of this page's kind, its refusal, and the way back."""
    ss = st.session_state
    with st.expander(f"Load a {kind} trace file (.npz)"):
        st.file_uploader("trace file", type=["npz"], key=f"{prefix}.upload.{ss[f'{prefix}.upload_n']}",
                         on_change=uploaded, label_visibility="collapsed")
        if ss[f"{prefix}.load_error"]:
            st.error(ss[f"{prefix}.load_error"])
        if ss[f"{prefix}.loaded"] is not None:
            st.button("Back to the scenes and the live kernel", key=f"{prefix}.back", on_click=back)


def scene_info(scene) -> None:
    """The chosen scene's title and narration, in the sidebar."""
    st.info(f"**{scene.title}**. {scene.narration}", icon=":material/movie:")
