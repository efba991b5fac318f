"""The whole talk as one self-contained HTML file: every chapter's title card and every shipped
scene's every step, as the presenter view draws it (the page's own figures, presenter type), with
the update equations and the kernel's numbers, the chapter's punchline and the speaker's words;
plotly.js embedded once; the app's keys. It plays from file:// with no Python, no server and no
network: `python -m viz.deck talk.html [--dark]`, or the start page's download.

Not for: the app's own pages (viz/pages/) or one q-block's animation (viz/export.py).
"""
import argparse
import html
import json
import sys
import time
from pathlib import Path

import numpy as np

from kernels import results, softmax_trace, steps
from viz import script, talk
from viz.figures import attention as fa
from viz.figures import backward as fb
from viz.figures import benchmarks as fbench
from viz.figures import grid, memory, orders, split
from viz.figures import softmax as fsm
from viz.figures.attention import html_num
from viz.figures.style import big, themed


def _fig(fig, dark: bool) -> dict:
    return json.loads(themed(big(fig), dark).to_json())


def _bytes_html(trace, walk, k) -> str:
    b = memory.bytes_so_far(trace, walk, k)
    return (f"moved so far by Q{walk[k].q_block}'s program: <b>{memory.nice_bytes(b['so_far'])}</b> (derived) · "
            f"standard attention, the same {b['rows']} rows: <b>{memory.nice_bytes(b['standard'])}</b> (model) · whole "
            f"run: {memory.nice_bytes(b['whole_flash'])} counted by the kernel, standard "
            f"{memory.nice_bytes(b['whole_standard'])}")


def _attention(trace, walk, row, k, dark) -> dict:
    step = walk[k]
    c = trace.config
    figs = [_fig(grid.tile_grid_figure(trace, step, height=300, title="tiles of S", legend_right=True, hover=False),
                 dark),
            _fig(fa.running_state_figure(trace, step, row, height=300), dark),
            _fig(fa.alpha_figure(trace, step, row, height=300), dark)]
    eq = fa.update_html(trace, step, row, n_vec=1)
    if c.kv_splits > 1 and step.last_of_walk:
        parts = split.merge_parts(trace, step.rows.start + row)
        live = [s for s, ok in enumerate(parts["live"]) if ok]
        eq = [f"m = max<sub>s</sub> m<sub>s</sub> = max({', '.join(html_num(parts['m_s'][s]) for s in live)}) = "
              f"<b>{html_num(parts['m'])}</b>",
              "ℓ = Σ<sub>s</sub> ℓ<sub>s</sub> e<sup>m<sub>s</sub> − m</sup> = " + " + ".join(
                  f"{html_num(parts['l_s'][s])} e<sup>{html_num(parts['m_s'][s] - parts['m'])}</sup>" for s in live)
              + f" = <b>{html_num(parts['l'])}</b>",
              f"O = Σ<sub>s</sub> (ℓ<sub>s</sub> e<sup>m<sub>s</sub> − m</sup> / ℓ) O<sub>s</sub>: row "
              f"{step.rows.start + row} is {html_num(parts['err_ref'], 2)} from float64"]
        side = _fig(split.partials_figure(trace, step.rows.start + row, height=230, short=True), dark)
    else:
        if c.kv_splits == 1 and step.last and (c.loop_order != "fa1" or step.last_of_walk):
            o = steps.output_row(trace, step.q_block, row)
            eq = eq[:1] + [f"out = acc / ℓ = [{html_num(o['acc_over_l'][0] * o['l'])}, …] / {html_num(o['l'])} = "
                           f"[{html_num(o['acc_over_l'][0])}, …] · kernel's out [{html_num(o['out'][0])}, …] · float64 "
                           f"[{html_num(o['ref'][0])}, …], max |Δ| = {html_num(o['err'], 2)}"]
        side = _fig(fa.accumulator_figure(trace, step, row, height=220), dark)
    label = fa.step_label(trace, step, short=True)
    return {"figs": figs, "side": side, "eq": eq, "note": _bytes_html(trace, walk, k), "label": label}


