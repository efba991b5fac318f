"""Which config each kernel runs with on a GPU, and the timer that picks it.

Every config a kernel may run with is listed here. On the first call for a shape the tuner times
every candidate in interleaved rounds (a, b, c, a, b, c, ...) and keeps the one with the lowest
median: a GPU that clocks down as it heats costs every candidate alike, where timing them one
after the other (triton.autotune) favours whichever ran first. The benchmarks time PyTorch and us
with the same `interleaved_medians`.

Decisions are keyed by a shape bucket (`bucket`: lengths up to the next power of two share one),
so a ragged length reuses its bucket's config instead of compiling and timing every candidate
again, and they persist on disk per GPU name and triton and torch version (`cache_path`), so a
second process starts without timing.

Not for: the Config type and how a launch uses it (launch.py), validating (attention.py).
"""
import dataclasses
import json
import math
import os
import re
import statistics
import warnings
from pathlib import Path

from kernels import backend
from kernels.launch import Config

TUNE_ROUNDS = 5
CACHE_ENV = "FA_VIZ_TUNING_CACHE"  # a file for the tuning decisions; empty: none on disk
MAX_CACHE_BYTES = 1 << 20  # a larger file is not read (it is not one this code wrote)
MAX_CACHE_ENTRIES = 4096
TMA_MIN_SEQ_LEN = 4096  # below this, encoding four tensor descriptors costs more than it saves


INTERPRETER_CONFIG = Config(64, 64)
# The forward's list (experiments/README.md, "forward configs"): 128-row q-blocks with 8 warps
# lead at head_dim 128, 4 warps with 2 stages leave shared memory for two programs per SM, the
# split configs are kept for the head dim each won at (at the other they spill registers), and
# 64-row blocks give short causal sequences more programs than SMs.
FORWARD_CONFIGS = (
    Config(128, 128, 8, 3), Config(128, 128, 8, 3, warp_spec=True), Config(128, 64, 8, 3),
    Config(128, 64, 4, 3), Config(128, 64, 4, 2), Config(64, 128, 4, 2), Config(64, 64, 4, 3), Config(64, 64, 4, 2),
    Config(256, 64, 8, 3, split=2, head_dims=(128,)),
    Config(128, 128, 4, 2, split=2, late_v=True, head_dims=(16, 32, 64)),
)
# Decode (flash-decoding): a few query rows against a long cache leave most SMs idle with one program
# per q-block, so each q-block's keys are split over several programs and merged (flash_merge). Thin
# q-blocks waste less of a tile on rows that are not there; the split counts come from
# kv_split_counts and are timed like any other choice.
DECODE_CONFIGS = (Config(16, 128, 4, 3), Config(16, 64, 4, 3), Config(64, 64, 4, 2))
MAX_KV_SPLITS = 32  # the API's; the trace's page keeps limits.MAX_KV_SPLITS
# dK/dV keeps (block_n, d) twice on chip and streams thin q-blocks; dQ the other way round (the
# shapes of Triton's tutorial 06, 32 x 128 and 128 x 32), plus square tiles. The last ones of each
# list are the shapes that do not spill registers at head_dim 128 under triton's sm_90 build
# (every dK/dV shape of the first four does: experiments/README.md, "backward registers").
BACKWARD_CONFIGS = {
    "dkdv": (Config(32, 128, 4, 3), Config(64, 128, 8, 3), Config(64, 64, 4, 3), Config(32, 64, 4, 4),
             Config(32, 128, 8, 3), Config(32, 64, 8, 3), Config(16, 64, 4, 3), Config(32, 32, 4, 3)),
    "dq": (Config(128, 32, 4, 3), Config(128, 64, 8, 3), Config(64, 64, 4, 3), Config(64, 32, 4, 4),
           Config(64, 64, 8, 3), Config(128, 32, 8, 3)),
    # FlashAttention-2's schedule: one kernel, dQ added atomically in float32
    "fused": (Config(64, 64, 4, 3, fused_dq=True), Config(32, 64, 4, 3, fused_dq=True),
              Config(64, 128, 8, 3, fused_dq=True, head_dims=(16, 32, 64)), Config(32, 32, 4, 3, fused_dq=True)),
}


