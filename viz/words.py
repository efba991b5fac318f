"""The speaker's words: one sentence per step, from the step's facts as the kernel computed them.

Each page's step has a facts dict (`attention_facts`, `softmax_facts`, `backward_facts`,
`orders_facts`): numbers read off the trace (4 significant digits) and what they mean (the max
grew, a tile was masked, the program ended). The sentence is a template filled from those facts,
chosen by them, so it cannot say "nothing is rescaled" at a step where α < 1. A scene may carry
its own words in the manifest (`words`: {"step": template}, a step number or "*"): templates name
facts in braces and hold no digits of their own, so every number said is still the kernel's
(tests/test_words.py renders every scene's every step and checks the numbers against the trace).

Not for: where the words are drawn (the pages, presenter view) or the scene's one-line narration
(the manifest's `narration`, shown as the speaker's notes).
"""
import math
import re
import string

import numpy as np

from kernels import steps, traffic


def num(v, digits: int = 4) -> str:
    """A number as said: 4 significant digits, −∞ / ∞ / NaN by name."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "−∞" if v < 0 else "∞"
    return f"{v:.{digits}g}".replace("-", "−")


def said(text: str) -> float:
    """A number as `num` wrote it, back (tests read the words back)."""
    t = text.replace("−", "-")
    return {"-∞": -math.inf, "∞": math.inf, "NaN": math.nan}.get(t) if t in ("-∞", "∞", "NaN") else float(t)


NUMBER = re.compile(r"−?∞|NaN|−?\d+(?:\.\d+)?(?:e[+−-]?\d+)?")


# ---------------------------------------------------------------- FlashAttention forward
def attention_facts(trace, step, row: int) -> dict:
    """The followed row's update at this step, and where the step stands in its program."""
    u = steps.row_update(trace, step, row)
    c = trace.config
    f = {"q": step.q_block, "kv": step.kv_block, "row": u.row, "m_old": num(u.m_old), "m_new": num(u.m_new),
         "rowmax": num(u.rowmax_s), "alpha": num(u.alpha), "l_old": num(u.l_old), "l_new": num(u.l_new),
         "rowsum": num(u.rowsum_p), "masked": u.masked, "keys": len(step.keys), "split": step.split,
         "splits": step.splits, "tile": step.k + 1, "tiles": step.program_steps,
         "kind": ("empty" if u.empty else "first" if step.first or u.m_old == -math.inf else
                  "grew" if u.alpha < 1 else "kept"),
         "end": ("merge" if c.kv_splits > 1 and step.last_of_walk else "split" if c.kv_splits > 1 and step.last
                 else "out" if step.last and c.kv_splits == 1 and (c.loop_order != "fa1" or _last_of_q(trace, step))
                 else ""), "fa1": c.loop_order == "fa1"}
    if f["end"] == "out":
        out = steps.output_row(trace, step.q_block, row)
        f["err"], f["dtype"] = num(out["err"], 2), c.dtype
    if f["end"] == "merge":
        m_s = trace.split_m[:, u.row].astype(np.float64)
        f["merged_m"] = num(np.max(m_s))
        f["err"] = num(np.max(np.abs(trace.out[u.row].astype(np.float64) - trace.ref_out[u.row])), 2)
    return f


def _last_of_q(trace, step) -> bool:
    """FA1: this tile is its q-block's last (O is final after it)."""
    return [s for s in steps.steps(trace, 0) if s.q_block == step.q_block][-1].index == step.index


ATTENTION = {
    "first": "Q{q} meets K{kv} first: row {row}'s max starts at its largest score here, m = {m_new}, and ℓ at "
             "{l_new}; nothing to rescale yet (α = {alpha}).",
    "grew": "K{kv} holds a larger score for row {row}: m rises from {m_old} to {m_new}, so the old ℓ and acc shrink "
            "by α = {alpha} before this tile's p is added: ℓ = {alpha} · {l_old} + {rowsum} = {l_new}.",
    "kept": "K{kv} holds no score above m = {m_old} for row {row} (its largest: {rowmax}): α = {alpha}, nothing is "
            "rescaled; its p adds {rowsum} to ℓ, now {l_new}.",
    "empty": "Every key so far is masked for row {row}: m stays −∞ and ℓ at 0, nothing to add.",
}
ATTENTION_MASKED = " {masked} of the tile's {keys} keys are masked for this row."
ATTENTION_FA1 = " In the FA1 order the one program read Q{q}'s O, m and ℓ from memory for this tile and writes them back."
ATTENTION_SHORT = {"first": "m starts at {m_new}", "grew": "m rises to {m_new}, α = {alpha}",
                   "kept": "m stays at {m_new}, α = {alpha}", "empty": "every key masked so far"}