def _softmax(trace, k, dark) -> dict:
    c = trace.config
    p, ch = steps.softmax_position(c.length, c.block, k)
    counts = {v: trace.variant_counts(v) for v in softmax_trace.VARIANTS}
    figs = [_fig(fsm.passes_figure(c.length, c.block, k, counts=counts, height=340), dark),
            _fig(fsm.online_state_figure(trace.x, trace.m, trace.d, c.block, ch if p == 0 else None, trace.ref_m,
                                         trace.ref_d, height=340, done=ch if p == 0 else None), dark)]
    idx = np.argsort(trace.x100)[::-1][:6]
    rows = [(v, trace.out100[i]) for i, v in enumerate(softmax_trace.OVERFLOW_VARIANTS)] + [("float64", trace.ref100)]
    table = "<table class='ov'><tr><th>row × 100, float32</th>" + "".join(
        f"<th>x = {html_num(trace.x100[i])}</th>" for i in idx) + "</tr>" + "".join(
        f"<tr><th>{name}</th>" + "".join(f"<td class='{'' if np.isfinite(y[i]) else 'bad'}'>{html_num(y[i], 3)}</td>"
                                        for i in idx) + "</tr>" for name, y in rows) + "</table>"
    label = (f"<b>Step {k + 1} of {steps.softmax_step_count(c.length, c.block)}</b> · pass {p + 1}, chunk {ch + 1} of "
             f"{c.n_chunks}")
    return {"figs": figs, "eq": [], "note": table, "label": label}


def _backward(trace, walk, row, k, dark) -> dict:
    b = walk[k]
    figs = [_fig(grid.bwd_tile_grid_figure(trace, b, height=300, legend_right=True), dark),
            _fig(fb.bwd_tile_heatmap_figure(trace, b, "ds", row, height=300), dark),
            _fig(fb.bwd_acc_figure(trace, b, height=300), dark)]
    label = (f"<b>Step {b.index + 1} of {b.count}</b> · K<sub>{b.kv_block}</sub>, V<sub>{b.kv_block}</sub> on chip · "
             f"Q<sub>{b.q_block}</sub>, dO<sub>{b.q_block}</sub> stream through")
    return {"figs": figs, "eq": [], "note": "", "label": label}


def _orders(t2, t1, w2, w1, k, dark) -> dict:
    figs = [_fig(orders.order_grid_figure(t2, k, height=330), dark), _fig(orders.order_grid_figure(t1, k, height=330),
                                                                          dark)]
    a, b = w2[k], w1[k]
    label = (f"<b>Step {k + 1} of {len(w2)}</b> · FA2 at Q<sub>{a.q_block}</sub>K<sub>{a.kv_block}</sub> (left), FA1 at "
             f"Q<sub>{b.q_block}</sub>K<sub>{b.kv_block}</sub> (right)")
    return {"figs": figs, "eq": [orders.ON_CHIP["fa2"], orders.ON_CHIP["fa1"]], "note": "", "label": label}


def _ring(trace, row, k, dark) -> dict:
    from kernels import ring_trace
    from viz.figures import ring as fr

    view = ring_trace.step_view(trace, k, row)
    figs = [_fig(fr.lanes_figure(trace, k, height=300), dark), _fig(fr.pairs_figure(trace, k, row, height=300), dark)]
    c = trace.config
    label = (f"<b>Step {k + 1} of {c.world_size}</b> · rank {view.rank} (row {row}) holds rank {view.src}'s K/V shard")
    eq = [f"M = max(m<sub>old</sub>, m<sub>s</sub>) = <b>{html_num(view.m)}</b> · L = <b>{html_num(view.l)}</b> "
          f"(float64 over the {len(view.keys)} keys seen: {html_num(view.m64)}, {html_num(view.l64)})"]
    return {"figs": figs, "eq": eq, "note": "", "label": label}


