"""Ring attention on torch.distributed: each rank keeps a shard of Q, the K/V shards travel around
the ring, and every rank merges the partial softmax states the project's own forward kernel
computes, with the split-KV merge.

One rank (`ring_rank`): P ring steps. At step t it holds the K/V shard of rank (r - t) mod P (an
8-byte tag sent along with the shard says whose it is). It starts passing that shard on to rank
r + 1 and receiving the next one from rank r - 1 with `torch.distributed.batch_isend_irecv`, and
while the transfer is in flight runs the forward kernel (kernels/flash_fwd.py, TRACE on: its
running max m and sum l of every row, its normalized O, its own K-load counter) on each (query
chunk, key chunk) pair the plan (ring_plan.py) does not skip, then merges the step's partials into
the running state (m, l, O). After the last step its rows of the output are O, and the
log-sum-exp m + log l. The sharding (contiguous or zig-zag) is kernels/ring_plan.py's.

Backends: NCCL with one rank per GPU; gloo on CPU tensors (the kernel in Triton's interpreter),
or gloo between ranks that share a GPU (each shard staged through host memory for the transfer).

`python -m kernels.ring ...` under `torchrun --nproc_per_node=P` runs it on real ranks and writes
the trace (rank 0); kernels/ring_local.py launches P processes on one machine.

Not for: the sharding arithmetic (ring_plan.py), the trace object (ring_trace.py), spawning
local processes and naming the rank that failed (ring_local.py).
"""
import argparse
import datetime
import os
import sys
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from kernels import backend, flash_fwd, ring_plan, ring_trace, traffic
from kernels.launch import Config
from kernels.ring_plan import DIAGONAL, SKIPPED, RingConfig
from kernels.trace_buffers import TraceBuffers

TAG_BYTES = ring_plan.TAG_BYTES
FAULTS = ("raise", "hang", "exit")
K_LOADS = traffic.FA2_COUNTERS.index("k_loads")


class PeerError(RuntimeError):
    """A torch.distributed call failed: most often because another rank died or stopped answering."""


class Fault(NamedTuple):
    """Make rank `rank` fail at the start of ring step `step` (tests and demonstrations): raise an
    exception, hang (sleep), or exit the process without a word."""
    rank: int
    step: int
    what: str


def merge(m_s, l_s, o_s):
    """The split-KV merge of partial softmax states (kernels/flash_merge.py's kernel, and
    reference.merge_states in float64), over parts s: M = max_s m_s, L = sum_s l_s e^(m_s - M),
    O = sum_s (l_s e^(m_s - M) / L) O_s. m_s, l_s (S, R), o_s (S, R, d) normalized, float32; a part
    that saw no key (m_s = -inf, l_s = 0) weighs 0. Returns M, L (R,) and O (R, d)."""
    live = torch.isfinite(m_s) & (l_s > 0)
    big_m = torch.where(live, m_s, float("-inf")).amax(0)  # (R,)
    shift = torch.where(torch.isfinite(big_m), big_m, 0.0)
    w = torch.where(live, l_s * torch.exp(torch.where(live, m_s, 0.0) - shift), 0.0)  # (S, R)
    big_l = w.sum(0)
    o = (w[..., None] * o_s).sum(0) / torch.where(big_l > 0, big_l, 1.0)[:, None]  # (R, d)
    return big_m, big_l, o


class Partial(NamedTuple):
    o: torch.Tensor  # (c, d) float32, normalized
    m: torch.Tensor  # (c,) the kernel's running max after its last tile, natural units
    l: torch.Tensor  # (c,) its running sum
    k_loads: int  # elements of K the kernel loaded (its own counter)


