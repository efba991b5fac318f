"""Which config each kernel runs with on a GPU, and the timer that picks it.

Every config a kernel may run with is listed here. On the first call for a shape the tuner times
every candidate in interleaved rounds (a, b, c, a, b, c, ...) and keeps the one with the lowest
median: a GPU that clocks down as it heats costs every candidate alike, where timing them one
after the other (triton.autotune) favours whichever ran first. The benchmarks time PyTorch and us
with the same `interleaved_medians`.

Not for: the Config type and how a launch uses it (launch.py), validating (attention.py).
"""
import dataclasses
import math
import statistics

from kernels import backend
from kernels.launch import Config

TUNE_ROUNDS = 5
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


class Tuner:
    """A config per key, picked once by timing the candidates in interleaved rounds."""

    def __init__(self):
        self.cache: dict[tuple, Config] = {}
        self.last: Config | None = None

    def pick(self, key: tuple, todo, run, bench=None) -> Config:
        """The config for `key`; on its first call, `todo()` lists the candidates and `run(config)`
        launches one. A config this GPU cannot compile or run is dropped, as triton.autotune does."""
        config = self.cache.get(key)
        if config is None:
            configs = todo()
            config = self.cache[key] = configs[0] if len(configs) == 1 else self._time(configs, run, bench)
        self.last = config
        return config

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