def slides(loader: script.Loader, dark: bool = False) -> list[dict]:
    """Every stop's every step: {"chapter", "title", "label", "figs" (plotly JSON), "eq" (HTML lines),
    "note" (HTML), "words", "kind"}."""
    out = []
    for index, stop in enumerate(talk.STOPS):
        s = script.script(index, loader)
        for k in range(s.steps):
            base = {"chapter": stop.chapter, "title": html.escape(s.title), "words": html.escape(s.say(k)),
                    "kind": s.kind, "figs": [], "side": None, "eq": [], "note": "", "label": ""}
            if s.kind == "card":
                _, point, _, names = talk.STORY[stop.chapter]
                titles = [loader.scene(n).title for n in names if loader.scene(n)] or ["the Benchmarks page"]
                base["note"] = html.escape(point)
                base["words"] = html.escape("In this chapter: " + " · ".join(titles))
            elif s.kind == "attention":
                base.update(_attention(*s.data, k, dark))
            elif s.kind == "softmax":
                base.update(_softmax(*s.data, k, dark))
            elif s.kind == "backward":
                base.update(_backward(*s.data, k, dark))
            elif s.kind == "orders":
                base.update(_orders(*s.data, k, dark))
            elif s.kind == "ring":
                base.update(_ring(*s.data, k, dark))
            elif s.kind == "bench":
                recorded = results.recorded()
                runs = fbench.ordered_runs(recorded)
                if runs and recorded[runs[0]].get("attention"):
                    fig = fbench.bench_attention_figure(recorded[runs[0]])
                    base["figs"] = [_fig(fig.update_layout(height=480), dark)]
            out.append(base)
    return out


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>FlashAttention, tile by tile: the talk</title>
<style>
body {margin: 0; font-family: 'Source Sans Pro', Inter, Arial, sans-serif; background: BG; color: FG;}
#deck {width: 100vw; height: 100vh; box-sizing: border-box; padding: 14px 22px; display: flex; flex-direction: column;}
#top {display: flex; justify-content: space-between; font-size: 20px; gap: 1rem;}
#top .where {opacity: .7;}
#figs {display: grid; gap: 8px;}
#figs > div, #row2 > div {min-width: 0;}
#row2 {display: flex; gap: 12px; align-items: flex-start;} #row2 #eq {flex: 1.55 1 0;} #row2 #side {flex: 1 1 0;}
#eq {font-size: 24px; line-height: 1.5; margin: 4px 0;}
#note {font-size: 18px; opacity: .85;}
#words {font-size: 24px; line-height: 1.3; border-left: 4px solid #E8710A; padding-left: .7rem; margin-top: 6px;}
.card #figs, .card #row2 {display: none;} .card #note {font-size: 34px; opacity: 1; margin-top: 12vh; max-width: 62rem;}
.card #ctitle {display: block;} #ctitle {display: none; font-size: 58px; font-weight: 700;}
table.ov {border-collapse: collapse; font-size: 18px;} table.ov td, table.ov th {padding: 1px 10px; text-align: right;}
table.ov td.bad {color: #C62828; font-weight: 700;}
#help {position: fixed; right: 14px; bottom: 8px; font-size: 13px; opacity: .55;}
</style></head><body><div id="deck"><div id="top"><div id="label"></div><div class="where" id="where"></div></div>
<div id="ctitle"></div><div id="figs"></div><div id="row2"><div id="eq"></div><div id="side"></div></div>
<div id="note"></div><div id="words"></div></div>
<div id="help">→ / PgDn / Space next · ← / PgUp back · Home / End · ] / [ chapters · recorded: RECORDED</div>
<script>PLOTLY</script>
<script type="application/json" id="slides">SLIDES</script>
<script>
const S = JSON.parse(document.getElementById('slides').textContent);
const LAST = Math.max(...S.map(x => x.chapter));
let at = Math.max(0, Math.min(S.length - 1, parseInt((location.hash || '#1').slice(1)) - 1 || 0));
const COLS = {attention: '1.25fr 1.5fr 1fr', softmax: '1.3fr 1fr', backward: '1.25fr 1fr 1.45fr', orders: '1fr 1fr',
              ring: '1.2fr 1fr',
              bench: '1fr', card: '1fr', missing: '1fr'};
function show() {
  const s = S[at];
  document.body.className = s.kind === 'card' ? 'card' : '';
  document.getElementById('deck').className = s.kind === 'card' ? 'card' : '';
  document.getElementById('label').innerHTML = s.kind === 'card' ? 'Chapter ' + (s.chapter + 1) + ' of ' + (LAST + 1) : s.label;
  document.getElementById('where').innerHTML = s.title + ' · ' + (at + 1) + ' / ' + S.length;
  document.getElementById('ctitle').innerHTML = s.title.replace(/^\\d+ · /, '');
  document.getElementById('eq').innerHTML = s.eq.join('<br>');
  document.getElementById('note').innerHTML = s.note;
  document.getElementById('words').innerHTML = s.words;
  const box = document.getElementById('figs'), side = document.getElementById('side');
  box.style.gridTemplateColumns = COLS[s.kind] || '1fr';
  box.innerHTML = ''; side.innerHTML = ''; side.style.display = s.side ? '' : 'none';
  const opts = {displaylogo: false, responsive: true};
  const plot = (where, f) => {
    const d = document.createElement('div');
    where.appendChild(d);
    Plotly.newPlot(d, f.data, f.layout, opts);
  };
  s.figs.forEach((f) => plot(box, f));
  if (s.side) plot(side, s.side);
  history.replaceState(null, '', '#' + (at + 1));
}
function go(k) { at = Math.max(0, Math.min(S.length - 1, k)); show(); }
function chapter(d) {
  const c = Math.max(0, Math.min(LAST, S[at].chapter + d));
  go(S.findIndex(s => s.chapter === c));
}
window.addEventListener('keydown', (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const k = e.key;
  if ((k === 'ArrowRight' && e.shiftKey) || k === ']') chapter(1);
  else if ((k === 'ArrowLeft' && e.shiftKey) || k === '[') chapter(-1);
  else if (k === 'ArrowRight' || k === 'PageDown' || k === ' ') go(at + 1);
  else if (k === 'ArrowLeft' || k === 'PageUp') go(at - 1);
  else if (k === 'Home') go(0);
  else if (k === 'End') go(S.length - 1);
  else return;
  e.preventDefault();
}, true);
show();
</script></body></html>"""


def build(loader: script.Loader | None = None, dark: bool = False) -> str:
    """The deck's HTML (about 15-25 MB: plotly.js once, then every slide's figures)."""
    import plotly.offline

    from kernels import scenes

    loader = loader or script.file_loader()
    _, recorded = scenes.read_manifest()
    data = json.dumps(slides(loader, dark), separators=(",", ":")).replace("</", "<\\/")
    where = html.escape(f"{recorded.get('gpu', '?')}, {str(recorded.get('date', ''))[:10]}")
    page = PAGE.replace("BG", "#0e1117" if dark else "#ffffff").replace("FG", "#e6e8eb" if dark else "#1f2430")
    head, _, rest = page.replace("RECORDED", where).partition("PLOTLY")
    middle, _, tail = rest.partition("SLIDES")
    return head + plotly.offline.get_plotlyjs().replace("</script", "<\\/script") + middle + data + tail


def cached(dark: bool) -> bytes:
    """The deck for the start page's download, built once per server and theme (about 30 s)."""
    import streamlit as st

    @st.cache_resource(max_entries=2, show_spinner=False)
    def build_once(dark: bool) -> bytes:
        return build(script.app_loader(), dark=dark).encode()  # replays only: no kernel lock

    return build_once(dark)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m viz.deck", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the HTML file to write")
    ap.add_argument("--dark", action="store_true", help="the dark projector theme")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    text = build(dark=args.dark)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(text.encode()) / 1e6:.1f} MB in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
