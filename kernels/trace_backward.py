"""The backward trace: what the FlashAttention-2 backward kernels wrote for one (batch, head).

capture_backward_trace(cfg) builds the inputs of kernels/trace.py for cfg (make_inputs), an
output gradient dO drawn from the seed, runs the forward for out and the log-sum-exp, then the
backward with the dK/dV kernel's TRACE on. For every (kv-block j, q-block i) tile that kernel
visits it wrote the recomputed P, dP = dO V^T, dS = P o (dP - D), and the dK_j, dV_j accumulators
after the step; the preprocess kernel wrote D = rowsum(dO o O) per row; all three kernels counted
the elements they loaded and stored. float64 references are attached to check them.

Units are the textbook ones: P = exp(s - lse) with s = (q . k) * sm_scale, dS = P o (dP - D),
dK = sm_scale * dS^T Q, dQ = sm_scale * dS K, dV = P^T dO.
Not for: drawing (viz/), the fast path (attention.py) or the file format (trace_io.py).
"""
import time
from dataclasses import dataclass, field

import numpy as np

from kernels import backend, limits, reference, traffic
from kernels.inputs import make_do, make_inputs
from kernels.schema import array
from kernels.trace import TraceConfig, tile_blocks

# One traced backward in the interpreter (forward, preprocess, dK/dV with TRACE on, dQ) takes
# about 7.5 ms a tile, like a traced forward, so TraceConfig's limit of 2048 tiles holds for it too.
CPU_SECONDS_PER_TILE = 0.0075


def capture_seconds(cfg: TraceConfig) -> float:
    """Rough time of one traced backward on this backend."""
    return cfg.n_q_blocks * cfg.n_kv_blocks * CPU_SECONDS_PER_TILE if backend.INTERPRET else 1.0


def tile_bytes(cfg: TraceConfig) -> int:
    """Bytes of P, dP, dS and the dK, dV accumulators for one kv-block (all its q-block steps)."""
    return 4 * cfg.n_q_blocks * (3 * cfg.block_m * cfg.block_n + 2 * cfg.block_n * cfg.head_dim)


@dataclass(frozen=True, eq=False)
class BackwardTrace:
    config: TraceConfig
    do_seed: int
    q: np.ndarray = array("N, d", "f4", "the inputs as the kernels saw them (after the dtype cast)")
    k: np.ndarray = array("N, d", "f4", "")
    v: np.ndarray = array("N, d", "f4", "")
    do: np.ndarray = array("N, d", "f4", "the output gradient dO")
    out: np.ndarray = array("N, d", "f4", "the forward kernel's output")
    lse: np.ndarray = array("N", "f4", "the log-sum-exp the forward stored")
    delta: np.ndarray = array("N", "f4", "D = rowsum(dO o O), written by the preprocess kernel")
    dq: np.ndarray = array("N, d", "f4", "the kernels' gradients")
    dk: np.ndarray = array("N, d", "f4", "")
    dv: np.ndarray = array("N, d", "f4", "")
    visit_order: np.ndarray = array("Tk, Tq", "i4", "the step at which kv-block j's program visited q-block i, -1 "
                                    "skipped")
    tile_kv_blocks: np.ndarray = array("n", "i8", "the kv-blocks whose tiles were kept, in slot order")
    p: np.ndarray = array("n, Tq, bm, bn", "f4", "P = exp(s - lse) recomputed; 0 where causal-masked, NaN past N")
    dp: np.ndarray = array("n, Tq, bm, bn", "f4", "dP = dO V^T")
    ds: np.ndarray = array("n, Tq, bm, bn", "f4", "dS = P o (dP - D)")
    dk_acc: np.ndarray = array("n, Tq, bn, d", "f4", "dK_j after the step (sm_scale applied)")
    dv_acc: np.ndarray = array("n, Tq, bn, d", "f4", "dV_j after the step")
    ref_delta: np.ndarray = array("N", "f8", "float64 reference, from the float64 output")
    ref_dq: np.ndarray = array("N, d", "f8", "float64 references")
    ref_dk: np.ndarray = array("N, d", "f8", "")
    ref_dv: np.ndarray = array("N, d", "f8", "")
    counters: dict = field()  # elements loaded / stored by the three kernels (traffic.BACKWARD_COUNTERS)
    sm_scale: float = field()
    device: str = field()
    seconds: float = field()  # wall time of the traced backward launches, compile included

    @property
    def visited(self) -> np.ndarray:
        return self.visit_order >= 0  # (Tk, Tq)

    def tile_slot(self, kv_block: int) -> int | None:
        hits = np.flatnonzero(self.tile_kv_blocks == kv_block)
        return int(hits[0]) if hits.size else None

    def has_all_tiles(self) -> bool:
        return len(self.tile_kv_blocks) == self.config.n_kv_blocks

    def row_values(self, row: int, name: str) -> np.ndarray | None:
        """(N,) one query row of p, dp or ds put together from the kernel's tiles; None unless
        every kv-block kept its tiles. Causal: entries past the diagonal are what the kernel
        holds there (P = dS = 0, dP computed)."""
        if not self.has_all_tiles():
            return None
        c = self.config
        i, r = divmod(row, c.block_m)
        a = getattr(self, name)  # (n, Tq, block_m, block_n)
        parts = []
        for j in range(c.n_kv_blocks):
            slot = self.tile_slot(j)
            if self.visit_order[j, i] >= 0:
                parts.append(a[slot, i, r, : len(c.keys(j))])
            else:  # tile above the causal diagonal: never computed, exactly 0 in P and dS
                parts.append(np.full(len(c.keys(j)), np.nan if name == "dp" else 0.0, dtype=np.float32))
        return np.concatenate(parts)

    def model_counters(self) -> dict:
        c = self.config
        return traffic.flash_backward(c.seq_len, c.head_dim, c.block_m, c.block_n, c.causal)

    def max_abs_errs(self) -> dict:
        """max |kernel - float64| of each gradient and of D."""
        return {name: float(np.max(np.abs(getattr(self, name).astype(np.float64) - getattr(self, "ref_" + name))))
                for name in ("dq", "dk", "dv", "delta")}


