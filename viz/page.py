"""A stepping page is a spec and a draw function; this module does the rest, the same way for every page.

`PageSpec` declares what differs between pages: the session-key prefix, the URL path and the scenes
it replays, the trace kind it loads from a file, its live config (URL parameters, sidebar widgets,
how to build and capture it) and where a scene opens. `resolve(spec)` then does what every page
does first: the URL on arrival (a scene or a live config, the followed block and row, the step,
presenter view), the sidebar (Scenes, the config, a trace file), and the source of the trace:
a file, a scene, or the live kernel (`load`: a spinner, a wait note, a failure as a message).
A page reads `spec.key(name)` for its session keys (tests too), draws one step in `draw(step)` and
hands it to `stepping.step_fragment`.

Not for: the widgets' look (viz/controls.py), the URL's syntax (viz/urlstate.py) or any kernel rule
(kernels/).
"""
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from viz import controls, state, stepping, urlstate

PAGE_OF_KIND = {"forward": "FlashAttention tiles", "backward": "Backward", "softmax": "Softmax",
                "ring": "Ring attention"}


@dataclass(frozen=True)
class PageSpec:
    prefix: str  # session keys are "{prefix}.{name}"
    page: str  # the URL path, and the `page` of the scenes this page replays
    title: str  # the heading shown above a message when there is no trace to draw
    kind: str  # the trace kind a file must be: "forward", "backward", "softmax" or "ring"
    config: dict  # URL parameter -> parser (viz/urlstate.py): the live config's fields
    positions: dict  # URL parameter -> session key name restored from the URL (the followed block, row)
    defaults: dict  # session key name -> its first value
    opening: Callable  # scene -> {session key name: value}: where the scene's narration starts
    config_widgets: Callable  # (spec, on_change) -> None: the live config's sidebar widgets
    make_config: Callable  # (spec) -> config; ValueError names what is not allowed
    capture: Callable  # (config, **follow) -> trace, cached in viz/state.py
    capture_what: Callable = field(default=lambda cfg: "Running the kernel with TRACE on")
    config_label: str = "Kernel config"  # the sidebar expander around config_widgets

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def get(self, name: str):
        return st.session_state[self.key(name)]

    def keyed(self, **values) -> dict:
        """{session key: value} for values named without the prefix (tests and callbacks set state so)."""
        return {self.key(k): v for k, v in values.items()}

    @property
    def file(self) -> str:
        return f"viz/pages/{self.page}.py"

    def url_spec(self) -> dict:
        return {**self.config, **{p: urlstate.POSITION[p] for p in self.positions},
                **{p: urlstate.POSITION[p] for p in ("step", "scene")}, **urlstate.VIEW}


@dataclass
class Source:
    """Where a page's trace comes from this run."""
    spec: PageSpec
    scene: object = None  # kernels.scenes.Scene when a scene is replayed
    file: str | None = None  # the name of an uploaded trace file
    trace: object = None  # the scene's or the file's trace (a live one comes from `load`)
    config: object = None  # the live config, when the kernel runs live
    error: str | None = None  # why nothing can be drawn (a config that is not allowed, a scene that cannot be read)
    note: str = ""  # where the trace came from, for the page's footer
    follow_box: object = None  # a sidebar container above the config, for the followed block and row

    @property
    def live(self) -> bool:
        """The kernel runs live (no scene, no file)."""
        return self.scene is None and self.file is None

    def stop(self) -> int | None:
        """This source's stop in the talk (viz/talk.py): a shipped scene's, else None."""
        from viz import talk

        return talk.stop_of(self.spec.file, self.scene.name) if self.scene is not None else None

    def url(self, positions: dict) -> dict:
        """The URL's query parameters for this source at these positions (step 1-based); urlstate.write
        adds the view (presenter, theme, talk, room)."""
        pos = dict(positions)
        if self.file is not None:
            return pos
        if self.scene is not None:
            return {"scene": self.scene.name, **pos}
        return {f: getattr(self.config, f, None) for f in self.spec.config} | pos  # None: the page adds it


def defaults(spec: PageSpec) -> None:
    ss = st.session_state
    for name, value in {**spec.defaults, "upload_n": 0, "loaded": None, "load_error": None}.items():
        ss.setdefault(spec.key(name), value)
    stepping.defaults(spec.prefix)


def _opening(spec: PageSpec, name: str) -> dict | None:
    """{session key: value} where scene `name` opens, or None when it is not a scene of this page."""
    scene = state.scene_by_name(name)
    if scene is None or scene.page != spec.page:
        return None
    return {spec.key(k): v for k, v in spec.opening(scene).items()}


