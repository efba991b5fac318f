"""The contract the app consumes: TraceConfig in, AttentionTrace (NumPy arrays only) out.

capture_trace() builds one (batch=1, head=1) input for a scenario, runs the FlashAttention-2
forward kernel once with TRACE on, and returns what the kernel itself wrote: the running max m,
running sum l and rescale factor alpha of every row after every kv-block, which tiles it visited,
the score/probability tiles and the accumulator before and after each rescale, and the elements
it loaded and stored. The float64 reference is attached to check it, never to replace it.

Units are the textbook ones: s = (q . k) * sm_scale, m = running max of s, l = sum exp(s - m),
alpha = exp(m_prev - m_new), out = softmax(s) @ v.
Not for: drawing (viz/) or the fast path (kernels/attention.py flash_attention).
"""
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from kernels import backend, reference, traffic

FORMAT_VERSION = 1
SCENARIOS = ("randn", "large", "increasing", "decreasing")
SCENARIO_HELP = {
    "randn": "q, k, v ~ N(0, 1)",
    "large": "scores about 100x larger: naive softmax would overflow",
    "increasing": "each new kv-block holds a larger max: every step rescales",
    "decreasing": "the max is in the first kv-block: no rescale after it",
}
DTYPES = ("float32", "float16", "bfloat16")
MAX_SEQ_LEN_GPU = 16384
# The interpreter runs every tile in NumPy: 6-7 ms a tile with tracing on, whatever the block
# size (2 cores, measured 2026-11-22: 4096 tiles of 16 x 16 took 28 s, 1024 tiles of 128 x 128
# with head_dim 128 took 11 s). 2048 tiles keep a capture near 15 s, under the 30 s a person
# waits; the seq_len cap keeps the float64 reference and the page light.
CPU_SECONDS_PER_TILE = 0.007
MAX_TILES_CPU = 2048
MAX_SEQ_LEN_CPU = 4096
STATE_BUDGET_BYTES = 64 << 20  # m, l, alpha for every row and kv-block
TILE_BUDGET_BYTES = 64 << 20  # s, p, acc before/after for the q-blocks with tiles


@dataclass(frozen=True)
class TraceConfig:
    seq_len: int = 256
    head_dim: int = 64
    block_m: int = 64
    block_n: int = 64
    causal: bool = False
    dtype: str = "float32"
    seed: int = 0
    scenario: str = "randn"

    def __post_init__(self):
        from kernels.attention import check_blocks, dtypes

        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, (int, np.integer)):
            raise ValueError(f"seq_len must be an integer, got {self.seq_len!r}")
        limit = max_seq_len()
        if not 1 <= self.seq_len <= limit:
            raise ValueError(f"seq_len must be between 1 and {limit} on this backend, got {self.seq_len}")
        check_blocks(self.block_m, self.block_n, self.head_dim)
        if self.dtype not in dtypes():
            raise ValueError(f"dtype must be one of {dtypes()} on this backend, got {self.dtype!r}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2**31), got {self.seed!r}")
        tq, tk = self.n_q_blocks, self.n_kv_blocks
        if backend.INTERPRET and tq * tk > MAX_TILES_CPU:
            raise ValueError(
                f"{tq} x {tk} = {tq * tk} tiles would take the CPU interpreter about "
                f"{tq * tk * CPU_SECONDS_PER_TILE:.0f} s (limit {MAX_TILES_CPU} tiles): "
                f"use larger blocks or a shorter seq_len"
            )
        state = 3 * 4 * tq * tk * self.block_m
        if state > STATE_BUDGET_BYTES:
            raise ValueError(
                f"the running state of {tq} x {tk} tiles takes {state >> 20} MiB "
                f"(limit {STATE_BUDGET_BYTES >> 20} MiB): use a larger block_n or a shorter seq_len"
            )

    @property
    def n_q_blocks(self) -> int:
        return math.ceil(self.seq_len / self.block_m)

    @property
    def n_kv_blocks(self) -> int:
        return math.ceil(self.seq_len / self.block_n)

    @property
    def sm_scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)


def max_seq_len() -> int:
    return MAX_SEQ_LEN_CPU if backend.INTERPRET else MAX_SEQ_LEN_GPU


def tile_bytes(cfg: TraceConfig) -> int:
    """Bytes of s, p, acc_before, acc_after for one q-block (all its kv-blocks)."""
    return 4 * cfg.n_kv_blocks * (2 * cfg.block_m * cfg.block_n + 2 * cfg.block_m * cfg.head_dim)


