"""`python -m kernels.record scenes/`: record the shipped scenes on a GPU, check them, write the manifest.

Each scene is captured by the kernels (compiled on the GPU), checked against its float64
reference (a scene whose kernel output strays beyond its dtype's bound is not written), saved in
the trace format, and listed in scenes/manifest.json with what it teaches and what recorded it.
Runs in the interpreter too (`--allow-cpu`, for tests), but the scenes that ship come from a GPU.

Not for: loading scenes (kernels/scenes.py).
"""
import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np

from kernels import backend, trace_io
from kernels.scenes import Scene
from kernels.softmax_trace import SoftmaxConfig
from kernels.trace import TraceConfig

F = dict(head_dim=64, block_m=64, block_n=64, dtype="float16")
# name, title, narration, page, step, follow, row, config (TraceConfig, or SoftmaxConfig on the softmax
# page; built when recorded: bfloat16 exists only on a GPU), q_blocks or kv_blocks kept (None: all that fit)
SCENES = [
    ("first-look", "One q-block, tile by tile",
     "Q_3 stays on chip while K_j, V_j stream through: each tile updates the running max m and sum l, and acc "
     "is rescaled by alpha before p V is added.", "attention", 3, 3, 5, dict(seq_len=512, **F), (2, 3, 4)),
    ("every-step-rescales", "Every kv-block holds a new max",
     "The scores grow block by block, so at every step the max grows, alpha < 1 and acc is rescaled.",
     "attention", 4, 2, 0, dict(seq_len=512, scenario="increasing", **F), (1, 2, 3)),
    ("max-in-first-block", "The max comes first",
     "The largest scores sit in the first kv-block: after it alpha stays 1 and nothing is rescaled.",
     "attention", 4, 2, 0, dict(seq_len=512, scenario="decreasing", **F), (1, 2, 3)),
    ("scores-x100", "Scores 100 times larger",
     "Scores scaled by 100 (hundreds here) would overflow e^x in float32 without the running max; the kernel "
     "subtracts it first.",
     "attention", 2, 1, 3, dict(seq_len=384, scenario="large", **F), (0, 1, 2)),
    ("causal", "Causal: skipped and masked tiles",
     "Tiles wholly above the diagonal are never loaded; the diagonal band is masked inside the tile.",
     "attention", 4, 4, 20, dict(seq_len=500, causal=True, **F), (3, 4, 7)),
    ("ragged", "A ragged last block",
     "1000 is not a multiple of the blocks: the last q-block and kv-block hold padding rows and columns, masked.",
     "attention", 8, 7, 40, dict(seq_len=1000, head_dim=64, block_m=128, block_n=64, dtype="float16"), (7,)),
    ("bf16-long", "bfloat16 at 4096",
     "A longer sequence in bfloat16: q-block 20's 32 steps, each one tile of the 4096 x 4096 scores.",
     "attention", 16, 20, 64, dict(seq_len=4096, head_dim=64, block_m=128, block_n=128, dtype="bfloat16"),
     (20,)),
    ("fa1-order", "FlashAttention-1's loop order",
     "The kv loop outside, the q loop inside: every tile reads O, m, l from memory and writes them back.",
     "attention", 6, 2, 0, dict(seq_len=256, causal=True, loop_order="fa1", **F), None),
    ("fa2-order", "FlashAttention-2's loop order, the same tiles",
     "The q loop outside, one program per q-block: Q_i, acc, m and l stay on chip; O is written once.",
     "attention", 2, 2, 0, dict(seq_len=256, causal=True, **F), None),
    ("split-kv", "Split-KV: four partial states, merged",
     "Each q-block's keys are cut into 4 programs; their (m, l, O) are merged: M = max M_s, L = sum L_s e^(M_s - M).",
     "attention", 2, 5, 0, dict(seq_len=512, kv_splits=4, **F), (4, 5, 6)),
    ("sliding-window", "Sliding window: the tiles a window skips",
     "Causal with a 256-key window: each q-block runs only the tiles its rows' windows reach, masked at the "
     "window's two edges, whole between; the rest are never loaded.", "attention", 2, 8, 20,
     dict(seq_len=768, causal=True, window_left=256, **F), (8,)),
    ("documents", "Packed documents: a q-block across two of them",
     "Four documents packed into 768 positions (cu_seqlens): q-block 7 holds the end of one and the start of the "
     "next, so it runs only their keys, masked where a row meets the other document.", "attention", 2, 7, 25,
     dict(seq_len=768, causal=True, documents=4, seed=4, **F), (7,)),
    ("gqa", "GQA: four query heads share one K/V head",
     "Four query heads per K/V head, their queries packed head after head into the rows: q-block 5 is head 1's "
     "queries 64-127, and each K/V tile it loads serves the group.", "attention", 1, 5, 5,
     dict(seq_len=256, causal=True, group=4, **F), (5,)),
    ("decode", "Decode: one query, a long cache, split-KV",
     "One new query for each of 8 heads sharing a K/V head, against 1024 cached keys: one 16-row q-block, so its "
     "keys are split over 8 programs (flash-decoding) and their (m, l, O) merged.", "attention", 1, 0, 3,
     dict(seq_len=1024, causal=True, q_len=1, group=8, head_dim=64, block_m=16, block_n=64, dtype="float16",
          kv_splits=8), None),
    ("backward", "The backward, one kv-block's program",
     "K_j, V_j stay on chip while the q-blocks stream through; P is recomputed from the stored log-sum-exp.",
     "backward", 3, 2, 200, dict(seq_len=384, causal=True, **F), None),
    ("softmax-rescales", "Online softmax: a new max in every chunk",
     "Sorted ascending, every chunk holds a new max, so d is rescaled at every chunk.",
     "softmax", 5, 0, 0, dict(length=128, block=16, scenario="increasing"), None),
    ("softmax-overflow", "Naive softmax overflows",
     "x times 100 overflows e^x in float32, and float16 arithmetic overflows above x = 11.09: naive breaks, "
     "safe and online do not.", "softmax", 1, 0, 0, dict(length=64, block=16, scenario="large"), None),
]