ATTENTION_END = {  # a program's end says its point; the tile's own update is the short clause
    "out": "K{kv} is Q{q}'s last tile ({short}, ℓ = {l_new}): out = acc / ℓ, divided once and written once; row "
           "{row} is {err} from float64 ({dtype} inputs).",
    "split": "K{kv} is split {split}'s last tile ({short}, ℓ = {l_new}): the split writes its partial (m, ℓ, O = acc / "
             "ℓ) for the merge; the next split starts again from m = −∞.",
    "merge": "K{kv} ends the last split ({short}): the merge takes m = max of the splits' m = {merged_m}, weighs each "
             "split's O by ℓₛ e^(mₛ − m) / ℓ, and row {row} is {err} from float64.",
}


def attention(trace, step, row: int, scene=None) -> str:
    f = attention_facts(trace, step, row)
    own = scene_template(scene, step.index)
    if own:
        return fill(own, f)
    if f["end"]:
        return fill(ATTENTION_END[f["end"]], {**f, "short": fill(ATTENTION_SHORT[f["kind"]], f)})
    text = ATTENTION[f["kind"]]
    if f["masked"] and f["kind"] != "empty":
        text += ATTENTION_MASKED
    if f["fa1"]:
        text += ATTENTION_FA1
    return fill(text, f)


# ---------------------------------------------------------------- softmax
def softmax_facts(trace, k: int) -> dict:
    c = trace.config
    p, ch = steps.softmax_position(c.length, c.block, k)
    lo, hi = ch * c.block, min((ch + 1) * c.block, c.length)
    f = {"pass": p + 1, "chunk": ch + 1, "chunks": c.n_chunks, "lo": lo, "hi": hi - 1, "length": c.length,
         "m_new": num(trace.m[ch]), "d_new": num(trace.d[ch]), "cmax": num(np.max(trace.x[lo:hi])),
         "m_old": num(trace.m[ch - 1]) if ch else "−∞", "d_old": num(trace.d[ch - 1]) if ch else "0",
         "kind": "first" if ch == 0 else "grew" if trace.m[ch] > trace.m[ch - 1] else "kept",
         "last": k == steps.softmax_step_count(c.length, c.block) - 1}
    if ch and trace.m[ch] > trace.m[ch - 1]:
        f["factor"] = num(np.exp(np.float64(trace.m[ch - 1]) - np.float64(trace.m[ch])))
    bad = {v: int((~np.isfinite(trace.out100[i])).sum()) for i, v in enumerate(("naive", "safe", "online"))}
    f.update(naive_bad=bad["naive"], safe_bad=bad["safe"], online_bad=bad["online"],
             online_err=num(np.nanmax(np.abs(trace.out100[2].astype(np.float64) - trace.ref100)), 2))
    return f


SOFTMAX = {
    (1, "first"): "Chunk {chunk} of {chunks}: online softmax starts its running max at the chunk's max, m = {m_new}, "
                  "and d = {d_new}; safe softmax only looks for the max in this pass.",
    (1, "grew"): "Chunk {chunk}: its max {cmax} beats m = {m_old}, so online softmax multiplies d by e^(m_old − m_new) "
                 "= {factor} before adding the chunk: d = {d_new}.",
    (1, "kept"): "Chunk {chunk}: its max {cmax} stays below m = {m_old}; online softmax just adds the chunk's exps: "
                 "d = {d_new}.",
    (2, None): "Pass 2, chunk {chunk}: online softmax already has m and d, so it writes y = e^(x − m) / d here; "
               "safe softmax is still summing d.",
    (3, None): "Pass 3, chunk {chunk}: only safe softmax reads the row a third time, to write y; online finished a "
               "pass earlier.",
}
SOFTMAX_OVERFLOW = (" The row × 100 overflows eˣ in float32: naive softmax returns {naive_bad} NaN or inf of {length}, "
                    "safe {safe_bad} and online {online_bad} (online is {online_err} from float64).")


def softmax(trace, k: int, scene=None) -> str:
    f = softmax_facts(trace, k)
    own = scene_template(scene, k)
    if own:
        return fill(own, f)
    text = SOFTMAX[(f["pass"], f["kind"])] if f["pass"] == 1 else SOFTMAX[(f["pass"], None)]
    if f["last"]:
        text += SOFTMAX_OVERFLOW
    return fill(text, f)