def pair_partial(q, k, v, causal: bool, sm_scale: float, config: Config) -> Partial:
    """One (query chunk, key chunk) pair through the forward kernel with TRACE on: O, and each row's
    (m, l) read from the state the kernel wrote after the row's last tile. q, k, v (c, d)."""
    c, d = q.shape
    q4, k4, v4 = (x.contiguous()[None, None] for x in (q, k, v))  # (1, 1, c, d)
    out = torch.empty((1, 1, c, d), dtype=torch.float32, device=q.device)  # partial O kept in float32
    buf = TraceBuffers(c, d, config.block_m, config.block_n, (), q.device, counter_keys=traffic.FA2_COUNTERS)
    flash_fwd.launch(q4, k4, v4, causal, sm_scale, config, trace=buf, out=out)
    last = buf.visit.long().argmax(dim=1)  # (Tq,) each q-block's last tile: the largest step
    blocks = torch.arange(buf.m.shape[0], device=q.device)
    m = buf.m[blocks, last].reshape(-1)[:c]
    l = buf.l[blocks, last].reshape(-1)[:c]
    return Partial(out[0, 0], m, l, int(buf.counters[K_LOADS]))


class _Pass:
    """One step's transfer, in flight while the kernel computes: the held K/V shard (and its tag) to
    rank + 1, the next one from rank - 1. `stage`: gloo between GPU ranks, through host memory."""

    def __init__(self, kv, tag, rank: int, world: int, stage: bool):
        send_kv, send_tag = (kv.cpu(), tag.cpu()) if stage else (kv, tag)
        self.recv_kv, self.recv_tag = torch.empty_like(send_kv), torch.empty_like(send_tag)
        nxt, prv = (rank + 1) % world, (rank - 1) % world
        ops = [dist.P2POp(dist.isend, send_kv, nxt, tag=0), dist.P2POp(dist.isend, send_tag, nxt, tag=1),
               dist.P2POp(dist.irecv, self.recv_kv, prv, tag=0), dist.P2POp(dist.irecv, self.recv_tag, prv, tag=1)]
        try:
            self.reqs = dist.batch_isend_irecv(ops)
        except Exception as e:
            raise PeerError(f"rank {rank}: passing the K/V shard to rank {nxt} failed: {type(e).__name__}: {e}") from e
        self.sent = send_kv.numel() * send_kv.element_size() + send_tag.numel() * send_tag.element_size()
        self.rank, self.prv = rank, prv

    def wait(self, device):
        try:
            for req in self.reqs:
                req.wait()
            if device.type == "cuda":  # NCCL's wait only orders the streams: the time is the transfer's
                torch.cuda.synchronize(device)
        except Exception as e:
            raise PeerError(f"rank {self.rank}: waiting for the K/V shard of rank {self.prv} failed: "
                            f"{type(e).__name__}: {e}") from e
        return self.recv_kv.to(device), self.recv_tag.to(device)


def _inject(fault: Fault | None, rank: int, step: int) -> None:
    if fault is None or fault.rank != rank or fault.step != step:
        return
    if fault.what == "raise":
        raise RuntimeError(f"fault injected on rank {rank} at ring step {step + 1}")
    if fault.what == "hang":
        time.sleep(1e6)
    os._exit(3)  # "exit": the process dies without a message


