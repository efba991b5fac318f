"""Prev / Play / Next for every stepping page, as one component that counts every press.

A click or a key (Left / Right, PageUp / PageDown as presentation clickers send them, Home / End,
Space to play and pause) increments a counter in the browser, and the component sends the
running totals. The server applies the difference to what it has seen, so presses that arrive
while a slow rerun is still going are added up, never dropped (a Streamlit button's one-shot
trigger would let two quick presses count once). Keys typed into an input are left alone.

Not for: what a step shows (the pages) or the URL (viz/urlstate.py).
"""
import streamlit as st

from viz import stepping

HTML = ""
CSS = """
.fa-stepper { display: flex; gap: 0.5rem; align-items: center; font-family: inherit; }
.fa-stepper button { font: inherit; font-size: 1rem; padding: 0.3rem 0.9rem; min-width: 5.2rem; border-radius: 0.5rem;
  border: 1px solid var(--st-border-color, #d5dae0); background: var(--st-background-color, #fff);
  color: var(--st-text-color, #1f2430); cursor: pointer; }
.fa-stepper button.primary { background: var(--st-primary-color, #e8710a); color: #fff; border-color: transparent; }
.fa-stepper button:disabled { opacity: 0.4; cursor: default; }
"""
JS = """
export default function(component) {
  const { setStateValue, parentElement, data } = component;
  let root = parentElement.querySelector('.fa-stepper');
  if (!root) {
    root = document.createElement('div');
    root.className = 'fa-stepper';
    // the totals live on the element: they survive every call of this function while it is mounted
    root._counts = { next: 0, prev: 0, first: 0, last: 0, toggle: 0, present: 0, chapter_next: 0, chapter_prev: 0,
                     nonce: Math.random().toString(36).slice(2) };
    root.innerHTML = '<button data-a="prev" title="Left / PageUp">&#8249; Prev</button>' +
      '<button data-a="toggle" class="primary" title="Space">Play</button>' +
      '<button data-a="next" title="Right / PageDown">Next &#8250;</button>';
    parentElement.appendChild(root);
    root.querySelectorAll('button').forEach((b) => {
      b.onclick = () => { root._counts[b.dataset.a]++; root._send(); };
    });
  }
  // the latest setStateValue, for the listener registered once below
  root._send = () => setStateValue('presses', { ...root._counts });
  const d = data || {};
  root.querySelector('[data-a="toggle"]').textContent = d.playing ? 'Pause' : 'Play';
  root.querySelector('[data-a="prev"]').disabled = !!d.at_first;
  root.querySelector('[data-a="next"]').disabled = !!d.at_last;
  if (!root._onKey) {  // this function runs again on every rerun: one listener per mounted stepper
    const keys = { ArrowRight: 'next', PageDown: 'next', ArrowLeft: 'prev', PageUp: 'prev', Home: 'first',
                   End: 'last', ' ': 'toggle', p: 'present', P: 'present', ']': 'chapter_next', '[': 'chapter_prev' };
    const clicker = { PageDown: 1, PageUp: 1 };
    // a field being typed in keeps its keys (a clicker's PageUp / PageDown still step); every other widget
    // (a slider, a toggle, a closed select, a button) never sees a stepping key: it is taken in the
    // capture phase, before the widget, and the widget loses focus, so a clicker cannot move a slider
    const typing = (t) => !!t && (t.tagName === 'TEXTAREA' || t.isContentEditable ||
      (t.tagName === 'INPUT' && t.getAttribute('role') !== 'combobox' &&
       !['range', 'checkbox', 'radio', 'button', 'submit'].includes((t.type || '').toLowerCase())) ||
      (t.getAttribute && t.getAttribute('role') === 'combobox' && t.getAttribute('aria-expanded') === 'true'));
    root._onKey = (e) => {
      if (!root.isConnected) {  // a stepper taken off the page: its listener goes too
        window.removeEventListener('keydown', root._onKey, true);
        return;
      }
      const t = e.target;
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      let a = keys[e.key];
      if (a && e.shiftKey && (e.key === 'ArrowRight' || e.key === 'ArrowLeft')) {
        a = e.key === 'ArrowRight' ? 'chapter_next' : 'chapter_prev';
      }
      if (!a) return;
      if (typing(t) && !clicker[e.key]) return;
      e.preventDefault();
      e.stopPropagation();
      if (t && t !== document.body && t.blur) t.blur();
      if (e.repeat && e.key === ' ') return;
      root._counts[a]++;
      root._send();
    };
    window.addEventListener('keydown', root._onKey, true);
  }
  return () => {  // unmounted: take the listener with it
    if (root._onKey) window.removeEventListener('keydown', root._onKey, true);
    root._onKey = null;
  };
}
"""
_component = st.components.v2.component("fa_viz_stepper", html=HTML, css=CSS, js=JS)
ACTIONS = ("next", "prev", "first", "last", "toggle", "present", "chapter_next", "chapter_prev")


