"""The trace file format: one owner for saving and loading every kind of trace as `.npz`.

A trace file is a zip of `.npy` members (numpy's savez_compressed), no pickle: `format_version`,
`kind` ("forward", "backward", "softmax" or "ring"), the config as `config_<field>` scalars, the counters as
`counter_<key>` scalars, metadata (`device`, `seconds`, `sm_scale`, `do_seed`) and the arrays of the
trace dataclass. A file can come from anyone, so `load` trusts nothing in it:
1. the zip's directory: only known member names, no duplicates, no encryption, and declared sizes
   that add up to at most MAX_FILE_BYTES before anything is inflated;
2. the small scalars (version, kind, config), each checked for type and range;
3. every array member's `.npy` header (read from the stream, a few hundred bytes): exactly the
   dtype and the shape the contract gives for this config, and a declared size that matches them;
4. the data, read member by member with a byte limit (a deflate bomb stops at the declared size
   and fails its CRC), then the values: finite where the contract allows nothing else, NaN
   exactly where a tile was not computed, visit orders that are the kernel's.
Every refusal is a ValueError that names the file and says what is wrong. Works without triton.

Not for: capturing traces (trace.py, trace_backward.py) or drawing them (viz/).
"""
import dataclasses
import io
import sys
import zipfile

import numpy as np

from kernels import limits, ring_plan, ring_trace, ring_verify, schema, trace_verify, traffic
from kernels.ring_plan import RingConfig
from kernels.ring_trace import RingTrace
from kernels.softmax_trace import SoftmaxConfig, SoftmaxTrace
from kernels.trace import AttentionTrace, TraceConfig
from kernels.trace_backward import BackwardTrace

FORMAT_VERSION = 3  # 3: the masks' config (window, documents, group, q_len) and each tile's kind
READ_VERSIONS = (2, 3)  # version 2 files (before the masks) still load: no masks, no tile kinds
MAX_FILE_BYTES = 256 << 20  # inflated size of every member together, whatever the config says
MAX_TEXT = 200  # characters of the device string
KINDS = ("forward", "backward", "softmax", "ring")
SPLIT_PATHS = ("cooperative", "two launches")
_CONFIG_TYPES = {"seq_len": "i", "head_dim": "i", "block_m": "i", "block_n": "i", "causal": "b", "dtype": "U",
                 "seed": "i", "scenario": "U", "loop_order": "U", "kv_splits": "i", "window_left": "i",
                 "window_right": "i", "documents": "i", "group": "i", "q_len": "i"}
_MASK_FIELDS = ("window_left", "window_right", "documents", "group", "q_len")  # from version 3 on
_SOFTMAX_CONFIG_TYPES = {"length": "i", "block": "i", "scenario": "U", "seed": "i"}
_RING_CONFIG_TYPES = {"seq_len": "i", "head_dim": "i", "world_size": "i", "causal": "b", "layout": "U", "block_m": "i",
                      "block_n": "i", "dtype": "U", "scenario": "U", "seed": "i"}


# ---------------------------------------------------------------- save
def kind_of(trace) -> str:
    """"forward", "backward", "softmax" or "ring": the kind a trace object is saved as."""
    kind = {AttentionTrace: "forward", BackwardTrace: "backward", SoftmaxTrace: "softmax",
            RingTrace: "ring"}.get(type(trace))
    if kind is None:
        raise ValueError(f"trace must be an AttentionTrace, a BackwardTrace, a SoftmaxTrace or a RingTrace, got "
                         f"{type(trace).__name__}")
    return kind


def save(trace, path) -> None:
    """Write a forward, backward, softmax or ring trace to `path` (a path or a binary file object)."""
    kind = kind_of(trace)
    # a forward trace read from a version 2 file has no tile kinds: it is written back as version 2
    version = 2 if kind == "forward" and trace.tile_kind is None else FORMAT_VERSION
    members = {"format_version": np.asarray(version, dtype=np.int64), "kind": np.asarray(kind),
               "device": np.asarray(trace.device), "seconds": np.asarray(trace.seconds, dtype=np.float64)}
    if kind == "softmax":
        np.savez_compressed(path, **members, **_softmax_members(trace))
        return
    if kind == "ring":
        np.savez_compressed(path, **members, **_ring_members(trace))
        return
    members["sm_scale"] = np.asarray(trace.sm_scale, dtype=np.float64)
    for f in _config_types(version):
        value = getattr(trace.config, f)
        members[f"config_{f}"] = np.asarray(value, dtype=np.int64 if _CONFIG_TYPES[f] == "i" else None)
    for key, value in trace.counters.items():
        members[f"counter_{key}"] = np.asarray(value, dtype=np.int64)
    if kind == "backward":
        members["do_seed"] = np.asarray(trace.do_seed, dtype=np.int64)
    for name, (_, dtype) in _schema(kind, trace.config, _n_tiles(trace, kind), version).items():  # split_* when split
        members[name] = np.ascontiguousarray(getattr(trace, name), dtype=dtype)
    np.savez_compressed(path, **members)


