"""Malformed trace files, built from a good one: what a hostile or careless visitor could upload.

`corpus(good_forward, good_backward)` -> [(name, bytes, regex of the refusal)]. Each file breaks
one rule of kernels/trace_io.py's contract; the bombs declare (or inflate to) a GiB or more.
"""
import io
import pickle
import struct
import warnings
import zipfile

import numpy as np

GIB = 1 << 30


def members(data: bytes) -> dict:
    """The good file's members as arrays (it is ours: np.load may read it)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def npz(arrays: dict, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def with_(base: dict, **changes) -> bytes:
    """base with members replaced (value) or removed (None)."""
    out = dict(base)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return npz(out)


def raw_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _header(d: dict) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue()


def bomb(base: dict, member: str, dtype: str, shape: tuple, nbytes: int) -> bytes:
    """base with `member` replaced by a header for (dtype, shape) followed by nbytes of zeros,
    deflated on the fly (a GiB of zeros deflates to about a MiB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in base.items():
            if k != member:
                with zf.open(f"{k}.npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(v), allow_pickle=False)
        with zf.open(f"{member}.npy", "w", force_zip64=True) as f:
            f.write(_header({"descr": dtype, "fortran_order": False, "shape": shape}))
            chunk = bytes(64 << 20)
            left = nbytes
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return buf.getvalue()


def declared_huge(good: bytes, member: str, size: int) -> bytes:
    """The good file with the central directory's uncompressed size of `member` set to `size`
    (the data itself unchanged): a member that claims far more than it holds."""
    data = bytearray(good)
    name = f"{member}.npy".encode()
    start = 0  # walk the central directory entries
    while True:
        pos = data.find(b"PK\x01\x02", start)
        if pos < 0:
            raise ValueError(f"{member} not in the central directory")
        n_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46: pos + 46 + n_len]) == name:
            struct.pack_into("<I", data, pos + 24, min(size, 0xFFFFFFFE))
            return bytes(data)
        start = pos + 4