def arrive(spec: PageSpec, opening=None) -> None:
    """Once per session and page: the URL's scene or config, positions, step and presenter view.
    opening(name) -> {session key: value} or None (no such scene here); default: spec.opening's."""
    if not urlstate.arrived(spec.page):
        return
    ss = st.session_state
    values, problems = urlstate.read(spec.url_spec())
    if "scene" in values:
        opened = (opening or (lambda name: _opening(spec, name)))(values["scene"])
        if opened is None:
            problems.append(f"URL parameter scene={values['scene']!r} names no scene of this page; using the default.")
        else:
            ss[spec.key("source")] = values["scene"]
            ss.update(opened)
    elif any(f in values for f in spec.config):
        ss[spec.key("source")] = controls.LIVE
        problems += _apply_config(spec, {f: values[f] for f in spec.config if f in values})
    ss.update({spec.key(key): values[param] for param, key in spec.positions.items() if param in values})
    if "step" in values:
        ss[spec.key("step")], ss[spec.key("url_step")] = values["step"] - 1, values["step"]
    apply_view(values)
    ss[spec.key("url_problems")] = problems


def apply_view(values: dict) -> None:
    """The URL's view parameters, in the session: presenter view, the theme, talk mode, the followed room."""
    ss = st.session_state
    if "present" in values:
        ss[stepping.PRESENT] = values["present"]
    if "theme" in values:
        ss[stepping.DARK] = values["theme"] == "dark"
    if "talk" in values:
        ss["talk.on"] = values["talk"]
    if "follow" in values:
        ss["talk.follow"] = values["follow"]


def arrive_view(page: str, extra: dict | None = None) -> dict:
    """A page without steps (start, benchmarks, console): the view parameters of the URL once per
    arrival (a problem named in a warning), the presenter and theme CSS; the arrival's values of
    `extra` (parameter -> parser) are returned, {} on a rerun."""
    ss = st.session_state
    for key, value in {stepping.PRESENT: False, stepping.DARK: False}.items():
        ss.setdefault(key, value)
    got = {}
    if urlstate.arrived(page):
        values, problems = urlstate.read({**urlstate.VIEW, **(extra or {})})
        apply_view(values)
        got = {k: v for k, v in values.items() if k in (extra or {})}
        for problem in problems:
            st.warning(controls.plain(problem))
    stepping.page_style()
    return got


def _apply_config(spec: PageSpec, given: dict) -> list[str]:
    """The URL's config values that this machine runs, set in the session; each one it does not
    (a sequence longer than the interpreter takes, bfloat16 on a CPU, a block the page has no
    setting for, a combination no kernel runs) is named in a message and left at its default."""
    ss = st.session_state
    problems, kept = [], {}
    for name, value in given.items():  # each value alone, on the defaults
        ss.update({spec.key(k): spec.defaults[k] for k in given if k in spec.defaults})
        ss[spec.key(name)] = value
        try:
            spec.make_config(spec)
            kept[name] = value
        except ValueError as e:
            problems.append(f"URL parameter {name}={str(value)[:20]!r} cannot run here: {str(e)[:160]}; using "
                            f"{spec.defaults.get(name)!r}.")
    ss.update({spec.key(k): spec.defaults[k] for k in given if k in spec.defaults})
    ss.update(spec.keyed(**kept))
    for name in list(kept)[::-1]:  # then together: drop from the last until the combination runs
        try:
            spec.make_config(spec)
            break
        except ValueError as e:
            ss[spec.key(name)] = spec.defaults.get(name)
            problems.append(f"URL parameter {name}={str(kept[name])[:20]!r} does not go with the others: "
                            f"{str(e)[:160]}; using {spec.defaults.get(name)!r}.")
    return problems


def _callbacks(spec: PageSpec):
    """(new_source, uploaded, back): the Scenes selectbox's on_change (a scene opens where its
    narration starts), the uploader's (the file is checked; a refusal is kept as the message to
    show), and the button back from a file to the scenes and the live kernel."""
    ss = st.session_state

    def new_source():
        ss[spec.key("loaded")], ss[spec.key("load_error")] = None, None
        stepping.restart(spec.prefix)
        ss.update(_opening(spec, ss[spec.key("source")]) or {})

    store, me = state.upload_store(), state.session_id()

    def let_go():
        if ss.get(spec.key("loaded")):
            store.release(ss[spec.key("loaded")]["key"], me)
        ss[spec.key("loaded")] = None

    def uploaded():
        f = ss.get(spec.key(f"upload.{ss[spec.key('upload_n')]}"))
        if f is None:
            return
        let_go()
        data = f.getvalue()
        key = store.key(data)
        try:
            held = store.get(key, me)
            if held is None:  # the same file another visitor loaded is held once
                store.put(key, state.load_trace(data, f.name, kind=spec.kind), me)
            else:  # held for a page of another kind, maybe: this page replays only its own
                try:
                    state.check_kind(held, f.name, spec.kind)
                except ValueError:
                    store.release(key, me)
                    raise
            ss[spec.key("loaded")] = {"name": f.name[:80], "key": key}
            ss[spec.key("load_error")] = None
            stepping.restart(spec.prefix)
        except ValueError as e:
            ss[spec.key("load_error")] = str(e)
        del data

    def back():
        let_go()
        ss[spec.key("load_error")] = None
        ss[spec.key("upload_n")] += 1  # a fresh uploader: the old file is gone
        stepping.restart(spec.prefix)

    return new_source, uploaded, back