def _softmax_members(trace: SoftmaxTrace) -> dict:
    out = {f"config_{name}": np.asarray(value, dtype=np.int64 if _SOFTMAX_CONFIG_TYPES[name] == "i" else None)
           for name, value in trace.config.fields()}
    out.update({f"counter_{k}": np.asarray(v, dtype=np.int64) for k, v in trace.counts.items()})
    out["split_path"] = np.asarray(trace.split_path)
    for name, (_, dtype) in _softmax_schema(trace.config).items():
        out[name] = np.ascontiguousarray(getattr(trace, name), dtype=dtype)
    return out


def _ring_members(trace: RingTrace) -> dict:
    out = {f"config_{name}": np.asarray(value, dtype=np.int64 if _RING_CONFIG_TYPES[name] == "i" else None)
           for name, value in trace.config.fields()}
    out.update(sm_scale=np.asarray(trace.sm_scale, dtype=np.float64), transport=np.asarray(trace.transport))
    for name, (_, dtype) in _ring_schema(trace.config, len(trace.rows)).items():
        out[name] = np.ascontiguousarray(getattr(trace, name), dtype=dtype)
    return out


def _ring_schema(c: RingConfig, n_rows: int) -> dict:
    """{array member: (shape, dtype)} of a ring trace of this config following n_rows rows (RingTrace)."""
    return schema.shapes(RingTrace, ring_trace.dims(c, n_rows), set())


def _softmax_schema(c: SoftmaxConfig) -> dict:
    """{array member: (shape, dtype)} of a softmax trace of this config (declared in SoftmaxTrace)."""
    return schema.shapes(SoftmaxTrace, {"L": c.length, "C": c.n_chunks, "Sl": c.n_slices}, set())


def to_bytes(trace) -> bytes:
    buf = io.BytesIO()
    save(trace, buf)
    return buf.getvalue()


def _n_tiles(trace, kind: str) -> int:
    return len(trace.tile_q_blocks if kind == "forward" else trace.tile_kv_blocks)


# ---------------------------------------------------------------- the contract
def _config_types(version: int) -> dict:
    """{config field: numpy dtype kind} a file of this version holds."""
    return {f: t for f, t in _CONFIG_TYPES.items() if version >= 3 or f not in _MASK_FIELDS}


def _schema(kind: str, c: TraceConfig, n: int, version: int = FORMAT_VERSION) -> dict:
    """{array member: (shape, dtype)} of a trace of this kind and config with n blocks' tiles, as
    the trace class declares it (kernels/schema.py)."""
    dims = {"N": c.seq_len, "M": c.n_rows, "d": c.head_dim, "Tq": c.n_q_blocks, "Tk": c.n_kv_blocks,
            "bm": c.block_m, "bn": c.block_n, "n": n, "S": c.kv_splits}
    conditions = ({"split"} if c.kv_splits > 1 else set()) | ({"kinds"} if version >= 3 else set())
    return schema.shapes(AttentionTrace if kind == "forward" else BackwardTrace, dims, conditions)


def _counter_keys(kind: str, cfg: TraceConfig) -> tuple:
    return cfg.counter_keys() if kind == "forward" else traffic.BACKWARD_COUNTERS


def _scalar_members(kind: str, cfg: TraceConfig) -> dict:
    """{scalar member: numpy dtype kind} besides the config."""
    out = {"format_version": "i", "kind": "U", "device": "U", "seconds": "f", "sm_scale": "f"}
    out.update({f"counter_{k}": "i" for k in _counter_keys(kind, cfg)})
    if kind == "backward":
        out["do_seed"] = "i"
    return out