def corpus(forward: bytes, backward: bytes, split: bytes | None = None) -> list[tuple[str, bytes, str]]:
    f, b = members(forward), members(backward)
    tq, tk, bm = f["m"].shape
    n, _, _, bn = f["s"].shape
    nan_m = f["m"].copy()
    nan_m[~np.isnan(nan_m)] = np.nan
    skipped = np.argwhere(f["visit_order"] < 0)
    if not skipped.size:
        raise ValueError("the forward corpus needs a causal trace with skipped tiles")
    written_where_skipped = f["m"].copy()
    written_where_skipped[tuple(skipped[0])] = 1.0
    permuted = f["visit_order"].copy()
    row = int(np.argmax((permuted >= 0).sum(1)))
    seen = np.flatnonzero(permuted[row] >= 0)
    permuted[row, seen] = permuted[row, seen][::-1]
    out = [
        ("truncated", forward[: len(forward) // 3], "corrupt or not a trace file"),
        ("text", b"hello, I am not a zip", "corrupt or not a trace file"),
        ("empty", b"", "corrupt or not a trace file"),
        ("pickle", pickle.dumps({"m": np.zeros(3)}), "corrupt or not a trace file"),
        ("pickle-in-npz", _replaced(f, "q", _pickled_npy()), "member 'q' has dtype object; a trace holds plain numbers"),
        ("no-format-version", with_(f, format_version=None), "has no format_version"),
        ("version-string", with_(f, format_version=np.asarray("1")), "format_version must be an integer"),
        ("version-float", with_(f, format_version=np.asarray(1.9)), "format_version must be an integer"),
        ("version-99", with_(f, format_version=np.asarray(99)), "format version 99"),
        ("version-1", with_(f, format_version=np.asarray(1)), "format version 1; this app reads versions 2, 3"),
        ("version-array", with_(f, format_version=np.asarray([2, 2])), "format_version must be an integer"),
        ("kind-unknown", with_(f, kind=np.asarray("sideways")), "kind must be one of"),
        ("kind-missing", with_(f, kind=None), "has no kind"),
        ("kind-backward-with-forward-members", with_(f, kind=np.asarray("backward")), "has no tile_kv_blocks"),
        ("block-m-0", with_(f, config_block_m=np.asarray(0)), "block_m must be at least 1, got 0"),
        ("block-m-float", with_(f, config_block_m=np.asarray(16.0)), "config_block_m must be an integer"),
        ("block-m-48", with_(f, config_block_m=np.asarray(48)), "block_m must be one of"),
        ("seq-len-huge", with_(f, config_seq_len=np.asarray(10**9)), "seq_len must be between 1 and 16384"),
        ("seq-len-0", with_(f, config_seq_len=np.asarray(0)), "seq_len must be between 1"),
        ("causal-string", with_(f, config_causal=np.asarray("no")), "config_causal must be True or False"),
        ("causal-int", with_(f, config_causal=np.asarray(1)), "config_causal must be True or False"),
        ("dtype-int8", with_(f, config_dtype=np.asarray("int8")), "dtype must be one of"),
        ("dtype-number", with_(f, config_dtype=np.asarray(16)), "config_dtype must be text"),
        ("scenario-unknown", with_(f, config_scenario=np.asarray("zeros")), "scenario must be one of"),
        ("seed-negative", with_(f, config_seed=np.asarray(-5)), "seed must be between 0"),
        ("head-dim-missing", with_(f, config_head_dim=None), "has no config_head_dim"),
        ("state-too-large", with_(f, config_seq_len=np.asarray(16384), config_block_m=np.asarray(16),
                                  config_block_n=np.asarray(16), config_head_dim=np.asarray(16)),
         "running state .* MiB"),
        ("unknown-member", with_(f, extra=np.zeros(3)), "unknown: extra"),
        ("member-in-folder", raw_zip([("a/b.npy", _npy(np.zeros(2)))]), "unexpected member"),
        ("member-not-npy", raw_zip([("readme.txt", b"hi")]), "unexpected member"),
        ("duplicate-member", _duplicate(forward), "lists a member twice"),
        ("m-shape", with_(f, m=np.zeros((tq, tk, bm + 1), np.float32)), "m is float32 of shape .* the config needs"),
        ("l-shape", with_(f, l=np.zeros((tq, tk), np.float32)), "l is float32 of shape"),
        ("alpha-shape", with_(f, alpha=np.zeros((1,), np.float32)), "alpha is float32 of shape"),
        ("s-shape", with_(f, s=np.zeros((n, tk, bm, bn + 16), np.float32)), "s is float32 of shape"),
        ("p-shape", with_(f, p=np.zeros((n, tk, bm), np.float32)), "p is float32 of shape"),
        ("acc-shape", with_(f, acc_before=np.zeros((n, tk, bm, 3), np.float32)), "acc_before is float32 of shape"),
        ("visit-order-shape", with_(f, visit_order=np.zeros((tk, tq + 1), np.int32)), "visit_order is int32 of shape"),
        ("out-shape", with_(f, out=np.zeros((3, 3), np.float32)), "out is float32 of shape"),
        ("ref-out-shape", with_(f, ref_out=np.zeros((2,), np.float64)), "ref_out is float64 of shape"),
        ("lse-shape", with_(f, lse=np.zeros((2,), np.float32)), "lse is float32 of shape"),
        ("q-strings", with_(f, q=np.full(f["q"].shape, "abc")), "q is <U3 of shape"),
        ("m-strings", with_(f, m=np.full(f["m"].shape, "1.0")), "m is <U3 of shape"),
        ("s-bool", with_(f, s=np.zeros(f["s"].shape, bool)), "s is bool of shape"),
        ("m-complex", with_(f, m=f["m"].astype(np.complex64)), "m is complex64 of shape"),
        ("q-float64", with_(f, q=f["q"].astype(np.float64)), "q is float64 of shape"),
        ("q-big-endian", with_(f, q=f["q"].astype(">f4")), "q is float32 \\(big-endian"),
        ("q-fortran", _fortran(f), "Fortran order"),
        ("visit-all-skipped", with_(f, visit_order=np.full_like(f["visit_order"], -1)), "visit_order marks other tiles"),
        ("visit-999", with_(f, visit_order=np.full_like(f["visit_order"], 999)), "visit_order marks other tiles"),
        ("visit-strings", with_(f, visit_order=np.full(f["visit_order"].shape, "x")), "visit_order is <U1 of shape"),
        ("visit-permuted", with_(f, visit_order=permuted), "not the order in which"),
        ("tiles-none", with_(f, tile_q_blocks=np.zeros(0, np.int64)), "tile_q_blocks must list 1 to"),
        ("tiles-99", with_(f, tile_q_blocks=_tiles(f, 99)), "tile_q_blocks must be increasing block indices"),
        ("tiles-unsorted", with_(f, tile_q_blocks=_tiles(f, None)[::-1].copy()), "must be increasing"),
        ("counter-missing", with_(f, counter_q_loads=None), "missing: counter_q_loads"),
        ("counter-negative", with_(f, counter_k_loads=np.asarray(-1)), "k_loads must be a count >= 0"),
        ("counter-float", with_(f, counter_k_loads=np.asarray(1.5)), "counter_k_loads must be an integer"),
        ("counter-extra", with_(f, counter_magic=np.asarray(3)), "unknown: counter_magic"),
        ("m-nan", with_(f, m=nan_m), "m holds NaN or inf where the kernel computed finite"),
        ("q-inf", with_(f, q=np.full_like(f["q"], np.inf)), "q holds NaN or inf"),
        ("out-nan", with_(f, out=np.full_like(f["out"], np.nan)), "out holds NaN or inf"),
        ("p-above-1", with_(f, p=np.where(np.isnan(f["p"]), np.nan, 2.0).astype(np.float32)), "p = e\\^\\(s - m_new\\)"),
        ("alpha-above-1", with_(f, alpha=np.where(np.isnan(f["alpha"]), np.nan, 3.0).astype(np.float32)),
         "alpha = e\\^|alpha does not"),
        ("l-zero", with_(f, l=np.where(np.isnan(f["l"]), np.nan, 0.0).astype(np.float32)), "l = the running sum|l_new"),
        ("s-plus-inf", with_(f, s=np.where(np.isnan(f["s"]), np.nan, np.inf).astype(np.float32)), "s holds NaN or inf"),
        ("acc-nan", with_(f, acc_after=np.full_like(f["acc_after"], np.nan)), "acc_after holds NaN or inf"),
        ("state-where-skipped", with_(f, m=written_where_skipped), "m holds numbers where the kernel computed nothing"),
        ("device-control-chars", with_(f, device=np.asarray("GPU\x1b[31m")), "device must be printable"),
        ("device-huge", with_(f, device=np.asarray("x" * 5000)), "device must be text of at most"),
        ("seconds-nan", with_(f, seconds=np.asarray(np.nan)), "seconds must be a finite number"),
        ("seconds-negative", with_(f, seconds=np.asarray(-1.0)), "seconds must be a finite number"),
        ("sm-scale-wrong", with_(f, sm_scale=np.asarray(3.0)), "sm_scale must be 1/sqrt"),
        ("bomb-1gib-s", bomb(f, "s", "<f4", (GIB // 4,), GIB), "s is float32 of shape .* the config needs|would inflate"),
        ("bomb-1gib-unknown", bomb(f, "zzz", "<f4", (GIB // 4,), GIB), "would inflate"),
        ("bomb-2gib-q", bomb(f, "q", "<f4", (2 * GIB // 4,), 2 * GIB), "would inflate"),
        ("declared-4gib", declared_huge(forward, "m", 4 * GIB), "would inflate"),
        ("declared-longer-than-header", declared_huge(forward, "q", f["q"].nbytes + 4096), "declares .* bytes"),
        ("many-members", raw_zip([(f"m{k}.npy", b"") for k in range(3000)]), "lists 3000 members"),
        ("long-names", raw_zip([("x" * 60000 + f"{k}.npy", b"") for k in range(20)]), r"KiB directory"),
        # the backward kind
        ("bwd-ds-shape", with_(b, ds=np.zeros((1, 1), np.float32)), "ds is float32 of shape"),
        ("bwd-do-seed-missing", with_(b, do_seed=None), "missing: do_seed"),
        ("bwd-do-seed-float", with_(b, do_seed=np.asarray(0.5)), "do_seed must be an integer"),
        ("bwd-p-nan", with_(b, p=np.full_like(b["p"], np.nan)), "p holds NaN or inf|p holds numbers"),
        ("bwd-dkacc-inf", with_(b, dk_acc=np.where(np.isnan(b["dk_acc"]), np.nan, np.inf).astype(np.float32)),
         "dk_acc holds NaN or inf"),
        ("bwd-visit-forward-shape", with_(b, visit_order=np.zeros(b["visit_order"].shape[::-1], np.int32))
         if b["visit_order"].shape[0] != b["visit_order"].shape[1] else with_(b, visit_order=None),
         "visit_order is int32 of shape|missing: visit_order"),
        ("bwd-tiles-none", with_(b, tile_kv_blocks=np.zeros(0, np.int64)), "tile_kv_blocks must list 1 to"),
        ("bwd-gradient-nan", with_(b, dq=np.full_like(b["dq"], np.nan)), "dq holds NaN or inf"),
        ("bwd-kind-forward", with_(b, kind=np.asarray("forward")), "has no tile_q_blocks"),
        ("loop-order-unknown", with_(f, config_loop_order=np.asarray("fa3")), "loop_order must be one of"),
        ("kv-splits-9", with_(f, config_kv_splits=np.asarray(9)), "kv_splits must be between 1 and 8"),
        ("kv-splits-without-partials", with_(f, config_kv_splits=np.asarray(2)), "missing: .*split_l and 2 more"),
        ("fa1-with-fa2-counters", with_(f, config_loop_order=np.asarray("fa1")), "missing: counter_ml_loads"),
        ("bwd-fa1", with_(b, config_loop_order=np.asarray("fa1")), "a backward trace has loop_order 'fa2'"),
    ]
    if split is not None:
        s = members(split)
        out += [
            ("split-m-nan", with_(s, split_m=np.full_like(s["split_m"], np.nan)), "split_m must be a max"),
            ("split-l-negative", with_(s, split_l=-np.abs(s["split_l"]) - 1), "partial \\(m, l\\)|split_l"),
            ("split-out-inf", with_(s, split_out=np.full_like(s["split_out"], np.inf)), "split_out holds NaN or inf"),
            ("split-out-shape", with_(s, split_out=np.zeros((1, 1, 1), np.float32)), "split_out is float32 of shape"),
        ]
    return out


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def _pickled_npy() -> bytes:
    """An object array: its .npy body is a pickle that would run code on a careless np.load."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([{"payload": "os.system"}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _replaced(f: dict, member: str, npy: bytes) -> bytes:
    """f's members as .npy files, `member` replaced by these raw .npy bytes."""
    return raw_zip([(f"{k}.npy", _npy(np.asarray(v))) for k, v in f.items() if k != member] + [(f"{member}.npy", npy)])


def _fortran(f: dict) -> bytes:
    return _replaced(f, "q", _npy(np.asfortranarray(f["q"])))


def _duplicate(good: bytes) -> bytes:
    entries = []
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        for info in zf.infolist():
            entries.append((info.filename, zf.read(info)))
    entries.append(entries[0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": the point
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def _tiles(f: dict, extra) -> np.ndarray:
    t = np.asarray(f["tile_q_blocks"], dtype=np.int64)
    if extra is None:
        return t
    return np.concatenate([t[:-1], [extra]]).astype(np.int64)

