"""GPU against interpreter against float64, tile by tile: where the same kernel source computes
different numbers, by how many ulps, and which operation makes the difference.

`compare(a, b)` takes two forward traces of one config (a GPU recording and an interpreter run of
the same source, or any two) and the float64 recomputation of the same walk, and reports per tile
of the kept q-blocks the largest difference of m, l and acc (float32 in the kernel: ulps of
float32) and per q-block of out (ulps of the input dtype). `own_errors(trace)` says where a
trace's differences arise: each operation checked against float64 from the trace's own operands,
so the error it adds by itself: the dot q.k (tensor cores or NumPy), exp2 (the GPU's approximate
instruction or NumPy's), the float32 sum of p, and P V (p rounded to the input dtype, then the
dot's accumulation).

`interpreter_twin(cfg)` runs the interpreter on a config in a child process (a GPU machine keeps its
kernels compiled; the child sets FA_VIZ_FORCE_CPU=1 before triton is imported).

Not for: the page's own equations (truth.py) or drawing (viz/).
"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

from kernels import steps

QUANTITIES = ("m", "l", "acc", "out")
WHERE = {
    "s": "q·kᵀ: the GPU's tensor cores (products of the input dtype, float32 accumulation in the hardware's "
         "order) against NumPy's float32 dot in the interpreter",
    "p": "exp2: the GPU's approximate ex2 instruction against NumPy's exp2",
    "l": "the float32 sum of a tile's p, in each backend's order",
    "cast": "p rounded to the input dtype before P·V (both backends do it): acc against the same sum with p unrounded",
    "acc": "the P·V dot's float32 accumulation (after the cast), in each backend's order",
}


def ulps(a, b, scale, dtype=np.float32) -> np.ndarray:
    """|a - b| in units in the last place of `dtype` at the magnitude `scale` (what the operation
    summed: a difference after cancellation is judged against the terms, not the small result);
    0 where a and b are equal (infinities included), inf where one is NaN or infinite alone."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    spacing = np.spacing(np.abs(np.asarray(scale, dtype=np.float64)).astype(dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        out = np.abs(a - b) / np.maximum(spacing, np.finfo(dtype).smallest_subnormal)
    return np.where(same, 0.0, np.where(np.isfinite(out), out, np.inf))


def reference_state(trace, step) -> dict:
    """The float64 state of the step's q-block rows after the keys its program has folded in (its
    split's keys up to this tile), from the trace's own inputs: m, l, acc, and the magnitudes each
    was computed from (m: sum |q| |k| scale of the row; l: l; acc: sum e^(s - m) |v|)."""
    c = trace.config
    q = trace.q[step.rows.start: step.rows.stop].astype(np.float64)
    keys = range(step.split_keys.start, step.keys.stop) if c.loop_order != "fa1" else range(0, step.keys.stop)
    k = trace.k[keys.start: keys.stop].astype(np.float64)
    v = trace.v[keys.start: keys.stop].astype(np.float64)
    s = q @ k.T * trace.sm_scale
    mag = np.abs(q) @ np.abs(k).T * trace.sm_scale
    if not c.masks().default:  # what the mask lets each row see (causal, a window, documents)
        seen = c.masks().allowed(step.rows.start, step.rows.stop)[:, keys.start:keys.stop]
        s, mag = np.where(seen, s, -np.inf), np.where(seen, mag, 0.0)
    m = s.max(axis=1)
    with np.errstate(invalid="ignore"):
        e = np.where(np.isfinite(m)[:, None], np.exp(s - np.where(np.isfinite(m), m, 0.0)[:, None]), 0.0)
    return {"m": m, "l": e.sum(axis=1), "acc": e @ v,
            "scale": {"m": np.maximum(mag.max(axis=1, initial=0.0), 1e-30), "l": e.sum(axis=1), "acc": e @ np.abs(v)}}


