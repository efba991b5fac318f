"""Recorded benchmark results (bench/results/*.json) and the ratios read off them.

`python -m bench` writes the files; the Benchmarks page and the CLI's table both read them
through here, so a ratio is computed in one place. Plain JSON and arithmetic: no GPU needed.

Not for: timing anything (bench/).
"""
import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "bench" / "results"
PARTS = ("attention", "backward", "softmax", "masks")


def recorded(results_dir: Path = RESULTS_DIR) -> dict[str, dict]:
    """{file name: result} of every benchmark JSON under results_dir, newest name first."""
    out = {}
    for path in sorted(results_dir.glob("*.json"), reverse=True):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and "env" in result and any(k in result for k in PARTS):
            out[path.name] = result
    return out


def _ratio(a, b):
    return a / b if (a and b) else None


def vs_ours(rows: list[dict], kind: str = "attention") -> list[dict]:
    """ours / each other implementation in TFLOP/s, per (head_dim, causal, seq_len); where the run
    also replayed each call from a CUDA graph (graph_tflops: GPU time alone), gpu_vs_NAME too."""
    by_key = {}
    for r in rows:
        by_key.setdefault((r["head_dim"], r["causal"], r["seq_len"]), {})[r["impl"]] = r
    out = []
    for (d, causal, n), impls in sorted(by_key.items()):
        ours = impls.get("ours", {})
        row = {"kind": kind, "head_dim": d, "causal": causal, "seq_len": n, "ours_tflops": ours.get("tflops"),
               "config": ours.get("config")}
        for name, r in impls.items():
            if name != "ours":
                row[f"vs_{name}"] = _ratio(ours.get("tflops"), r.get("tflops"))
        if any(r.get("graph_tflops") for r in impls.values()):
            for name, r in impls.items():
                if name != "ours":
                    row[f"gpu_vs_{name}"] = _ratio(ours.get("graph_tflops"), r.get("graph_tflops"))
        out.append(row)
    return out


def softmax_ratios(rows: list[dict], copy_tbps: float | None) -> list[dict]:
    """Per (rows, cols, dtype): the fastest of single-pass (where a row fits), split-row and online
    against torch.softmax and the copies, and the variants against each other."""
    sm = {}
    for r in rows:
        sm.setdefault((r["rows"], r["cols"], r["dtype"]), {})[r["impl"]] = r["GBps"]
    out = []
    for (r, c, dtype), impls in sorted(sm.items()):
        best_name = max((v for v in ("single_pass", "split_row", "online") if impls.get(v)), key=impls.get)
        best = impls[best_name]
        out.append({
            "kind": "softmax", "rows": r, "cols": c, "dtype": dtype, "best": best_name,
            "best_vs_torch": _ratio(best, impls.get("torch")),
            "best_vs_copy": _ratio(best, copy_tbps * 1000 if copy_tbps else None),
            "best_vs_copy_same_size": _ratio(best, impls.get("copy")),
            "online_vs_safe": _ratio(impls.get("online"), impls.get("safe")),
            "naive_vs_online": _ratio(impls.get("naive"), impls.get("online")),
        })
    return out


def mask_ratios(rows: list[dict]) -> list[dict]:
    """Per masks case (case, seq_len, q_len): ours' ms, TFLOP/s over the kept pairs and K/V GB/s,
    and each other implementation's time over ours (above 1: ours is faster), measured in the same
    interleaved rounds."""
    by_key = {}
    for r in rows:
        by_key.setdefault((r["case"], r["seq_len"], r["q_len"]), {})[r["impl"]] = r
    out = []
    for (case, n, q_len), impls in sorted(by_key.items()):
        ours = impls.get("ours", {})
        row = {"kind": "masks", "case": case, "seq_len": n, "q_len": q_len, "ours_ms": ours.get("ms"),
               "ours_tflops": ours.get("tflops"), "ours_kv_GBps": ours.get("kv_GBps"), "config": ours.get("config")}
        for name, r in impls.items():
            if name != "ours":
                row[f"vs_{name}"] = _ratio(r.get("ms"), ours.get("ms"))
        out.append(row)
    return out


def ratios(result: dict) -> list[dict]:
    """ours / each SDPA backend (forward; forward + backward); softmax variant ratios; the masks cases."""
    return (vs_ours(result.get("attention", []), "attention") + vs_ours(result.get("backward", []), "backward")
            + softmax_ratios(result.get("softmax", []), result.get("ceilings", {}).get("copy_TBps"))
            + mask_ratios(result.get("masks", [])))