# the speaker's words where a scene's point needs more than the generated sentence (kernels/scenes.py
# check_words: facts in braces, no number of their own); other steps say what viz/words.py generates
WORDS = {
    "softmax-overflow": {"1": "Multiply the row by a hundred and eˣ overflows float32: naive softmax returns {naive_bad} NaN "
                              "or inf of {length}. Safe and online subtract the max first: {safe_bad} and {online_bad}, "
                              "online {online_err} from float64. Chunk {chunk}: m starts at {m_new}."},
    "scores-x100": {"2": "Scores a hundred times larger: row {row}'s largest score in this tile is {rowmax}; e to that "
                         "overflows float32, but the kernel subtracts m = {m_new} first, so every p is at most one "
                         "and ℓ = {l_new}."},
    "sliding-window": {"2": "Row {row}'s window at K{kv}: {masked} of its {keys} keys lie outside and are masked; m = "
                             "{m_new} (α = {alpha}), ℓ = {l_new}. The tiles wholly outside every row's window are "
                             "never loaded."},
    "documents": {"2": "Q{q} holds the end of one document and the start of the next, and runs only their keys: "
                       "{masked} of K{kv}'s {keys} keys are masked for row {row}; m = {m_new}, ℓ = {l_new}."},
    "gqa": {"1": "Q{q} holds one query head's rows; K{kv} belongs to the K/V head the whole group of query heads "
                 "shares, loaded for this q-block as in plain attention. Row {row}: m starts at {m_new}, ℓ at {l_new}."},
    "decode": {"1": "One query per head, so one q-block: split {split} starts on K{kv}, each split its own "
                    "program over part of the cache. Row {row}: m starts at {m_new}, ℓ at {l_new}; the splits' partial "
                    "states are merged at the end."},
    "causal": {"4": "Q{q} meets K{kv}: wholly below the diagonal, no mask, m = {m_new}, ℓ = {l_new}. Next: the diagonal "
                    "tile, masked inside; the tiles right of it are never loaded."},
}