def _state(trace, step, name: str) -> np.ndarray:
    rows = len(step.rows)
    if name == "acc":
        acc = trace.acc_after[trace.tile_slot(step.q_block), step.kv_block, :rows].astype(np.float64)
        if trace.config.loop_order == "fa1":  # FA1 keeps O normalized: acc = O * l
            acc = acc * trace.l[step.q_block, step.kv_block, :rows].astype(np.float64)[:, None]
        return acc
    return getattr(trace, name)[step.q_block, step.kv_block, :rows].astype(np.float64)


def compare(a, b=None) -> list[dict]:
    """One row per tile of the q-blocks both traces kept: the largest ulps of m, l, acc between a
    and b (None: no b), and of each against float64; then one row per q-block for out."""
    c = a.config
    blocks = [int(i) for i in a.tile_q_blocks if b is None or b.tile_slot(int(i)) is not None]
    rows = []
    for i in blocks:
        for step in (s for s in steps.steps(a, i) if s.q_block == i):
            ref = reference_state(a, step)
            row = {"q-block": i, "kv-block": step.kv_block, "split": step.split}
            for name in ("m", "l", "acc"):
                scale = ref["scale"][name] if name != "acc" else ref["scale"]["acc"]
                got_a = _state(a, step, name)
                row[f"{name} a–f64"] = float(np.max(ulps(got_a, ref[name], _wide(scale, got_a)), initial=0.0))
                if b is not None:
                    got_b = _state(b, step, name)
                    row[f"{name} a–b"] = float(np.max(ulps(got_a, got_b, _wide(scale, got_a)), initial=0.0))
                    row[f"{name} b–f64"] = float(np.max(ulps(got_b, ref[name], _wide(scale, got_b)), initial=0.0))
            rows.append(row)
    for i in blocks:
        r = c.rows(i)
        scale = np.abs(a.ref_out[r.start:r.stop]).max(axis=1, keepdims=True) + 1e-30  # the row's largest output
        row = {"q-block": i, "kv-block": "out", "split": None}
        for tag, tr in (("a", a), ("b", b)):
            if tr is not None:
                row[f"out {tag}–f64"] = float(np.max(_ulps_out(tr.out[r.start:r.stop], tr.ref_out[r.start:r.stop],
                                                               scale, c.dtype), initial=0.0))
        if b is not None:
            row["out a–b"] = float(np.max(_ulps_out(a.out[r.start:r.stop], b.out[r.start:r.stop], scale, c.dtype),
                                          initial=0.0))
        rows.append(row)
    return rows


def _wide(scale, like) -> np.ndarray:
    scale = np.asarray(scale)
    return scale if scale.ndim == np.ndim(like) else scale.reshape(scale.shape + (1,) * (np.ndim(like) - scale.ndim))


def _ulps_out(x, y, scale, name: str) -> np.ndarray:
    """ulps of the output's dtype (bfloat16: float32's with 16 bits fewer of mantissa)."""
    if name == "bfloat16":
        return ulps(x, y, scale, np.float32) / 2.0 ** 16
    return ulps(x, y, scale, np.dtype(name))