def dram_bytes(results_dir: Path = RESULTS_DIR) -> dict | None:
    """The newest DRAM-bytes measurement (experiments/jobs/dram_bytes.py under ncu), or None."""
    paths = sorted(results_dir.glob("*-dram-bytes.json"), reverse=True)
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("cases"), list) and "env" in data:
            return data
    return None


def host_bound(result: dict, kind: str = "backward") -> dict | None:
    """The case where ours' eager call stands furthest above its CUDA-graph replay (the GPU's time
    alone): {"seq_len", "head_dim", "causal", "ms", "graph_ms"}; None when the run has no replays."""
    ours = [r for r in result.get(kind, []) if r.get("impl") == "ours" and r.get("ms") and r.get("graph_ms")]
    if not ours:
        return None
    r = max(ours, key=lambda r: r["ms"] / r["graph_ms"])
    return {k: r[k] for k in ("seq_len", "head_dim", "causal", "ms", "graph_ms")}


def measured_bytes(cfg) -> dict | None:
    """{method id: DRAM bytes read + written} that Nsight Compute measured on a GPU for exactly this
    config's shape (dram_bytes()), with the GPU's name; None when none matches: the numbers belong to
    the shape the audience is looking at, or not at all. FA2's measurement is the unsplit kernel's,
    FA1's its own; the softmax rows only need the sequence length."""
    data = dram_bytes()
    if data is None or (hasattr(cfg, "masks") and not cfg.masks().plain_or_causal):
        return None  # the measurements are of plain and causal attention
    found = {}
    for case in data["cases"]:
        if case.get("seq_len") != cfg.seq_len:
            continue
        what = case.get("what", "")
        if what.startswith("softmax_"):
            found[what.removeprefix("softmax_")] = case
        elif (case.get("head_dim"), case.get("block_m"), case.get("block_n"), case.get("causal"), case.get("dtype")) == (
                cfg.head_dim, cfg.block_m, cfg.block_n, cfg.causal, cfg.dtype):
            if what == "standard" or (what == "fa2" and cfg.loop_order == "fa2" and cfg.kv_splits == 1) or (
                    what == "fa1" and cfg.loop_order == "fa1"):
                found["flash" if what in ("fa1", "fa2") else "standard"] = case
    if "flash" not in found:
        return None
    return {"gpu": data["env"].get("gpu", "a GPU"), "date": str(data["env"].get("date", ""))[:10],
            "bytes": {k: int(c["dram_read_bytes"] + c["dram_write_bytes"]) for k, c in found.items()},
            "dtype": {k: c.get("dtype") for k, c in found.items()}}


SMALL_CALL_TIMES = ("ours_gpu_ms", "ours_host_us", "ungraphed_gpu_ms", "unplanned_gpu_ms", "operators_gpu_ms",
                    "flash_gpu_ms", "flash_host_us")


def small_calls(results_dir: Path = RESULTS_DIR) -> dict | None:
    """The newest small-calls run (experiments/scripts/host_time.py: eager forward + backward per
    route against SDPA FLASH), or None. A file missing any figure a row needs is passed over."""
    for path in sorted(results_dir.glob("*-small-calls.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
            rows = data["rows"]
            ok = (isinstance(data.get("gpu"), str) and isinstance(data.get("date"), str)
                  and isinstance(data.get("graphs_limit"), int) and rows
                  and all(isinstance(r.get(k), (int, float)) and r[k] > 0 for r in rows
                          for k in (*SMALL_CALL_TIMES, "n", "head_dim", "batch", "heads")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if ok:
            return data
    return None


def small_call_ratios(data: dict) -> list[dict]:
    """Per case: FLASH's time per call over each of our routes' (above 1: ours is faster), and
    whether the library takes the graph route at that size (batch * heads * n * n within the
    run's graphs_limit) or the run forced graphs on above it to show what they cost there."""
    out = []
    for r in data["rows"]:
        flash = r["flash_gpu_ms"]
        out.append({"n": r["n"], "head_dim": r["head_dim"], "causal": r["causal"],
                    "graphed_by_default": r["batch"] * r["heads"] * r["n"] * r["n"] <= data["graphs_limit"],
                    "ours_ms": r["ours_gpu_ms"], "ours_host_us": r["ours_host_us"], "flash_ms": flash,
                    "flash_host_us": r["flash_host_us"],
                    **{f"{route}_vs_flash": flash / r[f"{route}_gpu_ms"]
                       for route in ("ours", "ungraphed", "unplanned", "operators")}})
    return out