def capture_backward_trace(cfg: TraceConfig, kv_blocks=None, do_seed: int | None = None) -> BackwardTrace:
    """Run the forward, then the backward with the dK/dV kernel's TRACE on, once. kv_blocks:
    which kv-blocks keep their per-tile P, dP, dS and accumulators (default: all of them when
    they fit TILE_BUDGET_BYTES, else evenly spaced ones). do_seed: dO's seed (default cfg.seed)."""
    backend.require_triton()
    import torch

    from kernels import attention, flash_bwd, flash_fwd
    from kernels.trace_buffers import BackwardTraceBuffers

    if not isinstance(cfg, TraceConfig):
        raise ValueError(f"cfg must be a TraceConfig, got {type(cfg).__name__}")
    if cfg.loop_order != "fa2" or cfg.kv_splits != 1:
        raise ValueError(f"the backward is FlashAttention-2's: loop_order must be 'fa2' and kv_splits 1, got "
                         f"{cfg.loop_order!r} and {cfg.kv_splits}")
    if cfg.hand_sized:
        raise ValueError(f"the backward trace runs blocks and head dims the kernels compile (16 and up): got block_m "
                         f"{cfg.block_m}, block_n {cfg.block_n}, head_dim {cfg.head_dim}")
    cfg.check_live()
    do_seed = cfg.seed if do_seed is None else limits.check_int("do_seed", do_seed, 0, 2**31 - 1)
    kv_blocks = tile_blocks(cfg, kv_blocks, cfg.n_kv_blocks, tile_bytes(cfg), "kv_blocks")
    dt = attention.torch_dtype(cfg.dtype)
    host = [torch.from_numpy(a).to(dt) for a in (*make_inputs(cfg), make_do(cfg, do_seed))]
    q, k, v, do = (t.to(backend.DEVICE)[None, None] for t in host)  # (1, 1, N, d)
    config = cfg.launch_config()
    out, lse = flash_fwd.launch(q, k, v, cfg.causal, cfg.sm_scale, config)
    buf = BackwardTraceBuffers(cfg.seq_len, cfg.head_dim, cfg.block_m, cfg.block_n, kv_blocks, backend.DEVICE,
                               flash_bwd.COUNTER_KEYS)
    t0 = time.perf_counter()
    dq, dk, dv, delta, _ = flash_bwd.launch(q, k, v, out, lse, do, cfg.causal, cfg.sm_scale, config, config,
                                            trace=buf)
    if backend.DEVICE == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0

    def np32(t):
        return t.detach().float().cpu().numpy()

    q64, k64, v64, do64 = (t.double().numpy() for t in host)  # exactly what the kernels saw
    ref = reference.attention_backward_rows(q64, k64, v64, do64, cfg.causal, cfg.sm_scale)
    return BackwardTrace(
        config=cfg, do_seed=do_seed,
        q=np32(host[0]), k=np32(host[1]), v=np32(host[2]), do=np32(host[3]),
        out=np32(out[0, 0]), lse=np32(lse[0, 0]), delta=np32(delta[0, 0]),
        dq=np32(dq[0, 0]), dk=np32(dk[0, 0]), dv=np32(dv[0, 0]),
        visit_order=buf.visit.cpu().numpy(),
        tile_kv_blocks=np.asarray(kv_blocks, dtype=np.int64),
        p=np32(buf.p), dp=np32(buf.dp), ds=np32(buf.ds), dk_acc=np32(buf.dk), dv_acc=np32(buf.dv),
        counters=dict(zip(flash_bwd.COUNTER_KEYS, (int(c) for c in buf.counters.cpu()), strict=True)),
        ref_delta=ref["d"], ref_dq=ref["dq"], ref_dk=ref["dk"], ref_dv=ref["dv"],
        sm_scale=cfg.sm_scale, device=backend.describe(), seconds=seconds,
    )