def ring_rank(q, k, v, cfg: RingConfig, rank: int, *, follow=None, stage: bool = False, fault: Fault | None = None,
              progress=None) -> dict:
    """This rank's part of ring attention, inside an initialized process group of cfg.world_size
    ranks. q, k, v: its shard (rows_per_rank, head_dim) in cfg.dtype on its device, rows in
    cfg.rank_rows(rank) order. follow: local rows whose O is recorded at every step (default all).
    progress(event, step) is told when a step begins ("step"), was computed ("computed") and when its
    transfer completed ("passed").
    Returns the rank's record (NumPy): its rows of the output and everything ring_trace keeps."""
    p, ch, rows, c, d = cfg.world_size, cfg.chunks_per_rank, cfg.rows_per_rank, cfg.chunk_len, cfg.head_dim
    dev = q.device
    follow = np.arange(rows) if follow is None else np.asarray(follow, dtype=np.int64)
    config = Config(cfg.block_m, cfg.block_n)
    kv = torch.stack([k, v]).contiguous()  # (2, R, d): what travels
    tag = torch.tensor([rank], dtype=torch.int64, device=dev)  # whose shard it is
    m = torch.full((rows,), float("-inf"), dtype=torch.float32, device=dev)
    l = torch.zeros(rows, dtype=torch.float32, device=dev)
    o = torch.zeros((rows, d), dtype=torch.float32, device=dev)
    rec = {"held": np.zeros(p, np.int64), "kinds": np.zeros((p, ch, ch), np.int32),
           "part_m": np.zeros((p, ch, rows), np.float32), "part_l": np.zeros((p, ch, rows), np.float32),
           "merged_m": np.zeros((p, rows), np.float32), "merged_l": np.zeros((p, rows), np.float32),
           "part_o": np.zeros((len(follow), p, ch, d), np.float32), "merged_o": np.zeros((len(follow), p, d), np.float32),
           "k_loads": np.zeros(p, np.int64), "sent_bytes": np.zeros(p, np.int64),
           "compute_seconds": np.zeros(p), "wait_seconds": np.zeros(p)}
    for t in range(p):
        if progress:
            progress("step", t)
        _inject(fault, rank, t)
        src = int(tag.item())
        pending = _Pass(kv, tag, rank, p, stage) if t < p - 1 else None
        t0 = time.perf_counter()
        kinds = np.array([[cfg.pair_kind(qc, kc) for kc in cfg.rank_chunks(src)] for qc in cfg.rank_chunks(rank)],
                         dtype=np.int32)
        pm = torch.full((ch, rows), float("-inf"), dtype=torch.float32, device=dev)
        pl = torch.zeros((ch, rows), dtype=torch.float32, device=dev)
        po = torch.zeros((ch, rows, d), dtype=torch.float32, device=dev)
        for a in range(ch):  # -- each (query chunk, key chunk) pair the plan does not skip --
            qa = slice(a * c, (a + 1) * c)
            for b in range(ch):
                if kinds[a, b] == SKIPPED:  # every key in the future of every query: never computed
                    continue
                kb = slice(b * c, (b + 1) * c)
                part = pair_partial(q[qa], kv[0, kb], kv[1, kb], bool(kinds[a, b] == DIAGONAL), cfg.sm_scale,
                                    config)
                pm[b, qa], pl[b, qa], po[b, qa] = part.m, part.l, part.o
                rec["k_loads"][t] += part.k_loads
        # -- merge the step's partials into the running state (the split-KV merge) --
        m, l, o = merge(torch.cat([m[None], pm]), torch.cat([l[None], pl]), torch.cat([o[None], po]))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        rec["compute_seconds"][t] = time.perf_counter() - t0
        rec["held"][t], rec["kinds"][t] = src, kinds
        rec["part_m"][t], rec["part_l"][t] = pm.cpu().numpy(), pl.cpu().numpy()
        rec["merged_m"][t], rec["merged_l"][t] = m.cpu().numpy(), l.cpu().numpy()
        rec["part_o"][:, t] = po.cpu().numpy().transpose(1, 0, 2)[follow]
        rec["merged_o"][:, t] = o.cpu().numpy()[follow]
        if progress:
            progress("computed", t)
        if pending is not None:  # -- the next shard: the transfer ran while the kernel did --
            t1 = time.perf_counter()
            kv, tag = pending.wait(dev)
            rec["wait_seconds"][t] = time.perf_counter() - t1
            rec["sent_bytes"][t] = pending.sent
        if progress:
            progress("passed", t)
    out = o.to(q.dtype)
    rec.update(rank=rank, follow=follow, out=out.float().cpu().numpy(), lse=(m + torch.log(l)).cpu().numpy(),
               q=q.float().cpu().numpy(), k=k.float().cpu().numpy(), v=v.float().cpu().numpy())
    return rec


def gather(rec: dict, rank: int, world: int) -> list | None:
    """Every rank's record on rank 0 (None elsewhere)."""
    records = [None] * world if rank == 0 else None
    try:
        dist.gather_object(rec, records, dst=0)
    except Exception as e:
        raise PeerError(f"rank {rank}: gathering the records on rank 0 failed: {type(e).__name__}: {e}") from e
    return records