# ---------------------------------------------------------------- backward
def backward_facts(trace, bstep, row: int) -> dict:
    slot = trace.tile_slot(bstep.kv_block)
    f = {"kv": bstep.kv_block, "q": bstep.q_block, "rows_lo": bstep.rows.start, "rows_hi": bstep.rows.stop - 1,
         "step": bstep.index + 1, "steps": bstep.count, "in_tile": row in bstep.rows, "row": row}
    p = trace.p[slot, bstep.q_block]
    ds = trace.ds[slot, bstep.q_block]
    f["ds_max"] = num(np.nanmax(np.abs(ds)))
    f["p_max"] = num(np.nanmax(p))
    f["last"] = bstep.index == bstep.count - 1
    if f["last"]:
        keys = bstep.keys
        f["dk_err"] = num(np.max(np.abs(trace.dk[keys.start:keys.stop].astype(np.float64)
                                        - trace.ref_dk[keys.start:keys.stop])), 2)
    if f["in_tile"]:
        f["D"] = num(trace.delta[row])
    return f


def backward(trace, bstep, row: int, scene=None) -> str:
    f = backward_facts(trace, bstep, row)
    own = scene_template(scene, bstep.index)
    if own:
        return fill(own, f)
    text = ("Q{q}'s rows {rows_lo}–{rows_hi} stream past K{kv}, V{kv}: P is recomputed from the stored log-sum-exp "
            "(largest p here {p_max}); dV and dK grow by Pᵀ dO and dSᵀ Q, with dS = P ∘ (dP − D) at most {ds_max} "
            "in size.")
    if f["in_tile"]:
        text += " Row {row}'s D = rowsum(dO ∘ O) = {D}."
    if f["last"]:
        text += " The program's last q-block: dK{kv} and dV{kv} are written once; dK is {dk_err} from float64."
    return fill(text, f)


# ---------------------------------------------------------------- FA1 against FA2
def orders_facts(t2, t1, k: int, walk2, walk1) -> dict:
    """Step k of both orders' walks over every tile: where each is, and what each moved so far."""
    def moved(trace, walk):
        c = trace.config
        parts = traffic.flash_walk(c.loop_order, [(s.q_block, s.kv_block) for s in walk], c.seq_len, c.head_dim,
                                   c.block_m, c.block_n)[: k + 1]
        return sum(p["loads"] + p["stores"] for p in parts)

    a, b = walk2[k], walk1[k]
    m2, m1 = moved(t2, walk2), moved(t1, walk1)
    return {"step": k + 1, "q2": a.q_block, "kv2": a.kv_block, "q1": b.q_block, "kv1": b.kv_block,
            "moved2": f"{m2:,}", "moved1": f"{m1:,}", "ratio": num(m1 / m2, 3), "more": m1 > m2}


def orders(t2, t1, k: int, walk2, walk1, scene=None) -> str:
    f = orders_facts(t2, t1, k, walk2, walk1)
    own = scene_template(scene, k)
    if own:
        return fill(own, f)
    text = ("FA2 is at Q{q2}K{kv2}, Q{q2} and its acc on chip; FA1 is at Q{q1}K{kv1}, K{kv1} and V{kv1} on chip, "
            "O, m and ℓ read and written back. Moved so far: FA1 {moved1} elements, FA2 {moved2}")
    text += " ({ratio}× as many in FA1)." if f["more"] else "."
    return fill(text, f)


# ---------------------------------------------------------------- ring attention
def ring(trace, step: int, row: int) -> str:
    """Ring step `step` for the followed row: whose shard its rank holds, what the kernel did with
    it, the merged state after the step (and, at the last, how far out is from float64)."""
    from kernels import ring_plan, ring_trace

    view = ring_trace.step_view(trace, step, row)
    c = trace.config
    live, skipped = len(view.live), sum(p.kind == ring_plan.SKIPPED for p in view.parts)
    what = (f"the kernel runs on {live} of its key chunks" + (f" and skips {skipped}, all in row {row}'s future"
                                                                if skipped else "")
            if live else f"every key chunk it holds is in row {row}'s future: nothing to compute")
    text = (f"Ring step {step + 1} of {c.world_size}: rank {view.rank} holds rank {view.src}'s K/V shard; {what}. "
            f"Merged as split-KV merges: M = {num(view.m)}, L = {num(view.l)}")
    if step == c.world_size - 1:  # the last: out against float64 says it all
        err = float(np.max(np.abs(trace.out[row].astype(np.float64) - trace.ref_out[row])))
        return text + f"; every shard seen, out = O, {num(err, 2)} from float64."
    return text + f" (float64 over the {len(view.keys)} keys seen: {num(view.m64)}, {num(view.l64)})."


# ---------------------------------------------------------------- a scene's own words
def scene_template(scene, index: int) -> str | None:
    """The scene's own template for step `index` (0-based), or None: manifest words {"N": ..} (1-based) or "*"."""
    words = getattr(scene, "words", None) or {}
    return words.get(str(index + 1)) or words.get("*")


def fill(template: str, facts: dict) -> str:
    """The template with the facts in; a field a step has not (the end of a program's facts) says so."""
    class Missing(dict):
        def __missing__(self, key):
            return "(not at this step)"
    return string.Formatter().vformat(template, (), Missing(facts))