def default_tile_q_blocks(cfg: TraceConfig) -> tuple[int, ...]:
    """Every q-block if their tiles fit the budget, else evenly spaced ones, first and last included."""
    tq = cfg.n_q_blocks
    fit = max(1, TILE_BUDGET_BYTES // tile_bytes(cfg))
    if fit >= tq:
        return tuple(range(tq))
    return tuple(sorted({round(x) for x in np.linspace(0, tq - 1, fit)}))


@dataclass(frozen=True, eq=False)
class AttentionTrace:
    config: TraceConfig
    q: np.ndarray  # (N, d) as the kernel saw them (after the dtype cast), float32
    k: np.ndarray
    v: np.ndarray
    out: np.ndarray  # (N, d) kernel output, float32
    lse: np.ndarray  # (N,) natural log-sum-exp per row
    m: np.ndarray  # (Tq, Tk, block_m) running max after kv-block j; NaN = not computed
    l: np.ndarray  # (Tq, Tk, block_m) running sum
    alpha: np.ndarray  # (Tq, Tk, block_m) exp(m_prev - m_new)
    visit_order: np.ndarray  # (Tq, Tk) int32: step at which the kernel computed the tile, -1 = skipped
    tile_q_blocks: np.ndarray  # (n,) q-blocks whose tiles were kept, in slot order
    s: np.ndarray  # (n, Tk, block_m, block_n) scores; -inf masked, NaN past seq_len / not computed
    p: np.ndarray  # (n, Tk, block_m, block_n) exp(s - m_new)
    acc_before: np.ndarray  # (n, Tk, block_m, d) unnormalized acc before the rescale
    acc_after: np.ndarray  # (n, Tk, block_m, d) acc * alpha + p @ v
    counters: dict  # elements loaded / stored, counted by the kernel
    ref_out: np.ndarray  # (N, d) float64
    ref_lse: np.ndarray  # (N,) float64
    sm_scale: float
    device: str  # backend.describe() where it ran
    seconds: float  # wall time of the traced launch, compile included

    @property
    def visited(self) -> np.ndarray:
        return self.visit_order >= 0  # (Tq, Tk)

    @property
    def max_abs_err(self) -> float:
        return float(np.max(np.abs(self.out.astype(np.float64) - self.ref_out)))

    def tile_slot(self, q_block: int) -> int | None:
        hits = np.flatnonzero(self.tile_q_blocks == q_block)
        return int(hits[0]) if hits.size else None

    def steps(self, q_block: int) -> np.ndarray:
        """kv-block indices the kernel visited for q_block, in the order it visited them."""
        order = self.visit_order[q_block]
        js = np.flatnonzero(order >= 0)
        return js[np.argsort(order[js])]

    def rows(self, q_block: int) -> int:
        """Rows of q_block that lie inside seq_len."""
        return min(self.config.block_m, self.config.seq_len - q_block * self.config.block_m)

    def model_counters(self) -> dict:
        c = self.config
        return traffic.flash_fa2(c.seq_len, c.head_dim, c.block_m, c.block_n, c.causal)

    # ---------------------------------------------------------------- .npz, no pickle
    _ARRAYS = ("q", "k", "v", "out", "lse", "m", "l", "alpha", "visit_order", "tile_q_blocks",
               "s", "p", "acc_before", "acc_after", "ref_out", "ref_lse")

    def save(self, path) -> None:
        meta = {f"config_{f.name}": np.asarray(getattr(self.config, f.name))
                for f in dataclasses.fields(TraceConfig)}
        counters = {f"counter_{k}": np.asarray(v, dtype=np.int64) for k, v in self.counters.items()}
        np.savez_compressed(
            path, format_version=np.asarray(FORMAT_VERSION),
            sm_scale=np.asarray(self.sm_scale), device=np.asarray(self.device),
            seconds=np.asarray(self.seconds),
            **{name: getattr(self, name) for name in self._ARRAYS}, **meta, **counters,
        )

    @classmethod
    def load(cls, path) -> "AttentionTrace":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format_version" not in z.files:
                    raise ValueError(f"{path} is not a trace file: it has no format_version")
                version = int(z["format_version"])
                if version != FORMAT_VERSION:
                    raise ValueError(
                        f"{path} has trace format version {version}; this app reads version {FORMAT_VERSION}"
                    )
                cfg_values = {f.name: z[f"config_{f.name}"].item() for f in dataclasses.fields(TraceConfig)}
                arrays = {name: z[name] for name in cls._ARRAYS}
                counters = {k[len("counter_"):]: int(z[k]) for k in z.files if k.startswith("counter_")}
                sm_scale, device, seconds = float(z["sm_scale"]), str(z["device"]), float(z["seconds"])
        except KeyError as e:
            raise ValueError(f"{path} is not a complete trace file: missing {e}") from None
        except ValueError as e:
            if str(e).startswith(str(path)):
                raise
            raise ValueError(f"{path} is not a trace file this app can read safely (no pickle): {e}") from None
        except Exception as e:  # truncated zip, not a zip, unreadable
            raise ValueError(f"{path} is corrupt or not a trace file: {type(e).__name__}: {e}") from None
        # a trace recorded elsewhere replays here: check its shapes, not this backend's limits
        cfg = object.__new__(TraceConfig)
        for name, value in cfg_values.items():
            object.__setattr__(cfg, name, value)
        expected = (cfg.n_q_blocks, cfg.n_kv_blocks, cfg.block_m)
        if arrays["m"].shape != expected or arrays["q"].shape != (cfg.seq_len, cfg.head_dim):
            raise ValueError(f"{path}: array shapes do not match its config {cfg}")
        return cls(config=cfg, counters=counters, sm_scale=sm_scale, device=device, seconds=seconds, **arrays)


# ---------------------------------------------------------------- inputs per scenario
def make_inputs(cfg: TraceConfig):
    """q, k, v as float32 NumPy (seq_len, head_dim), before the cast to cfg.dtype."""
    rng = np.random.default_rng(cfg.seed)
    n, d = cfg.seq_len, cfg.head_dim
    q, k, v = (rng.standard_normal((n, d)) for _ in range(3))
    if cfg.scenario == "large":
        q, k = q * 10.0, k * 10.0  # s = q.k/sqrt(d) about 100x larger than for randn
    elif cfg.scenario in ("increasing", "decreasing"):
        # s_rc ~ level(block of c) + small noise: q_r[0] * k_c[0] * sm_scale = k_c[0]
        q, k = q * 0.1, k * 0.1
        q[:, 0] = math.sqrt(d)
        block = np.arange(n) // cfg.block_n
        level = block if cfg.scenario == "increasing" else block.max() - block
        k[:, 0] = 1.5 * level + 0.3 * rng.standard_normal(n)
    return q.astype(np.float32), k.astype(np.float32), v.astype(np.float32)


def capture_trace(cfg: TraceConfig, q_blocks=None) -> AttentionTrace:
    """Run the kernel once with TRACE on. q_blocks: which q-blocks keep their per-tile s, p and
    acc (default: all of them when they fit TILE_BUDGET_BYTES, else evenly spaced ones)."""
    backend.require_triton()
    import torch

    from kernels import attention

    if q_blocks is None:
        q_blocks = default_tile_q_blocks(cfg)
    q_blocks = tuple(sorted({int(i) for i in q_blocks}))
    for i in q_blocks:
        if not 0 <= i < cfg.n_q_blocks:
            raise ValueError(f"q_blocks must lie in [0, {cfg.n_q_blocks - 1}], got {i}")
    if len(q_blocks) * tile_bytes(cfg) > TILE_BUDGET_BYTES:
        raise ValueError(
            f"tiles of {len(q_blocks)} q-blocks take {len(q_blocks) * tile_bytes(cfg) >> 20} MiB "
            f"(limit {TILE_BUDGET_BYTES >> 20} MiB): ask for fewer q-blocks"
        )
    dt = attention.torch_dtype(cfg.dtype)
    host = [torch.from_numpy(a).to(dt) for a in make_inputs(cfg)]
    q, k, v = (t.to(backend.DEVICE)[None, None] for t in host)  # (1, 1, N, d)
    buf = attention.TraceBuffers(cfg.seq_len, cfg.head_dim, cfg.block_m, cfg.block_n, q_blocks, backend.DEVICE)
    t0 = time.perf_counter()
    out, lse = attention._launch(q, k, v, cfg.causal, cfg.sm_scale, cfg.block_m, cfg.block_n, trace=buf)
    if backend.DEVICE == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0

    def np32(t):
        return t.detach().float().cpu().numpy()

    q64, k64, v64 = (t.double().numpy() for t in host)  # exactly what the kernel saw
    ref = reference.attention_rows(q64, k64, v64, cfg.causal, cfg.sm_scale)
    n = len(q_blocks)
    return AttentionTrace(
        config=cfg,
        q=np32(host[0]), k=np32(host[1]), v=np32(host[2]),
        out=np32(out[0, 0]), lse=np32(lse[0, 0]),
        m=np32(buf.state[0]), l=np32(buf.state[1]), alpha=np32(buf.state[2]),
        visit_order=buf.visit.cpu().numpy(),
        tile_q_blocks=np.asarray(q_blocks, dtype=np.int64),
        s=np32(buf.s[:n]), p=np32(buf.p[:n]),
        acc_before=np32(buf.acc[0, :n]), acc_after=np32(buf.acc[1, :n]),
        counters=dict(zip(attention.COUNTER_KEYS, (int(c) for c in buf.counters.cpu()))),
        ref_out=ref["out"], ref_lse=ref["lse"],
        sm_scale=cfg.sm_scale, device=backend.describe(), seconds=seconds,
    )


def scores_softmax_counts(trace: AttentionTrace) -> dict:
    """Run every softmax kernel over this trace's whole N x N score matrix S with counting on.

    {variant: {"loads", "stores"}} as the kernels counted them. S is rebuilt from the trace's own
    q and k (in float32; causal entries -inf); single_pass only where a row fits on chip.
    """
    backend.require_triton()
    import torch

    from kernels import softmax

    c = trace.config
    q, k = (torch.from_numpy(a).to(backend.DEVICE) for a in (trace.q, trace.k))
    s = (q @ k.T) * trace.sm_scale  # (N, N)
    if c.causal:
        s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
    out = {}
    for variant in softmax.VARIANTS:
        if variant == "single_pass" and c.seq_len > softmax.SINGLE_PASS_MAX_COLS:
            continue
        _, counts = softmax.softmax(s, variant=variant, return_counts=True)
        out[variant] = counts
    return out