def shard(cfg: RingConfig, rank: int, q, k, v, device) -> tuple:
    """Rank `rank`'s rows of q, k, v ((N, d) NumPy or torch), in cfg.dtype on `device`."""
    from kernels.attention import torch_dtype

    idx = torch.from_numpy(cfg.rank_rows(rank))
    return tuple(torch.as_tensor(x)[idx].to(torch_dtype(cfg.dtype)).to(device) for x in (q, k, v))


def choose_backend(device: torch.device, ranks_per_host: int) -> tuple[str, bool]:
    """(backend, stage): NCCL when every rank of the host has its own GPU, else gloo (staged through
    host memory when the tensors live on a GPU)."""
    if device.type == "cuda":
        if torch.cuda.device_count() >= ranks_per_host and dist.is_nccl_available():
            return "nccl", False
        return "gloo", True
    return "gloo", False


def transport(name: str, stage: bool, world: int, device: torch.device, hosts: str) -> str:
    where = ("CPU tensors" if device.type == "cpu" else
             "ranks sharing GPUs, each shard staged through host memory" if stage else "one GPU per rank")
    return f"{name} · {world} processes {hosts} · {where}"


def follow_local(cfg: RingConfig, rank: int, rows) -> np.ndarray:
    """The local indices of the followed rows (sequence rows `rows`) that rank `rank` holds."""
    mine = cfg.rank_rows(rank)
    return np.flatnonzero(np.isin(mine, np.asarray(rows)))


# ---------------------------------------------------------------- torchrun entry point
def _args(argv):
    ap = argparse.ArgumentParser(prog="torchrun --nproc_per_node=P -m kernels.ring",
                                 description="Ring attention on torchrun's ranks; rank 0 writes the trace.")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--layout", choices=ring_plan.LAYOUTS, default=None, help="default: zigzag when causal")
    ap.add_argument("--block-m", type=int, default=64)
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--scenario", default="randn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=("nccl", "gloo"), default=None, help="default: NCCL with a GPU per rank")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds any collective may wait")
    ap.add_argument("--out", default="ring.npz", help="the trace file rank 0 writes")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    from kernels import inputs, trace_io

    a = _args(argv)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        print("kernels.ring runs on torchrun's ranks: torchrun --nproc_per_node=P -m kernels.ring ... (on one "
              "machine without torchrun: python -m kernels.ring_local)", file=sys.stderr)
        return 2
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local, per_host = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", world))
    cfg = RingConfig(seq_len=a.seq_len, head_dim=a.head_dim, world_size=world, causal=a.causal,
                     layout=a.layout or ("zigzag" if a.causal else "contiguous"), block_m=a.block_m,
                     block_n=a.block_n, dtype=a.dtype, scenario=a.scenario, seed=a.seed)
    device = torch.device(f"cuda:{local % max(1, torch.cuda.device_count())}" if not backend.INTERPRET else "cpu")
    name, stage = choose_backend(device, per_host)
    if a.backend:
        name, stage = a.backend, a.backend == "gloo" and device.type == "cuda"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(name, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=a.timeout))
    t0 = time.perf_counter()
    q, k, v = inputs.attention_inputs(cfg.seq_len, cfg.head_dim, cfg.block_n, cfg.scenario, cfg.seed)
    rows = ring_plan.follow_rows(cfg)
    rec = ring_rank(*shard(cfg, rank, q, k, v, device), cfg, rank, follow=follow_local(cfg, rank, rows), stage=stage)
    records = gather(rec, rank, world)
    if rank == 0:
        hosts = "on one host" if per_host == world else f"on {world // per_host} hosts"
        trace = ring_trace.build(cfg, records, rows, transport(name, stage, world, device, hosts), backend.describe(),
                                 time.perf_counter() - t0)
        trace_io.save(trace, a.out)
        print(ring_trace.summary(trace), flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
