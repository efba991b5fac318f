"""Lying trace files: well-formed (every member has the contract's dtype and shape, every value
is finite where the kernel writes numbers) but not what a kernel computed from the file's own
inputs. Each one changes a few numbers the way a careless or hostile visitor might, so that a
page would draw them as "the kernel's numbers" if the loader only checked shapes.

`lies(files)` -> [(name, bytes)], from good files {kind: bytes} (forward, fa1, split, backward,
softmax, and ring when given), each a lie that kernels/trace_verify.py (ring_verify.py) must refuse.
"""
import io

import numpy as np

from tests.trace_corpus import members, npz


def _edit(base: dict, **changes) -> bytes:
    out = dict(base)
    out.update(changes)
    return npz(out)


def _nudge(a: np.ndarray, rel: float, where: str = "one", rng=None) -> np.ndarray:
    """a with its finite entries changed by `rel` (relative, at least 1e-3 absolute): one entry, a
    row, or all of them; NaN and -inf stay as they are."""
    b = a.copy()
    live = np.argwhere(np.isfinite(b))
    if not live.size:
        return b
    if where == "one":
        pick = [tuple(live[len(live) // 2])]
    elif where == "first":
        pick = [tuple(live[0])]
    elif where == "last":
        pick = [tuple(live[-1])]
    else:
        pick = [tuple(x) for x in live]
    for idx in pick:
        v = b[idx]
        b[idx] = v + max(abs(v) * rel, 1e-3) * (1 if (rng is None or rng.random() < 0.5) else -1)
    return b.astype(a.dtype)


def _forward_lies(tag: str, f: dict) -> list:
    rng = np.random.default_rng(7)
    out = []
    for member in ("q", "k", "v", "out", "lse", "m", "l", "alpha", "s", "p", "acc_before", "acc_after"):
        if member not in f:
            continue
        for where, rel in (("one", 0.01), ("first", 0.05), ("last", 1e-3), ("all", 0.02)):
            out.append((f"{tag}-{member}-{where}-{rel}", _edit(f, **{member: _nudge(f[member], rel, where, rng)})))
    # the same noise in out and ref_out (the reference is recomputed, not read)
    noise = (f["out"] + rng.standard_normal(f["out"].shape).astype(np.float32)).astype(np.float32)
    out.append((f"{tag}-out-and-ref-the-same-noise", _edit(f, out=noise, ref_out=noise.astype(np.float64))))
    # a huge running max with a state and tiles shifted to match it
    big = f["m"] + np.float32(1e8)
    out.append((f"{tag}-m-1e8", _edit(f, m=big.astype(np.float32))))
    out.append((f"{tag}-m-and-s-1e8", _edit(f, m=big.astype(np.float32), s=(f["s"] + np.float32(1e8)).astype(np.float32))))
    out.append((f"{tag}-alpha-7", _edit(f, alpha=np.where(np.isnan(f["alpha"]), np.nan, 7.0).astype(np.float32))))
    out.append((f"{tag}-l-minus-50", _edit(f, l=np.where(np.isnan(f["l"]), np.nan, -50.0).astype(np.float32))))
    out.append((f"{tag}-p-100", _edit(f, p=np.where(np.isnan(f["p"]), np.nan, 100.0).astype(np.float32))))
    out.append((f"{tag}-acc-swapped", _edit(f, acc_after=f["acc_before"], acc_before=f["acc_after"])))
    out.append((f"{tag}-q-rows-shuffled", _edit(f, q=f["q"][::-1].copy())))
    out.append((f"{tag}-seed-changed", _edit(f, config_seed=np.asarray(int(f["config_seed"]) + 1))))
    out.append((f"{tag}-scenario-changed", _edit(f, config_scenario=np.asarray("large"))))
    for key in [k for k in f if k.startswith("counter_")][:4]:
        for value in (0, int(f[key]) + 1, 2**62 - 1):
            out.append((f"{tag}-{key}-{value}", _edit(f, **{key: np.asarray(value, dtype=np.int64)})))
    return out


def _split_lies(s: dict) -> list:
    out = []
    for member in ("split_m", "split_l", "split_out"):
        out.append((f"split-{member}-nudged", _edit(s, **{member: _nudge(s[member], 0.02, "one")})))
        out.append((f"split-{member}-all", _edit(s, **{member: _nudge(s[member], 0.02, "all")})))
    out.append(("split-no-live-part", _edit(s, split_m=np.full_like(s["split_m"], -np.inf),
                                            split_l=np.zeros_like(s["split_l"]))))
    return out


def _backward_lies(b: dict) -> list:
    rng = np.random.default_rng(11)
    out = []
    for member in ("q", "k", "v", "do", "out", "lse", "delta", "dq", "dk", "dv", "p", "dp", "ds", "dk_acc", "dv_acc"):
        for where, rel in (("one", 0.02), ("all", 0.01)):
            out.append((f"bwd-{member}-{where}", _edit(b, **{member: _nudge(b[member], rel, where, rng)})))
    out.append(("bwd-do-seed-changed", _edit(b, do_seed=np.asarray(int(b["do_seed"]) + 1))))
    out.append(("bwd-counter-0", _edit(b, counter_dq_dq_stores=np.asarray(0, dtype=np.int64))))
    return out


def _softmax_lies(x: dict) -> list:
    out = []
    for member in ("x", "m", "d", "y", "split_m", "split_l", "x100", "out100", "x16", "out16", "out16_fp32"):
        out.append((f"softmax-{member}-nudged", _edit(x, **{member: _nudge(x[member], 0.02, "one")})))
    out.append(("softmax-counter-0", _edit(x, counter_online_loads=np.asarray(0, dtype=np.int64))))
    out.append(("softmax-seed-changed", _edit(x, config_seed=np.asarray(int(x["config_seed"]) + 1))))
    return out


def _ring_lies(r: dict) -> list:
    """A ring trace (kernels/ring_trace.py) changed where a careless or hostile visitor would: its
    numbers, its plan (whose shard, which pairs, the counters), its config, its text."""
    rng = np.random.default_rng(13)
    out = []
    for member in ("q", "k", "v", "out", "lse", "part_m", "part_l", "merged_m", "merged_l", "part_o", "merged_o"):
        for where, rel in (("one", 0.01), ("last", 2e-3), ("all", 0.02)):
            out.append((f"ring-{member}-{where}-{rel}", _edit(r, **{member: _nudge(r[member], rel, where, rng)})))
    skip = r["part_m"] == -np.inf
    out.append(("ring-skipped-pair-computed", _edit(r, part_m=np.where(skip, 0.0, r["part_m"]).astype(np.float32),
                                                    part_l=np.where(skip, 1.0, r["part_l"]).astype(np.float32))))
    out.append(("ring-computed-pair-skipped", _edit(r, part_m=np.where(skip, r["part_m"], -np.inf).astype(np.float32))))
    part_o = r["part_o"].copy()
    part_o[part_o == 0] = 0.5
    out.append(("ring-skipped-o-nonzero", _edit(r, part_o=part_o)))
    out.append(("ring-held-rolled", _edit(r, held=np.roll(r["held"], 1, axis=1))))
    out.append(("ring-ranks-swapped", _edit(r, **{m: r[m][[1, 0, *range(2, len(r[m]))]] for m in (
        "part_m", "part_l", "merged_m", "merged_l")})))
    out.append(("ring-kinds-no-skip", _edit(r, kinds=np.where(r["kinds"] == 0, 1, r["kinds"]).astype(np.int32))))
    out.append(("ring-k-loads-plus-one", _edit(r, k_loads=r["k_loads"] + 1)))
    out.append(("ring-nothing-sent", _edit(r, sent_bytes=np.zeros_like(r["sent_bytes"]))))
    out.append(("ring-rows-reversed", _edit(r, rows=r["rows"][::-1].copy())))
    out.append(("ring-seconds-negative", _edit(r, compute_seconds=-r["compute_seconds"])))
    out.append(("ring-wait-nan", _edit(r, wait_seconds=np.full_like(r["wait_seconds"], np.nan))))
    out.append(("ring-merged-shifted", _edit(r, merged_m=(r["merged_m"] + np.float32(1e8)).astype(np.float32),
                                             part_m=(r["part_m"] + np.float32(1e8)).astype(np.float32))))
    noise = (r["out"] + rng.standard_normal(r["out"].shape).astype(np.float32)).astype(np.float32)
    out.append(("ring-out-and-ref-the-same-noise", _edit(r, out=noise, ref_out=noise.astype(np.float64))))
    out.append(("ring-causal-flipped", _edit(r, config_causal=np.asarray(not bool(r["config_causal"])))))
    out.append(("ring-seed-changed", _edit(r, config_seed=np.asarray(int(r["config_seed"]) + 1))))
    out.append(("ring-scenario-changed", _edit(r, config_scenario=np.asarray("large"))))
    out.append(("ring-world-size-2", _edit(r, config_world_size=np.asarray(2, dtype=np.int64))))
    out.append(("ring-layout-flipped", _edit(r, config_layout=np.asarray("contiguous"))))
    out.append(("ring-seq-len-does-not-fit", _edit(r, config_seq_len=np.asarray(int(r["config_seq_len"]) + 1))))
    out.append(("ring-sm-scale", _edit(r, sm_scale=np.asarray(float(r["sm_scale"]) * 1.1))))
    out.append(("ring-transport-not-text", _edit(r, transport=np.asarray("gloo\x00\x1b[31m"))))
    out.append(("ring-rows-too-many", _edit(r, rows=np.arange(int(r["config_seq_len"]) + 1, dtype=np.int64))))
    out.append(("ring-part-m-float64", _edit(r, part_m=r["part_m"].astype(np.float64))))
    out.append(("ring-missing-kinds", npz({k: v for k, v in r.items() if k != "kinds"})))
    return out


def lies(files: dict) -> list[tuple[str, bytes]]:
    out = []
    for tag in ("forward", "fa1"):
        out += _forward_lies(tag, members(files[tag]))
    out += _split_lies(members(files["split"]))
    out += _backward_lies(members(files["backward"]))
    out += _softmax_lies(members(files["softmax"]))
    if "ring" in files:
        out += _ring_lies(members(files["ring"]))
    return out


def as_file(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