def check(name: str, trace) -> float:
    """The kernel's max error against float64; ValueError past the dtype's bound."""
    from kernels.softmax_trace import SoftmaxTrace
    from kernels.trace_backward import BackwardTrace

    if isinstance(trace, SoftmaxTrace):
        err, bound = float(np.max(np.abs(trace.y - trace.ref_y))), 1e-5
    elif isinstance(trace, BackwardTrace):
        errs = trace.max_abs_errs()
        scale = max(1.0, max(float(np.abs(getattr(trace, "ref_" + k)).max()) for k in ("dq", "dk", "dv")))
        err, bound = max(errs.values()), {"float32": 1e-4, "float16": 4e-3, "bfloat16": 3e-2}[trace.config.dtype] * scale
    else:
        err = trace.max_abs_err
        bound = {"float32": 1e-5, "float16": 4e-3, "bfloat16": 3e-2}[trace.config.dtype] * (
            trace.config.n_kv_blocks if trace.config.loop_order == "fa1" else 1)
    if not err <= bound:
        raise ValueError(f"scene {name}: the kernel's output differs from float64 by {err:.3g} (bound {bound:.3g})")
    return err


def record(directory: Path, names=None) -> dict:
    import torch
    import triton

    from kernels.softmax_trace import capture_softmax
    from kernels.trace import capture_trace
    from kernels.trace_backward import capture_backward_trace

    directory.mkdir(parents=True, exist_ok=True)
    entries, errors = [], {}
    for name, _, _, page, _, _, _, kwargs, blocks in SCENES:
        if names and name not in names:
            continue
        config = SoftmaxConfig(**kwargs) if page == "softmax" else TraceConfig(**kwargs)
        if isinstance(config, SoftmaxConfig):
            trace = capture_softmax(config)
        elif page == "backward":
            trace = capture_backward_trace(config, kv_blocks=blocks)
        else:
            trace = capture_trace(config, q_blocks=blocks)
        errors[name] = check(name, trace)
        trace_io.save(trace, directory / f"{name}.npz")
        trace_io.load(directory / f"{name}.npz")  # what the app will read: refused here, not on stage
        entries.append(_entry(name))
        print(f"{name:22s} {errors[name]:.2e}  {(directory / f'{name}.npz').stat().st_size / 1e6:6.2f} MB", flush=True)
    recorded = {"gpu": backend.device_name(), "torch": torch.__version__, "triton": triton.__version__,
                "cuda": str(torch.version.cuda), "python": platform.python_version(), "mode": backend.describe(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if names:  # some scenes again: the others stay, if the same GPU and versions recorded them
        recorded, entries = _merged(directory, recorded, entries)
    else:  # scenes another recorder wrote (each says what recorded it: the ring's) stay
        entries += _own_label(directory)
    manifest = {"recorded": recorded, "scenes": entries}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"manifest": manifest, "max_errors": errors}


def _entry(name: str) -> dict:
    """Scene `name`'s manifest entry from SCENES and WORDS."""
    for n, title, narration, page, step, follow, row, _, _ in SCENES:
        if n == name:
            entry = Scene(name, title, narration, page, step, follow, row, f"{name}.npz", WORDS.get(name, {})).__dict__
            return {k: v for k, v in entry.items() if k not in ("words", "recorded") or v}
    raise ValueError(f"no scene named {name!r}")


def retext(directory: Path) -> dict:
    """The manifest's titles, narrations, opening steps and words from SCENES and WORDS, the recorded
    traces and their `recorded` kept (`--text`): what a scene says changes without a GPU."""
    from kernels import scenes

    path = directory / "manifest.json"
    old = json.loads(path.read_text())
    entries = [_entry(e["name"]) if any(e["name"] == n for n, *_ in SCENES) else e for e in old["scenes"]]
    manifest = {"recorded": old["recorded"], "scenes": entries}
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    shipped, _, notes = scenes.read_manifest_notes(directory)
    if notes:
        raise ValueError("; ".join(notes))
    return manifest


def _own_label(directory: Path) -> list:
    """The manifest's entries that carry their own `recorded` line (kernels/ring_local.py's scenes)."""
    path = directory / "manifest.json"
    return [e for e in json.loads(path.read_text())["scenes"] if "recorded" in e] if path.exists() else []


def _merged(directory: Path, recorded: dict, entries: list) -> tuple[dict, list]:
    """The manifest's other scenes kept beside the ones just recorded, in SCENES order. ValueError
    when they came from another GPU or other versions: one manifest names one setup."""
    path = directory / "manifest.json"
    if not path.exists():
        return recorded, entries
    old = json.loads(path.read_text())
    same = ("gpu", "torch", "triton", "cuda")
    if any(old["recorded"].get(k) != recorded[k] for k in same):
        raise ValueError(f"{path} was recorded with {[old['recorded'].get(k) for k in same]}, this run with "
                         f"{[recorded[k] for k in same]}: record every scene again (no --only)")
    new = {e["name"]: e for e in entries}
    kept = {e["name"]: e for e in old["scenes"] if e["name"] not in new}
    order = [name for name, *_ in SCENES]
    merged = sorted([*kept.values(), *new.values()], key=lambda e: order.index(e["name"]) if e["name"] in order else 99)
    date = f"{old['recorded']['date']} ({', '.join(new)}: {recorded['date']})"
    return {**old["recorded"], "date": date[:120]}, merged


def softmax_counts(directory: Path, names=None) -> dict:
    """Run every softmax kernel over each attention scene's scores with counting on and write
    directory/softmax_counts.json: the memory table of a replayed scene then needs no kernel run."""
    from kernels import scenes
    from kernels.trace import scores_softmax_counts

    path = directory / scenes.COUNTS_FILE
    old = json.loads(path.read_text()).get("scenes", {}) if path.exists() else {}
    shipped, _ = scenes.read_manifest(directory)
    for s in shipped:
        if s.page != "attention" or (names and s.name not in names):
            continue
        trace = scenes.load_scene(s, directory)
        old[s.name] = {"seq_len": trace.config.seq_len, "rows": trace.config.n_rows, "counts": scores_softmax_counts(trace)}
        print(f"softmax counts of {s.name}: {old[s.name]['counts']['online']}", flush=True)
    data = {"counted_by": backend.describe(), "scenes": old}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.record", description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", type=Path, help="where the scenes and manifest.json go (the app reads scenes/)")
    ap.add_argument("--only", nargs="+", help="record only these scenes")
    ap.add_argument("--allow-cpu", action="store_true", help="record in the interpreter (for tests; not shipped)")
    ap.add_argument("--softmax-counts", action="store_true",
                    help="only count the softmax kernels over the attention scenes' scores (runs anywhere)")
    ap.add_argument("--text", action="store_true",
                    help="only rewrite the manifest's titles, narrations, steps and words from SCENES (runs anywhere)")
    args = ap.parse_args(argv)
    if args.text:
        retext(args.directory)
        return 0
    if args.softmax_counts:
        softmax_counts(args.directory, args.only)
        return 0
    if backend.INTERPRET and not args.allow_cpu:
        print("kernels.record records the shipped scenes on a GPU; this machine runs the interpreter "
              "(--allow-cpu records anyway, for tests).", file=sys.stderr)
        return 2
    record(args.directory, args.only)
    softmax_counts(args.directory, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