def own_errors(trace) -> dict:
    """{operation: largest ulps (float32, at the operation's magnitude) the trace's kernel added in
    that operation by itself, over the kept tiles}: s against float64 q.k of the trace's inputs, p
    against exp(s - m) of its own s and m, l against alpha l_old + the float64 sum of its own p, acc
    against alpha acc_old + p V (FA2's order; FA1 rounds O to the input dtype there)."""
    c = trace.config
    worst = dict.fromkeys(WHERE, 0.0)
    for i in (int(b) for b in trace.tile_q_blocks):
        for step in (s for s in steps.steps(trace, i) if s.q_block == i):
            slot = trace.tile_slot(i)
            rows, cols = len(step.rows), len(step.keys)
            q = trace.q[step.rows.start: step.rows.stop].astype(np.float64)
            k = trace.k[step.keys.start: step.keys.stop].astype(np.float64)
            s_k = trace.s[slot, step.kv_block, :rows, :cols].astype(np.float64)
            live = np.isfinite(s_k)
            s64, mag = q @ k.T * trace.sm_scale, np.abs(q) @ np.abs(k).T * trace.sm_scale
            worst["s"] = max(worst["s"], float(np.max(ulps(s_k[live], s64[live], mag[live]), initial=0.0)))
            m = trace.m[i, step.kv_block, :rows].astype(np.float64)[:, None]
            p_k = trace.p[slot, step.kv_block, :rows, :cols].astype(np.float64)
            with np.errstate(invalid="ignore"):
                p64 = np.where(live, np.exp(np.where(live, s_k, 0.0) - np.where(np.isfinite(m), m, 0.0)), 0.0)
            worst["p"] = max(worst["p"], float(np.max(ulps(p_k[live], p64[live], 1.0), initial=0.0)))
            v = trace.v[step.keys.start: step.keys.stop].astype(np.float64)
            for r in range(rows):
                u = steps.row_update(trace, step, r)
                if u.empty:
                    continue
                worst["l"] = max(worst["l"], float(ulps(u.l_new, u.alpha * u.l_old + u.rowsum_p, u.l_new)))
                if c.loop_order != "fa1":
                    size = np.abs(u.alpha * u.acc_old) + np.abs(steps.round_to(u.p, c.dtype)) @ np.abs(v)
                    acc = ulps(u.acc_new, u.alpha * u.acc_old + u.pv, size)
                    worst["acc"] = max(worst["acc"], float(np.max(acc, initial=0.0)))
                    cast = ulps(u.alpha * u.acc_old + u.p @ v, u.alpha * u.acc_old + u.pv, size)
                    worst["cast"] = max(worst["cast"], float(np.max(cast, initial=0.0)))
    return worst


def summary(rows: list[dict]) -> dict:
    """{column: the largest value in it} over compare()'s rows."""
    out = {}
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and math.isfinite(v):
                out[k] = max(out.get(k, 0.0), v)
    return out


def interpreter_twin(cfg, q_blocks=None, timeout: float = 600.0):
    """The same config traced by the interpreter in a child process (its trace, read back through
    trace_io.load). ValueError when the interpreter cannot run it (bfloat16, too many tiles)."""
    from kernels import trace_io

    if cfg.dtype == "bfloat16":
        raise ValueError("the interpreter has no bfloat16 arithmetic: this recording can only be compared with "
                         "float64")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "twin.npz")
        code = ("import sys, json; from kernels import trace_io; from kernels.trace import TraceConfig, capture_trace; "
                "cfg = TraceConfig(**json.loads(sys.argv[1])); qb = json.loads(sys.argv[2]); "
                "trace_io.save(capture_trace(cfg, q_blocks=qb), sys.argv[3])")
        import json

        env = {**os.environ, "FA_VIZ_FORCE_CPU": "1", "TRITON_INTERPRET": "1"}
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run([sys.executable, "-c", code, json.dumps(dict(cfg.fields())),
                               json.dumps(list(q_blocks) if q_blocks is not None else None), path],
                              cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ValueError(f"the interpreter could not trace this config: {last[:300]}")
        return trace_io.load(path, "the interpreter's trace")


def table(a_name: str, b_name: str | None, rows: list[dict]) -> list[dict]:
    """The panel's summary table: one row per quantity, the largest ulps between the two traces and
    of each against float64."""
    s = summary(rows)
    unit = {"m": "float32", "l": "float32", "acc": "float32", "out": "the input dtype"}
    out = []
    for name in QUANTITIES:
        row = {"": name, "ulps of": unit[name], f"{a_name} vs float64": s.get(f"{name} a–f64")}
        if b_name is not None:
            row[f"{b_name} vs float64"] = s.get(f"{name} b–f64")
            row[f"{a_name} vs {b_name}"] = s.get(f"{name} a–b")
        out.append(row)
    return out