def candidates(configs, head_dim: int, precision: str, use_tma: bool = True, fused: bool = False) -> list[Config]:
    """The configs worth timing. float32 inputs run `tl.dot` at ieee precision on the FMA units:
    no config is fast and each compile takes ~15 s, so one config, the smallest tile (least shared
    memory for float32 tiles). Warp specialization needs tensor descriptors. fused: the backward's
    fused-dQ alternatives, none in the interpreter or for float32 (the split kernels stay)."""
    if fused:
        return [] if backend.INTERPRET or precision == "ieee" else [c for c in configs if c.fits(head_dim)]
    if backend.INTERPRET:
        return [INTERPRETER_CONFIG]
    kept = [c for c in configs if c.fits(head_dim) and (use_tma or not c.warp_spec)]
    kept = kept or [min(configs, key=lambda c: c.block_m * c.block_n)]
    if precision == "ieee":
        return [min(kept, key=lambda c: c.block_m * c.block_n)]
    return kept


def kv_split_counts(programs: int, n_kv_blocks: int, sms: int) -> tuple[int, ...]:
    """Split-KV counts worth timing when `programs` (q-blocks x batch x K/V heads) would leave SMs
    idle: the count that fills about two waves, half and twice it (each at most the kv-blocks and
    MAX_KV_SPLITS); (1,) when the q-blocks alone fill the GPU or there is nothing to split."""
    if programs >= sms or n_kv_blocks < 2:
        return (1,)
    best = math.ceil(2 * sms / programs)
    return tuple(sorted({min(max(2, s), n_kv_blocks, MAX_KV_SPLITS) for s in (best // 2, best, 2 * best)}))


def forward_candidates(head_dim: int, precision: str, use_tma: bool, intervals: bool, splits: tuple,
                       rows: int | None = None) -> list[Config]:
    """The forward's configs for a call: FORWARD_CONFIGS (row intervals run whole q-blocks: no SPLIT
    2). When splitting pays (splits other than (1,)): for decode (at most 64 rows per K/V head: its
    queries, a group's packed heads) DECODE_CONFIGS at each split count beside the unsplit 64 x 64;
    for a longer sequence of few heads, the unsplit list and 64 x 64 at each split count."""
    kept = [c for c in candidates(FORWARD_CONFIGS, head_dim, precision, use_tma) if not (intervals and c.split == 2)]
    if splits == (1,):
        return kept or [INTERPRETER_CONFIG]
    decode = candidates(DECODE_CONFIGS, head_dim, precision, use_tma=False)
    if rows is not None and rows > 64:
        return kept + [dataclasses.replace(decode[-1], kv_splits=s) for s in splits]
    return decode[-1:] + [dataclasses.replace(c, kv_splits=s) for c in decode for s in splits]


def interleaved_medians(fns: dict, rounds: int, bench) -> tuple[dict, dict]:
    """({name: median}, {name: error}) for callables timed by `bench(fn)` in interleaved rounds,
    the median over the rounds for each. One that raises RuntimeError (out of memory, say) is
    dropped from later rounds; its error's first line comes back instead."""
    times = {name: [] for name in fns}
    failed = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            if name in failed:
                continue
            try:
                times[name].append(bench(fn))
            except RuntimeError as e:
                failed[name] = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    return {name: statistics.median(t) for name, t in times.items() if name not in failed}, failed


def _do_bench(fn) -> float:
    import triton

    return triton.testing.do_bench(fn, warmup=10, rep=100, return_mode="median")


def bucket(n: int) -> int:
    """The length a decision is tuned for: the next power of two, at least 64 (1000 and 1024 share
    one; a ragged length reuses its bucket's config)."""
    return max(64, 1 << (max(1, int(n)) - 1).bit_length())


def _plain(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "unknown"


def cache_path() -> Path | None:
    """Where the decisions persist: $FA_VIZ_TUNING_CACHE (a file; set empty for none), else
    ~/.cache/fa-viz/tuning-<GPU>-triton<version>-torch<version>.json (a decision is only good for
    the GPU and the compilers that timed it); None in the interpreter (nothing is timed)."""
    if backend.INTERPRET:
        return None
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV]) if os.environ[CACHE_ENV] else None
    import torch
    import triton

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fa-viz"
    return base / f"tuning-{_plain(gpu)}-triton{_plain(triton.__version__)}-torch{_plain(torch.__version__)}.json"


def disk_key(key: tuple) -> str:
    """A tuning key as text for the file: a device by its type (the file is per GPU model)."""
    return repr(tuple(x.type if type(x).__name__ == "device" else x for x in key))


def read_decisions(path: Path | None) -> dict[str, str]:
    """{disk key: config name} from the file; {} for none, a file too large, not JSON, or not a
    mapping of text to text (a warning says which: the tuner then times as if there were none)."""
    if path is None or not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_CACHE_BYTES:
            raise ValueError(f"larger than {MAX_CACHE_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(data, dict) and len(data) <= MAX_CACHE_ENTRIES
                and all(isinstance(k, str) and isinstance(v, str) and len(v) < 100 for k, v in data.items())):
            raise ValueError(f"not a mapping of at most {MAX_CACHE_ENTRIES} keys to config names")
    except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
        warnings.warn(f"tuning cache {path} ignored: {e}", stacklevel=3)
        return {}
    return data


class Tuner:
    """A config per key, picked once by timing the candidates in interleaved rounds, and kept in
    the file `path()` names (cache_path) for the next process."""

    def __init__(self, path=cache_path):
        self.cache: dict[tuple, Config] = {}
        self.last: Config | None = None
        self.path = path
        self.timed = 0  # keys this process timed (the rest came from memory or the file)

    def pick(self, key: tuple, todo, run, bench=None) -> Config:
        """The config for `key`; on its first call, `todo()` lists the candidates and `run(config)`
        launches one. A decision on disk is taken only when it names one of today's candidates.
        A config this GPU cannot compile or run is dropped, as triton.autotune does."""
        config = self.cache.get(key)
        if config is None:
            configs = todo()
            config = configs[0] if len(configs) == 1 else self._stored(key, configs)
            if config is None:
                config = self._time(configs, run, bench)
                self.timed += 1
                self._store(key, config)
            self.cache[key] = config
        self.last = config
        return config

    def _stored(self, key: tuple, configs) -> Config | None:
        name = read_decisions(self.path()).get(disk_key(key))
        return next((c for c in configs if c.name == name), None)

    def _store(self, key: tuple, config: Config) -> None:
        path = self.path()
        if path is None:
            return
        try:
            data = read_decisions(path)
            data[disk_key(key)] = config.name
            if len(data) > MAX_CACHE_ENTRIES:
                data = dict(list(data.items())[-MAX_CACHE_ENTRIES:])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)  # atomic: another process reads the old file or the new one
        except OSError as e:
            warnings.warn(f"tuning cache {path} not written: {e}", stacklevel=3)

    @staticmethod
    def _time(configs, run, bench=None) -> Config:
        from triton.compiler.errors import CompilationError
        from triton.runtime.errors import OutOfResources

        ok, error = [], None
        for c in configs:  # compile each first
            try:
                run(c)
                ok.append(c)
            except (OutOfResources, CompilationError) as e:
                error = e
        if not ok:
            raise error
        times, failed = interleaved_medians({i: (lambda c=c: run(c)) for i, c in enumerate(ok)}, TUNE_ROUNDS,
                                            bench or _do_bench)
        if not times:
            raise RuntimeError(f"every config failed while being timed: {failed}")
        return ok[min(times, key=times.get)]


forward_tuner = Tuner()
backward_tuner = Tuner()