# ---------------------------------------------------------------- load
class _Reader:
    """The zip behind a trace file, read member by member within declared sizes."""

    def __init__(self, zf: zipfile.ZipFile, name: str):
        self.zf, self.name = zf, name
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: the zip lists a member twice; not a trace file this app wrote")
        self.info = {}
        for i in infos:
            if not i.filename.endswith(".npy") or "/" in i.filename:
                raise ValueError(f"{name}: unexpected member {i.filename!r}; a trace holds only .npy arrays")
            if i.flag_bits & 0x1:
                raise ValueError(f"{name}: member {i.filename!r} is encrypted")
            self.info[i.filename[:-4]] = i
        declared = sum(i.file_size for i in infos)
        if declared > MAX_FILE_BYTES:
            raise ValueError(f"{name}: its members would inflate to {declared >> 20} MiB "
                             f"(limit {MAX_FILE_BYTES >> 20} MiB)")

    def header(self, member: str) -> tuple[np.dtype, tuple, int]:
        """(dtype, shape, header bytes) from the member's .npy header alone."""
        with self.zf.open(self.info[member]) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=1024)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=1024)
                else:
                    raise ValueError(f"npy format {version}")
                offset = f.tell()
            except ValueError as e:
                raise ValueError(f"{self.name}: member {member!r} is not a plain .npy array ({e})") from None
        if fortran:
            raise ValueError(f"{self.name}: member {_short(member, 40)!r} is stored in Fortran order; a trace holds "
                             f"C-order arrays")
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise ValueError(f"{self.name}: member {_short(member, 40)!r} has dtype {_short(str(dtype), 40)}; a trace "
                             f"holds plain numbers")
        return dtype, tuple(shape), offset

    def check(self, member: str, dtype, shape) -> tuple[np.dtype, int, int]:
        """The member's header and declared size against the contract's dtype and shape (nothing inflated)."""
        got_dtype, got_shape, offset = self.header(member)
        if got_dtype != np.dtype(dtype).newbyteorder("<") or got_shape != tuple(shape):
            order = " (big-endian: a trace is little-endian)" if got_dtype.byteorder == ">" else ""
            shown = got_dtype.name if got_dtype.kind in "biufc" else got_dtype.str
            raise ValueError(f"{self.name}: {member} is {shown}{order} of shape {got_shape}, the config needs "
                             f"{np.dtype(dtype).name} of shape {tuple(shape)}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * got_dtype.itemsize
        if self.info[member].file_size != offset + nbytes:
            raise ValueError(f"{self.name}: {member} declares {self.info[member].file_size} bytes, its header "
                             f"{offset + nbytes}")
        return got_dtype, offset, nbytes

    def array(self, member: str, dtype, shape) -> np.ndarray:
        """The member's data, checked against the dtype and shape the contract gives."""
        got_dtype, offset, nbytes = self.check(member, dtype, shape)
        return self._read(member, got_dtype, shape, offset, nbytes)

    def _read(self, member: str, got_dtype, shape, offset: int, nbytes: int) -> np.ndarray:
        data = bytearray(nbytes + 1)  # + 1: a member longer than declared shows
        with self.zf.open(self.info[member]) as f:
            f.read(offset)
            got = f.readinto(data)
        if got != nbytes:
            raise ValueError(f"{self.name}: {member} holds {got} bytes, its header says {nbytes}")
        return np.frombuffer(memoryview(data)[:nbytes], dtype=got_dtype).reshape(shape)

    def scalar(self, member: str, kind: str):
        """A 0-d member of numpy dtype kind "i", "f", "b" or "U", as a Python value."""
        if member not in self.info:
            raise ValueError(f"{self.name} is not a complete trace file: it has no {member}")
        dtype, shape, _ = self.header(member)
        if shape != () or dtype.kind != kind or (kind == "U" and dtype.itemsize > 4 * MAX_TEXT):
            want = {"i": "an integer", "f": "a number", "b": "True or False", "U": f"text of at most {MAX_TEXT} characters"}
            raise ValueError(f"{self.name}: {member} must be {want[kind]}, got {dtype.str} {shape}")
        value = self.array(member, dtype, ()).item()
        return str(value) if kind == "U" else value


MAX_MEMBERS = 120  # a trace has about 50 members
MAX_DIRECTORY_BYTES = 64 << 10  # the zip's central directory of that many short names
RECOMPUTED = ("ref_out", "ref_lse", "ref_delta", "ref_dq", "ref_dk", "ref_dv", "ref_m", "ref_d", "ref_y", "ref100",
              "ref16")  # float64 references: recomputed from the inputs on load, never read from a file


def _directory_bounds(source, name: str) -> None:
    """Refuse a zip whose central directory lists too many members or is too large, from its end
    record alone (the last bytes of the file), before zipfile reads a single entry."""
    f = open(source, "rb") if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__") else source
    try:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
    finally:
        if f is not source:
            f.close()
        else:
            f.seek(0)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + 22:
        raise ValueError(f"{name} is corrupt or not a trace file (no zip directory at its end)")
    entries, cd_size = int.from_bytes(tail[end + 10:end + 12], "little"), int.from_bytes(tail[end + 12:end + 16], "little")
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # zip64: the counts sit in the zip64 end record
        z64 = tail.rfind(b"PK\x06\x06")
        if z64 >= 0 and len(tail) >= z64 + 56:
            entries = int.from_bytes(tail[z64 + 32:z64 + 40], "little")
            cd_size = int.from_bytes(tail[z64 + 40:z64 + 48], "little")
    if entries > MAX_MEMBERS or cd_size > MAX_DIRECTORY_BYTES:
        raise ValueError(f"{name} lists {entries} members in a {cd_size >> 10} KiB directory; a trace has about 50 "
                         f"members (limit {MAX_MEMBERS}, {MAX_DIRECTORY_BYTES >> 10} KiB)")


def load(source, name: str | None = None):
    """A forward, backward, softmax or ring trace from a path or a binary file object, checked as the
    module docstring says and then for meaning (kernels/trace_verify.py), its float64 references
    recomputed from its inputs. ValueError, naming `name` (default: the file's name), for anything else."""
    name = _short(name or str(getattr(source, "name", source)))
    try:
        _directory_bounds(source, name)
        with zipfile.ZipFile(source) as zf:
            return _load(_Reader(zf, name))
    except ValueError as e:
        raise ValueError(_short(str(e), 400)) from None
    except MemoryError:
        raise ValueError(f"{name} does not fit in this server's memory") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise ValueError(f"{name} is corrupt or not a trace file: {_short(str(e), 120)}") from None
    except Exception as e:  # zlib.error, lzma.LZMAError, a CRC RuntimeError, text no codec takes, ...
        raise ValueError(f"{name} cannot be read: {type(e).__name__}: {_short(str(e), 120)}") from None


def _short(text: str, most: int = 60) -> str:
    """A name or a message cut to `most` characters (a file names itself: it may be a megabyte long)."""
    text = str(text)
    if text and not text.isprintable():
        text = "".join(ch if ch.isprintable() else "?" for ch in text[: most + 1])
    return text if len(text) <= most else text[: most - 3] + "..."


def _placeholders(schema: dict) -> dict:
    return {m: np.zeros(s, dtype=t) for m, (s, t) in schema.items() if m in RECOMPUTED}


def _load(r: _Reader):
    if "format_version" not in r.info:
        raise ValueError(f"{r.name} is not a trace file: it has no format_version")
    version = r.scalar("format_version", "i")
    if version not in READ_VERSIONS:
        raise ValueError(f"{r.name} has trace format version {version}; this app reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))} (record it again with this version of the app)")
    kind = r.scalar("kind", "U")
    if kind not in KINDS:
        raise ValueError(f"{r.name}: kind must be one of {', '.join(KINDS)}, got {_short(kind, 20)!r}")
    if kind == "softmax":
        return _load_softmax(r)
    if kind == "ring":
        return _load_ring(r)
    config_types = _config_types(version)
    values = {f: r.scalar(f"config_{f}", t) for f, t in config_types.items()}
    values.update({f.name: f.default for f in dataclasses.fields(TraceConfig) if f.name not in values})  # version 2
    try:
        cfg = TraceConfig.recorded(**values)
    except ValueError as e:
        raise ValueError(f"{r.name}: its config is not one the kernels run: {e}") from None
    blocks = "tile_q_blocks" if kind == "forward" else "tile_kv_blocks"
    n_max = cfg.n_q_blocks if kind == "forward" else cfg.n_kv_blocks
    if blocks not in r.info:
        raise ValueError(f"{r.name} is not a complete trace file: it has no {blocks}")
    _, shape, _ = r.header(blocks)
    if len(shape) != 1 or not 1 <= shape[0] <= n_max:
        raise ValueError(f"{r.name}: {blocks} must list 1 to {n_max} blocks, got shape {shape}")
    if kind == "backward" and (cfg.loop_order != "fa2" or cfg.kv_splits != 1 or not cfg.masks().plain_or_causal):
        raise ValueError(f"{r.name}: a backward trace has loop_order 'fa2', kv_splits 1 and no mask but causal, got "
                         f"{cfg.loop_order!r}, {cfg.kv_splits} and {_short(cfg.masks().describe(), 60)}")
    schema = _schema(kind, cfg, shape[0], version)
    scalars = _scalar_members(kind, cfg)
    recomputed = {m for m in schema if m in RECOMPUTED}
    _check_members(r, kind, set(schema) | set(scalars) | {f"config_{f}" for f in config_types}, optional=recomputed)
    need = sum(int(np.prod(s, dtype=np.int64)) * np.dtype(t).itemsize for s, t in schema.values())
    if need > MAX_FILE_BYTES:
        raise ValueError(f"{r.name}: a {kind} trace of this config takes {need >> 20} MiB "
                         f"(limit {MAX_FILE_BYTES >> 20} MiB)")
    meta = {m: r.scalar(m, t) for m, t in scalars.items()}
    _check_meta(r.name, cfg, meta)
    arrays = {m: r.array(m, t, s) for m, (s, t) in schema.items() if m not in RECOMPUTED}
    for m in recomputed & set(r.info):  # a reference the file carries is not read, but must be well formed
        r.check(m, *schema[m][::-1])
    counters = {k: meta[f"counter_{k}"] for k in _counter_keys(kind, cfg)}
    common = dict(config=cfg, counters=counters, sm_scale=meta["sm_scale"], device=meta["device"],
                  seconds=meta["seconds"], **arrays, **_placeholders(schema))
    if kind == "forward":
        return trace_verify.forward(r.name, AttentionTrace(**common))
    return trace_verify.backward(r.name, BackwardTrace(do_seed=meta["do_seed"], **common))


def _load_softmax(r: _Reader) -> SoftmaxTrace:
    values = {f: r.scalar(f"config_{f}", t) for f, t in _SOFTMAX_CONFIG_TYPES.items()}
    try:
        cfg = SoftmaxConfig(**values)
    except ValueError as e:
        raise ValueError(f"{r.name}: its config is not one the page runs: {e}") from None
    schema = _softmax_schema(cfg)
    counters = tuple(f"{v}_{w}" for v in ("naive", "safe", "online", "single_pass", "split_row")
                     for w in ("loads", "stores"))
    scalars = {"format_version": "i", "kind": "U", "device": "U", "seconds": "f", "split_path": "U",
               **{f"counter_{k}": "i" for k in counters}}
    recomputed = {m for m in schema if m in RECOMPUTED}
    _check_members(r, "softmax", set(schema) | set(scalars) | {f"config_{f}" for f in _SOFTMAX_CONFIG_TYPES},
                   optional=recomputed)
    meta = {m: r.scalar(m, t) for m, t in scalars.items()}
    _check_meta(r.name, None, meta)
    if meta["split_path"] not in SPLIT_PATHS:
        raise ValueError(f"{r.name}: split_path must be one of {', '.join(SPLIT_PATHS)}, got "
                         f"{_short(meta['split_path'], 20)!r}")
    a = {m: r.array(m, t, s) for m, (s, t) in schema.items() if m not in RECOMPUTED}
    for m in recomputed & set(r.info):
        r.check(m, *schema[m][::-1])
    trace_verify.finite(r.name, a, ("x", "m", "d", "y", "split_l", "x100", "x16", "out16_fp32"))
    if np.isnan(a["split_m"]).any() or (a["split_m"] == np.inf).any() or (a["split_l"] < 0).any():
        raise ValueError(f"{r.name}: split_m must be a max (finite, or -inf for a slice past the row) and split_l >= 0")
    trace = SoftmaxTrace(config=cfg, counts={k: meta[f"counter_{k}"] for k in counters}, split_path=meta["split_path"],
                         device=meta["device"], seconds=meta["seconds"], **a, **_placeholders(schema))
    return trace_verify.softmax(r.name, trace)


def _load_ring(r: _Reader) -> RingTrace:
    values = {f: r.scalar(f"config_{f}", t) for f, t in _RING_CONFIG_TYPES.items()}
    try:
        cfg = RingConfig.recorded(**values)
    except ValueError as e:
        raise ValueError(f"{r.name}: its config is not one the ring runs: {e}") from None
    if "rows" not in r.info:
        raise ValueError(f"{r.name} is not a complete trace file: it has no rows")
    _, shape, _ = r.header("rows")
    most = min(cfg.seq_len, ring_plan.MAX_FOLLOWED)
    if len(shape) != 1 or not 1 <= shape[0] <= most:
        raise ValueError(f"{r.name}: rows must list 1 to {most} rows, got shape {shape}")
    schema = _ring_schema(cfg, shape[0])
    scalars = {"format_version": "i", "kind": "U", "device": "U", "transport": "U", "seconds": "f", "sm_scale": "f"}
    recomputed = {m for m in schema if m in RECOMPUTED}
    _check_members(r, "ring", set(schema) | set(scalars) | {f"config_{f}" for f in _RING_CONFIG_TYPES},
                   optional=recomputed)
    need = sum(int(np.prod(s, dtype=np.int64)) * np.dtype(t).itemsize for s, t in schema.values())
    if need > MAX_FILE_BYTES:
        raise ValueError(f"{r.name}: a ring trace of this config takes {need >> 20} MiB (limit {MAX_FILE_BYTES >> 20} MiB)")
    meta = {m: r.scalar(m, t) for m, t in scalars.items()}
    _check_meta(r.name, cfg, meta)
    if not meta["transport"].isprintable():
        raise ValueError(f"{r.name}: transport must be printable text")
    a = {m: r.array(m, t, s) for m, (s, t) in schema.items() if m not in RECOMPUTED}
    for m in recomputed & set(r.info):
        r.check(m, *schema[m][::-1])
    trace = RingTrace(config=cfg, **a, **_placeholders(schema), sm_scale=meta["sm_scale"], device=meta["device"],
                      transport=meta["transport"], seconds=meta["seconds"])
    return ring_verify.verify(r.name, trace)


# ---------------------------------------------------------------- values
def _check_members(r: _Reader, kind: str, expected: set, optional: set = frozenset()) -> None:
    """The file holds exactly the members of its kind's contract (`optional` may be absent), before
    any of them is read; a refusal names at most a few of them."""
    missing, unknown = expected - set(r.info) - optional, set(r.info) - expected
    if missing or unknown:
        raise ValueError(f"{r.name} does not match the {kind} trace contract"
                         + (f"; missing: {_few(missing)}" if missing else "")
                         + (f"; unknown: {_few(unknown)}" if unknown else ""))


def _few(names, most: int = 5) -> str:
    """Some names, each cut to 40 characters, and how many more."""
    names = sorted(names)
    shown = ", ".join((n if len(n) <= 40 else n[:37] + "...") for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _check_meta(name: str, cfg: TraceConfig, meta: dict) -> None:
    if not meta["device"].isprintable():
        raise ValueError(f"{name}: device must be printable text")
    if not (np.isfinite(meta["seconds"]) and 0 <= meta["seconds"] < 1e6):
        raise ValueError(f"{name}: seconds must be a finite number of seconds, got {meta['seconds']!r}")
    if cfg is not None and not np.isclose(meta["sm_scale"], cfg.sm_scale, rtol=1e-6):
        raise ValueError(f"{name}: sm_scale must be 1/sqrt(head_dim) = {cfg.sm_scale:.6g}, got {meta['sm_scale']!r}")
    for key, value in meta.items():
        if key.startswith("counter_") and not 0 <= value < 2**62:
            raise ValueError(f"{name}: {key[8:]} must be a count >= 0, got {value}")
    if "do_seed" in meta:
        limits.check_int("do_seed", meta["do_seed"], 0, 2**31 - 1)


# ---------------------------------------------------------------- the contract's docs
CLASSES = {"forward": AttentionTrace, "backward": BackwardTrace, "softmax": SoftmaxTrace, "ring": RingTrace}


def docs_main(argv) -> int:
    """--docs: rewrite docs/trace-contract.md's tables from the trace classes; --check-docs: 1 if they differ."""
    text = schema.DOCS.read_text()
    new = schema.render(text, CLASSES)
    if "--check-docs" in argv:
        if new != text:
            print(f"{schema.DOCS} is out of date with the trace classes: python -m kernels.trace_io --docs",
                  file=sys.stderr)
            return 1
        return 0
    schema.DOCS.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(docs_main(sys.argv[1:]))