def resolve(spec: PageSpec) -> Source:
    """The URL, the sidebar and the source of this run's trace (a live one is loaded by `load`)."""
    defaults(spec)
    arrive(spec)
    new_source, uploaded, back = _callbacks(spec)
    ss = st.session_state
    stepping.page_style()
    src = Source(spec)
    with st.sidebar:
        src.scene = controls.source_picker(spec.prefix, spec.page, new_source)
        src.follow_box = st.container()  # in view at 720 px: above the config
        loaded = ss[spec.key("loaded")]
        held = state.upload_store().get(loaded["key"], state.session_id()) if loaded is not None else None
        if loaded is not None and held is None:  # freed: the server's budget for uploads, or the visitor was away
            ss[spec.key("loaded")], loaded = None, None
            ss[spec.key("load_error")] = ("Your trace file was freed (the server keeps uploads within a memory budget "
                                          "and frees those of visitors who left): load it again.")
        if loaded is not None:
            src.scene = None
        elif src.scene is not None:
            controls.scene_info(src.scene)
        else:
            with st.expander(spec.config_label, expanded=True):
                spec.config_widgets(spec, lambda: stepping.restart(spec.prefix))
    show_url_problems(spec)
    if loaded is not None:
        src.file, src.trace = loaded["name"], held
        src.note = f"replaying the file {loaded['name']}"
    elif src.scene is not None:
        try:
            src.trace = state.scene_trace(src.scene.name)
            src.note = f"scene {src.scene.name}"
        except ValueError as e:
            src.error = f"The scene {src.scene.name} cannot be read: {e}"
    else:
        try:
            src.config = spec.make_config(spec)
        except ValueError as e:
            src.error = str(e)
    return src


def show_url_problems(spec: PageSpec) -> None:
    for problem in st.session_state.pop(spec.key("url_problems"), []):
        st.warning(controls.plain(problem))


def stop_with(spec: PageSpec, message: str) -> None:
    """The page's heading and a message saying why there is nothing to draw; the page stops."""
    st.markdown(f"#### {spec.title}")
    st.error(controls.plain(message))
    st.stop()


def sidebar_end(spec: PageSpec) -> None:
    """Play controls and the trace-file box, at the bottom of the sidebar."""
    _, uploaded, back = _callbacks(spec)
    ss = st.session_state
    with st.sidebar:
        stepping.play_controls(spec.prefix)
        with st.expander(f"Load a {spec.kind} trace file (.npz)"):
            st.file_uploader("trace file", type=["npz"], key=spec.key(f"upload.{ss[spec.key('upload_n')]}"),
                             on_change=uploaded, label_visibility="collapsed")
            if ss[spec.key("load_error")]:
                st.error(ss[spec.key("load_error")])
            if ss[spec.key("loaded")] is not None:
                st.button("Back to the scenes and the live kernel", key=spec.key("back"), on_click=back)


def stop_if_error(src: Source) -> None:
    """A config or scene that cannot be drawn: the page's heading and the message, nothing else."""
    if src.error:
        stop_with(src.spec, src.error)


def load(src: Source, **follow):
    """The source's trace: replayed, or captured live (the spinner says for how long, and when
    another visitor's run holds the kernels); a kernel failure is a message that stops the page."""
    if src.trace is not None:
        return src.trace
    secs = state.capture_seconds(src.config, src.spec.kind)
    with st.spinner(f"{src.spec.capture_what(src.config)} ({state.backend_name()})" + state.busy_note()
                    + (f", about {secs:.0f} s…" if secs >= 2 else "…")):
        try:
            src.trace = src.spec.capture(src.config, **follow)
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)
    return src.trace


def step_header(spec: PageSpec, n: int, k: int, label_html: str, here: int | None = None) -> None:
    """The stepper, the step slider (normal view) or the way out of presenter view, and the step's
    label; `here`: the page's stop in the talk. A window following a room has no stepper: its
    console steps it."""
    from viz.stepper import stepper

    ss = st.session_state
    if ss.get("talk.follow"):
        top = st.columns([2.2, 3.4], vertical_alignment="center")
        top[0].caption(controls.plain(f"following room {ss['talk.follow']}: step {k + 1} of {n}, "
                                      "the speaker's console steps this window"))
        top[1].markdown(label_html, unsafe_allow_html=True)
        return
    if ss[stepping.PRESENT]:
        top = st.columns([1.75, 0.5, 3.35], vertical_alignment="center")
        with top[0]:
            stepper(spec.prefix, n, here)
        with top[1]:
            stepping.exit_presenter(spec.prefix)
        top[2].markdown(label_html, unsafe_allow_html=True)
        return
    s1, s2 = st.columns([2.4, 3.6], vertical_alignment="center")
    with s1:
        stepper(spec.prefix, n, here)
    with s2:
        if n > 1:
            # keyed by the step and read back, no on_change: a stale slider (a press that arrived
            # mid-rerun) then has nothing to undo; only a slider the visitor moved differs from k + 1
            moved = st.slider("step", 1, n, value=k + 1, key=spec.key(f"step_w.{k}"), label_visibility="collapsed")
            if moved != k + 1:
                ss[spec.key("step")], ss[spec.key("playing")] = moved - 1, False
                st.rerun(scope="fragment")
    st.markdown(label_html, unsafe_allow_html=True)
