"""The URL holds the state: page path plus query parameters, read on arrival, written on every change.

`?seq_len=200&block_m=32&...&step=3` (step and rows 1-based as displayed; row is the row's number in
the sequence; the masks: window_left, window_right, documents, group, q_len) or
`?scene=first-look&step=3`, and `present=1` for presenter view. Opening such a URL shows exactly
that state; a reload keeps it. A parameter that is not valid is reported in a message naming it
and what is allowed, and its default is used; the page still opens.

Not for: the widgets themselves (viz/controls.py) or what is valid for a kernel (kernels/limits.py).
"""
import streamlit as st

from kernels import limits


def _int(lo, hi):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be a whole number between {lo} and {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value
    return parse


def _choice(*choices):
    def parse(text: str):
        for c in choices:
            if str(c) == text:
                return c
        raise ValueError(f"must be one of {', '.join(map(str, choices))}")
    return parse


def _bool(text: str) -> bool:
    if text in ("1", "true", "True", "yes"):
        return True
    if text in ("0", "false", "False", "no"):
        return False
    raise ValueError("must be 1 or 0")


def _name(text: str) -> str:
    if not (0 < len(text) <= 40 and all(ch.isalnum() or ch == "-" for ch in text)):
        raise ValueError("must be a scene's name (letters, digits and dashes)")
    return text


CONFIG = {  # parameter -> parser (the kernel's own checks still run on the combination)
    "seq_len": _int(1, limits.MAX_SEQ_LEN_GPU), "head_dim": _choice(*limits.HEAD_DIMS),
    "block_m": _choice(*limits.BLOCK_SIZES), "block_n": _choice(*limits.BLOCK_SIZES), "causal": _bool,
    "dtype": _choice(*limits.DTYPES), "scenario": _choice(*limits.SCENARIOS), "seed": _int(0, 2**31 - 1),
    "loop_order": _choice(*limits.LOOP_ORDERS), "kv_splits": _int(1, limits.MAX_KV_SPLITS),
    "window_left": _int(-1, limits.MAX_SEQ_LEN_GPU), "window_right": _int(-1, limits.MAX_SEQ_LEN_GPU),
    "documents": _int(1, limits.MAX_DOCUMENTS), "group": _int(1, limits.MAX_GROUP),
    "q_len": _int(0, limits.MAX_SEQ_LEN_GPU),
}
def _theme(text: str) -> str:
    if text not in ("light", "dark"):
        raise ValueError("must be light or dark")
    return text


def _room(text: str) -> str:
    from viz.talk import room_name

    return room_name(text)


POSITION = {"q_block": _int(0, 1 << 20), "kv_block": _int(0, 1 << 20), "row": _int(0, 1 << 24),
            "step": _int(1, 1 << 24), "scene": _name, "present": _bool, "std": _bool,
            "memory": _bool}
# every page: presenter view, the projector theme, the talk's mode and the room a window follows
VIEW = {"present": _bool, "theme": _theme, "talk": _bool, "follow": _room}
CHAPTER = _int(1, 8)
def _typed(text: str) -> str:
    if len(text) > 400:  # kernels/softmax_hand.MAX_TEXT; what the numbers may be, the page's config checks
        raise ValueError("must be at most 400 characters of numbers")
    return text


SOFTMAX = {"length": _int(1, 4096), "block": _int(1, 1024), "scenario": _choice(*limits.SCENARIOS, "typed"),
           "seed": _int(0, 2**31 - 1), "values": _typed}
RING = {"world_size": _int(2, 8), "seq_len": _int(1, limits.MAX_SEQ_LEN_GPU), "head_dim": _choice(*limits.HEAD_DIMS),
        "causal": _bool, "layout": _choice("contiguous", "zigzag"), "block_m": _choice(*limits.BLOCK_SIZES),
        "block_n": _choice(*limits.BLOCK_SIZES), "dtype": _choice(*limits.DTYPES),
        "scenario": _choice(*limits.SCENARIOS), "seed": _int(0, 2**31 - 1)}


def read(spec: dict) -> tuple[dict, list[str]]:
    """({name: value} for the parameters in the URL that parse, [messages for those that do not])."""
    values, problems = {}, []
    params = st.query_params
    for name, parse in spec.items():
        if name not in params:
            continue
        text = params.get(name)
        try:
            values[name] = parse(text)
        except ValueError as e:
            problems.append(f"URL parameter {name}={text[:40]!r} {e}; using the default.")
    unknown = sorted(set(params) - set(spec))
    if unknown:
        problems.append(f"URL parameters not used on this page: {', '.join(u[:20] for u in unknown[:8])}.")
    return values, problems


def arrived(page: str) -> bool:
    """True on the run that should apply the URL to the state: once per browser session and page,
    and again when the browser moved the URL itself (Back or Forward: a query string other than the
    one this page last wrote), so that Back undoes one step per press."""
    ss = st.session_state
    ss["url.page"] = page
    done = ss.setdefault("url.applied", set())
    if page in done:
        last = ss.get("url.written")
        now = st.query_params.to_dict()
        return bool(last and last[0] == page and now and now != last[1])
    done.add(page)
    return True


def view() -> dict:
    """The view parameters this session carries into every URL it writes: present, theme, talk, follow."""
    ss = st.session_state
    return {"present": ss.get("app.present") or None, "theme": "dark" if ss.get("app.dark") else None,
            "talk": 1 if ss.get("talk.on") else None, "follow": ss.get("talk.follow")}


def write(values: dict) -> None:
    """Make the URL's query string exactly `values` plus the view parameters (None values left out),
    in one update: one browser-history entry per change, so Back undoes one step per press."""
    want = {k: _text(v) for k, v in {**values, **view()}.items() if v is not None}
    st.session_state["url.written"] = (st.session_state.get("url.page"), want)
    params = st.query_params
    if dict(params.to_dict()) == want:
        return
    params.from_dict(want)


def _text(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)
