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
    root._counts = { next: 0, prev: 0, first: 0, last: 0, toggle: 0, present: 0,
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
                   End: 'last', ' ': 'toggle', p: 'present', P: 'present' };
    root._onKey = (e) => {
      if (!root.isConnected) {  // a stepper taken off the page: its listener goes too
        document.removeEventListener('keydown', root._onKey);
        return;
      }
      const t = e.target;
      if (e.altKey || e.ctrlKey || e.metaKey || e.repeat && e.key === ' ') return;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable
                || (t.getAttribute && t.getAttribute('role') === 'slider'))) return;
      const a = keys[e.key];
      if (!a) return;
      e.preventDefault();
      root._counts[a]++;
      root._send();
    };
    document.addEventListener('keydown', root._onKey);
  }
  return () => {  // unmounted: take the listener with it
    if (root._onKey) document.removeEventListener('keydown', root._onKey);
    root._onKey = null;
  };
}
"""
_component = st.components.v2.component("fa_viz_stepper", html=HTML, css=CSS, js=JS)
ACTIONS = ("next", "prev", "first", "last", "toggle", "present")


def apply_presses(step: int, n_steps: int, playing: bool, presses: dict | None, seen: dict | None):
    """(step, playing, seen, presenter toggles) after the presses counted since `seen`; a new nonce
    (the component was mounted again, its counters start over) is a fresh start. Steps are
    0-based, clamped."""
    if not presses or not isinstance(presses, dict):
        return step, playing, seen, 0
    nonce = presses.get("nonce")
    if not seen or seen.get("nonce") != nonce:
        seen = {"nonce": nonce, **dict.fromkeys(ACTIONS, 0)}
    delta = {a: max(0, int(presses.get(a, 0)) - int(seen.get(a, 0))) for a in ACTIONS}
    if delta["first"]:
        step = 0
    if delta["last"]:
        step = n_steps - 1
    step = min(max(0, step + delta["next"] - delta["prev"]), max(0, n_steps - 1))
    if delta["next"] or delta["prev"] or delta["first"] or delta["last"]:
        playing = False
    if delta["toggle"] % 2:
        playing = not playing
        if playing and step >= n_steps - 1:
            step = 0  # play again from the start
    return step, playing, {"nonce": nonce, **{a: int(presses.get(a, 0)) for a in ACTIONS}}, delta["present"]


def stepper(prefix: str, n_steps: int) -> None:
    """The buttons and keys for session_state[f"{prefix}.step"] (0-based) and f"{prefix}.playing"."""
    ss = st.session_state

    def on_change():
        result = ss.get(f"{prefix}.stepper")
        presses = result.get("presses") if result is not None and hasattr(result, "get") else None
        ss[f"{prefix}.step"], ss[f"{prefix}.playing"], ss[f"{prefix}.seen"], present = apply_presses(
            ss[f"{prefix}.step"], n_steps, ss[f"{prefix}.playing"], presses, ss.get(f"{prefix}.seen"))
        if present % 2:
            ss[stepping.PRESENT] = not ss.get(stepping.PRESENT, False)

    step = ss[f"{prefix}.step"]
    _component(key=f"{prefix}.stepper", data={"playing": bool(ss[f"{prefix}.playing"]), "at_first": step <= 0,
                                              "at_last": step >= n_steps - 1},
               on_presses_change=on_change, height=42)