def apply_presses(step: int, n_steps: int, playing: bool, presses: dict | None, seen: dict | None):
    """(step, playing, seen, presenter toggles, move) after the presses counted since `seen`; a new
    nonce (the component was mounted again, its counters start over) is a fresh start. Steps are
    0-based, clamped; move: ("chapter", +1 / -1) for a chapter key, ("beyond", +1 / -1) for a press
    past the last step or before the first (the talk goes on to the next stop: viz/talk.py), else None."""
    if not presses or not isinstance(presses, dict):
        return step, playing, seen, 0, None
    nonce = presses.get("nonce")
    if not seen or seen.get("nonce") != nonce:
        seen = {"nonce": nonce, **dict.fromkeys(ACTIONS, 0)}
    delta = {a: max(0, int(presses.get(a, 0)) - int(seen.get(a, 0))) for a in ACTIONS}
    if delta["first"]:
        step = 0
    if delta["last"]:
        step = n_steps - 1
    raw = step + delta["next"] - delta["prev"]
    move = None
    if delta["chapter_next"] or delta["chapter_prev"]:
        move = ("chapter", 1 if delta["chapter_next"] >= delta["chapter_prev"] else -1)
    elif raw > n_steps - 1 and delta["next"]:
        move = ("beyond", 1)
    elif raw < 0 and delta["prev"]:
        move = ("beyond", -1)
    step = min(max(0, raw), max(0, n_steps - 1))
    if delta["next"] or delta["prev"] or delta["first"] or delta["last"]:
        playing = False
    if delta["toggle"] % 2:
        playing = not playing
        if playing and step >= n_steps - 1:
            step = 0  # play again from the start
    return step, playing, {"nonce": nonce, **{a: int(presses.get(a, 0)) for a in ACTIONS}}, delta["present"], move


def stepper(prefix: str, n_steps: int, here: int | None = None, lead_on: bool | None = None) -> None:
    """The buttons and keys for session_state[f"{prefix}.step"] (0-based) and f"{prefix}.playing";
    `here`: this page's stop in the talk (viz/talk.py), where chapter keys and presses past the ends go on;
    lead_on: whether Prev / Next stay enabled at the ends (default: in talk mode, between the first and last stop)."""
    ss = st.session_state
    from viz import talk

    talk.handle(ss.pop("talk.move", None), here)

    def on_change():
        result = ss.get(f"{prefix}.stepper")
        presses = result.get("presses") if result is not None and hasattr(result, "get") else None
        ss[f"{prefix}.step"], ss[f"{prefix}.playing"], ss[f"{prefix}.seen"], present, move = apply_presses(
            ss[f"{prefix}.step"], n_steps, ss[f"{prefix}.playing"], presses, ss.get(f"{prefix}.seen"))
        if present % 2:
            ss[stepping.PRESENT] = not ss.get(stepping.PRESENT, False)
        if move is not None:
            ss["talk.move"] = move

    step = ss[f"{prefix}.step"]
    on = bool(ss.get("talk.on")) and here is not None  # in a talk the ends lead on to the next and previous stops
    first = step <= 0 and not (on and here > 0) if lead_on is None else step <= 0 and not lead_on
    last = step >= n_steps - 1 and not (on and here < talk.last()) if lead_on is None else step >= n_steps - 1 and not lead_on
    _component(key=f"{prefix}.stepper", data={"playing": bool(ss[f"{prefix}.playing"]), "at_first": first,
                                              "at_last": last},
               on_presses_change=on_change, height=42)
