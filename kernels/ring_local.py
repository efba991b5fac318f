"""Ring attention on one machine: P processes, one rank each (torch.multiprocessing's forkserver
start method: a fresh server process imports torch once, never CUDA, and each rank forks from it,
as safe as spawn and seconds faster), over gloo on CPU (the kernel in Triton's interpreter), NCCL
when every rank has a GPU, gloo between ranks that share one. They meet at a free TCP port of
127.0.0.1. `run_local(q, k, v, world_size=P, causal=...) -> (out, trace)`.

`LocalRing(P)` starts the ranks once (one process group) and runs several ring attentions on
them; run_local starts one for a single run. A rank that fails is named, never waited on forever:
each rank reports when it has started, when it began and computed a step and when the step's
transfer completed; a rank that raises reports its error, and one that dies says nothing. A run
fails (RankFailure, naming the rank) at the first failure, or (RankTimeout) when the ranks have
not finished `timeout` seconds after it was handed to them (START_TIMEOUT for the start), naming
the ranks that got least far; the ranks are then killed. The trace rank 0 wrote is read back
through trace_io.load, which checks it.

`python -m kernels.ring_local --world-size 4 --causal ...` runs it from the command line;
`python -m kernels.ring_local --scenes scenes/` records the ring scenes the app ships.

Not for: the ring itself (ring.py) or its sharding (ring_plan.py).
"""
import argparse
import datetime
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kernels import backend, limits, ring_plan
from kernels.ring_plan import RingConfig

START_TIMEOUT = 120.0  # seconds for every rank to import torch and triton and join the process group
GROUP_TIMEOUT = 3600.0  # torch.distributed's own limit; the parent names a late rank long before
GRACE = 1.0  # after a first failure, seconds to hear from the other ranks (who failed first)
DEFAULT_TIMEOUT = 120.0


def _cut(text: str, head: int = 300, tail: int = 900) -> str:
    """A rank's error for the parent's message: its start and its end (a compiler's error puts the
    source first and the reason last), at most head + tail characters."""
    return text if len(text) <= head + tail else f"{text[:head]} … {text[-tail:]}"


class RankFailure(RuntimeError):
    """A rank of a local ring failed; `ranks` names it (or them)."""

    def __init__(self, message: str, ranks):
        super().__init__(message)
        self.ranks = tuple(ranks)


class RankTimeout(RankFailure):
    """The ring did not finish within its timeout; `ranks` are the ones that got least far."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, world: int, port: int, jobs, events) -> None:
    """One rank, in its own process: join the group, then run each ring job it is given; rank 0
    writes each job's trace. Every failure is reported (with the job and step), then the process ends."""
    where = {"job": 0, "step": -1}

    def tell(what: str, t: int = -1, text: str = "", kind: str = "") -> None:
        events.put((what, rank, where["job"], t, time.time(), text, kind))

    try:
        import torch
        import torch.distributed as dist

        from kernels import backend as be  # before triton: the interpreter on CPU
        from kernels import ring, ring_trace, trace_io

        n_gpu = torch.cuda.device_count() if not be.INTERPRET else 0
        device = torch.device(f"cuda:{rank % n_gpu}" if n_gpu else "cpu")
        if n_gpu:
            torch.cuda.set_device(device)
        name, stage = ring.choose_backend(device, world)
        dist.init_process_group(name, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=GROUP_TIMEOUT))
        tell("ready")
        while (job := jobs.get()) is not None:
            where["job"], fields, arrays, rows, out_path, fault = job
            where["step"] = -1
            cfg = RingConfig.recorded(**dict(fields))
            t0 = time.perf_counter()

            def progress(what, t):
                where["step"] = t
                tell(what, t)

            rec = ring.ring_rank(*ring.shard(cfg, rank, *arrays, device), cfg, rank,
                                 follow=ring.follow_local(cfg, rank, rows), stage=stage, fault=fault, progress=progress)
            records = ring.gather(rec, rank, world)
            if rank == 0:
                hosts = "on one machine" if n_gpu == 0 else f"on one machine with {n_gpu} GPU{'s' * (n_gpu > 1)}"
                trace = ring_trace.build(cfg, records, rows, ring.transport(name, stage, world, device, hosts),
                                         be.describe(), time.perf_counter() - t0)
                trace_io.save(trace, out_path)
            tell("done")
        dist.destroy_process_group()
    except BaseException as e:  # reported, then the process ends: its peers are told by the parent's kill
        peer = sys.modules.get("kernels.ring")
        kind = "peer" if peer is not None and isinstance(e, peer.PeerError) else "own"
        tell("error", where["step"], f"{type(e).__name__}: {_cut(str(e))}", kind)  # in the pipe before the sockets close
        os._exit(1)


PHASES = ("step", "computed", "passed")  # what ring_rank reports at each step, in this order


def _progress_text(progress: dict, rank: int, world: int) -> str:
    phase = progress.get(rank, -1)
    if phase < 0:
        return "had not begun its first ring step"
    t, k = divmod(phase, len(PHASES))
    return (f"was computing ring step {t + 1} of {world}", f"had computed ring step {t + 1} of {world} and was "
            f"waiting for its transfer", f"had finished ring step {t + 1} of {world}")[k]


def _culprit(errors: dict, died: dict, progress: dict, world: int, ready: set):
    """(ranks, message) of the first failure: a rank's own error first, then a rank that died
    without a word, then the errors ranks met talking to the others."""
    own = sorted((e[0], r) for r, e in errors.items() if e[2] == "own")
    if own:
        r = own[0][1]
        at = f"in ring step {errors[r][3] + 1}" if errors[r][3] >= 0 else "before its first ring step"
        return [r], f"rank {r} failed {at}: {errors[r][1]}"
    if died:
        ranks = sorted(died)
        hint = ("" if any(r in ready for r in ranks) else " (a script that starts local ranks needs the "
                "`if __name__ == '__main__':` guard: the spawned processes import the main module)")
        return ranks, "; ".join(f"rank {r} died (exit code {died[r]}) without a message; by its last report it "
                                f"{_progress_text(progress, r, world)}" for r in ranks) + hint
    r = min(errors, key=lambda x: errors[x][0])
    return [r], f"rank {r} lost its peers: {errors[r][1]}"


class LocalRing:
    """world_size ranks in spawned processes on this machine, one process group, kept for several
    ring attentions (`run`); a failure names the rank and ends them all. A context manager.

    Each run must finish within its `timeout` (seconds from its submission); starting the ranks
    (importing torch and triton, joining the group) within START_TIMEOUT."""

    def __init__(self, world_size: int):
        import torch.multiprocessing as mp

        self.world = limits.check_int("world_size", world_size, ring_plan.MIN_WORLD, ring_plan.MAX_WORLD)
        ctx = mp.get_context("forkserver")  # one server process imports torch once; each rank forks from it
        ctx.set_forkserver_preload(["torch", "torch.distributed", "numpy"])  # never CUDA: a fork could not use it
        self.events = ctx.SimpleQueue()  # put() writes to the pipe at once: a report survives a sudden death
        self.jobs = [ctx.SimpleQueue() for _ in range(self.world)]
        self.tmp = tempfile.TemporaryDirectory(prefix="ring-")
        self.job, self.broken = 0, None
        port = _free_port()
        self.procs = [ctx.Process(target=_child, args=(r, self.world, port, self.jobs[r], self.events), daemon=True)
                      for r in range(self.world)]
        for p in self.procs:
            p.start()
        self.ready: set = set()
        try:
            self._watch(0, START_TIMEOUT)
        except RankFailure as e:
            self.close(str(e))
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, cfg: RingConfig, arrays: tuple, rows, timeout: float, fault=None):
        """One ring attention of the (N, d) NumPy arrays q, k, v: its trace, read back through
        trace_io.load (which checks it). RankFailure / RankTimeout name the rank that failed."""
        from kernels import trace_io

        if self.broken:
            raise RuntimeError(f"this local ring has ended ({self.broken}): start a new one")
        if cfg.world_size != self.world:
            raise ValueError(f"cfg.world_size must be this ring's {self.world} ranks, got {cfg.world_size}")
        timeout = limits.check_float("timeout", timeout, positive=True)
        self.job += 1
        out_path = str(Path(self.tmp.name) / f"ring-{self.job}.npz")
        for q in self.jobs:
            q.put((self.job, cfg.fields(), arrays, rows, out_path, fault))
        try:
            self._watch(self.job, timeout)
        except RankFailure as e:
            self.close(str(e))
            raise
        return trace_io.load(out_path, "the ring's trace")

    def close(self, why: str = "closed") -> None:
        if self.broken is None:
            self.broken = why
            if why == "closed":  # an orderly end: each rank leaves the group and exits; a failure kills at once
                for q, p in zip(self.jobs, self.procs, strict=True):
                    if p.is_alive():
                        q.put(None)
                deadline = time.monotonic() + 10
                for p in self.procs:
                    p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
        self.tmp.cleanup()

    def _watch(self, job: int, timeout: float) -> None:
        """Until every rank has finished job `job` (0: started): their reports, exit codes, the clock."""
        world, begun, first_bad = self.world, time.monotonic(), None
        done, progress, errors = set(), {}, {}
        while True:
            if not self.events.empty():
                what, rank, at_job, t, when, text, kind = self.events.get()
                if what == "ready":
                    self.ready.add(rank)
                elif what == "error":
                    errors[rank] = (when, text, kind, t)
                elif at_job == job and what == "done":
                    done.add(rank)
                elif at_job == job:
                    progress[rank] = len(PHASES) * t + PHASES.index(what)
                continue
            time.sleep(0.05)
            now = time.monotonic()
            died = {r: p.exitcode for r, p in enumerate(self.procs) if p.exitcode not in (None, 0) and r not in errors}
            if (errors or died) and first_bad is None:
                first_bad = now
            if first_bad is not None and now - first_bad >= GRACE:
                ranks, message = _culprit(errors, died, progress, world, self.ready)
                raise RankFailure(f"ring attention on {world} local ranks failed: {message}", ranks)
            if first_bad is None and (len(done) == world if job else len(self.ready) == world):
                return
            if first_bad is None and now - begun > timeout:
                raise self._late(job, timeout, done, progress)

    def _late(self, job: int, timeout: float, done: set, progress: dict) -> "RankTimeout":
        world = self.world
        if not job:
            late = sorted(set(range(world)) - self.ready)
            return RankTimeout(f"ring attention on {world} local ranks: rank{'s' * (len(late) > 1)} "
                               f"{', '.join(map(str, late))} did not start within {timeout:.0f} s", late)
        least = min(progress.get(r, -1) for r in range(world) if r not in done)
        stuck = [r for r in range(world) if r not in done and progress.get(r, -1) == least]
        others = [r for r in range(world) if r not in stuck]
        return RankTimeout(
            f"ring attention on {world} local ranks did not finish within {timeout:g} s: rank"
            f"{'s' * (len(stuck) > 1)} {', '.join(map(str, stuck))} {_progress_text(progress, stuck[0], world)} and "
            f"went no further" + (f" (ranks {', '.join(map(str, others))} got further and waited)" if others else ""),
            stuck)


def _check_inputs(q, k, v):
    import torch

    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            got = f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a torch.Tensor (seq_len, head_dim): one head, as every trace; got {got}")
    if not (q.shape == k.shape == v.shape) or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have one shape and dtype, got {tuple(q.shape)} {q.dtype}, "
                         f"{tuple(k.shape)} {k.dtype}, {tuple(v.shape)} {v.dtype}")
    names = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
    if q.dtype not in names:
        raise ValueError(f"q.dtype must be one of {', '.join(names.values())}, got {q.dtype}")
    return names[q.dtype]


def run_local(q, k, v, world_size: int, causal: bool = False, *, layout: str | None = None, block_m: int = 16,
              block_n: int = 16, rows=None, timeout: float = DEFAULT_TIMEOUT, fault=None, ring: LocalRing | None = None):
    """Ring attention of q, k, v ((seq_len, head_dim) torch tensors, one head) on `world_size` local
    processes: (out (seq_len, head_dim) in q's dtype, RingTrace). layout: "contiguous" or "zigzag"
    (default: zigzag when causal). rows: the rows whose O the trace keeps (default: all that fit).
    Fails within `timeout` seconds of the ranks' start (RankFailure / RankTimeout naming the rank);
    a world size that does not fit seq_len is a ValueError, before any process starts.
    ring: a LocalRing of world_size ranks to run on (else one is started and ended); fault: a
    ring.Fault, for tests."""
    dtype = _check_inputs(q, k, v)
    cfg = RingConfig(seq_len=int(q.shape[0]), head_dim=int(q.shape[1]), world_size=world_size, causal=causal,
                     layout=layout or ("zigzag" if causal is True else "contiguous"), block_m=block_m,
                     block_n=block_n, dtype=dtype, scenario=ring_plan.GIVEN, seed=0)
    arrays = tuple(x.detach().float().cpu().numpy() for x in (q, k, v))
    return _result(cfg, arrays, rows, timeout, fault, ring)


def run_config(cfg: RingConfig, rows=None, timeout: float = DEFAULT_TIMEOUT, fault=None,
               ring: LocalRing | None = None):
    """run_local on the inputs cfg's scenario and seed generate: (out, trace)."""
    from kernels import inputs

    if not isinstance(cfg, RingConfig):
        raise ValueError(f"cfg must be a RingConfig, got {type(cfg).__name__}")
    cfg.check_live()
    if cfg.scenario == ring_plan.GIVEN:
        raise ValueError("cfg.scenario 'given' names inputs handed in: call run_local with them")
    arrays = inputs.attention_inputs(cfg.seq_len, cfg.head_dim, cfg.block_n, cfg.scenario, cfg.seed)
    return _result(cfg, arrays, rows, timeout, fault, ring)


def _result(cfg, arrays, rows, timeout, fault, ring):
    import torch

    from kernels import ring as kring
    from kernels.attention import torch_dtype

    backend.require_triton()
    timeout = limits.check_float("timeout", timeout, positive=True)
    rows = ring_plan.follow_rows(cfg) if rows is None else _rows(rows, cfg.seq_len)
    if fault is not None and (not isinstance(fault, kring.Fault) or fault.what not in kring.FAULTS
                              or not 0 <= fault.rank < cfg.world_size or not 0 <= fault.step < cfg.world_size):
        raise ValueError(f"fault must be ring.Fault(rank in 0..{cfg.world_size - 1}, step in 0.."
                         f"{cfg.world_size - 1}, what in {kring.FAULTS}), got {fault!r}")
    if ring is not None and not isinstance(ring, LocalRing):
        raise ValueError(f"ring must be a LocalRing, got {type(ring).__name__}")
    if ring is None:
        with LocalRing(cfg.world_size) as own:
            trace = own.run(cfg, arrays, rows, timeout, fault)
    else:
        trace = ring.run(cfg, arrays, rows, timeout, fault)
    return torch.from_numpy(trace.out).to(torch_dtype(cfg.dtype)), trace


def _rows(rows, seq_len: int) -> np.ndarray:
    out = sorted({limits.check_int("rows[...]", r, 0, seq_len - 1) for r in rows})
    if not out or len(out) > ring_plan.MAX_FOLLOWED:
        raise ValueError(f"rows must name 1 to {ring_plan.MAX_FOLLOWED} rows of the sequence, got {len(out)}")
    return np.asarray(out, dtype=np.int64)


# ---------------------------------------------------------------- the command line, and the shipped scenes
SCENES = [  # name, title, narration, step, row, config
    ("ring-zigzag", "Ring attention: four ranks, zig-zag shards",
     "Four ranks each keep two chunks of Q, one early and one late; the K/V shards go round the ring and every "
     "rank merges each partial (m, l, O) into its own, like split-KV.", 2, 100,
     dict(seq_len=256, head_dim=32, world_size=4, causal=True, layout="zigzag", block_m=16, block_n=16)),
    ("ring-contiguous", "Ring attention, contiguous shards: the causal skip",
     "With contiguous shards and a causal mask, rank 0 computes one step and skips three, rank 3 computes all "
     "four: what zig-zag sharding balances.", 3, 70,
     dict(seq_len=256, head_dim=32, world_size=4, causal=True, layout="contiguous", block_m=16, block_n=16)),
]


def record_scenes(directory: Path, timeout: float = 600.0) -> list:
    """Run the ring scenes, write their traces and their manifest entries (labelled with what ran them)."""
    import json

    from kernels import scenes, trace_io

    entries = []
    for name, title, narration, step, row, kwargs in SCENES:
        _, trace = run_config(RingConfig(**kwargs), timeout=timeout)  # a fresh ring each: what the scene says
        trace_io.save(trace, directory / f"{name}.npz")
        trace_io.load(directory / f"{name}.npz")
        entries.append({"name": name, "title": title, "narration": narration, "page": "ring", "step": step,
                        "follow": 0, "row": row, "file": f"{name}.npz",
                        "recorded": f"{trace.device} · {trace.transport} · "
                                    f"{datetime.date.today().isoformat()}"[:120]})
        print(f"{name}: max |out - float64| {trace.max_abs_err:.2e}", flush=True)
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"recorded": {}, "scenes": []}
    names = {e["name"] for e in entries}
    manifest["scenes"] = [e for e in manifest["scenes"] if e["name"] not in names] + entries
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    scenes.read_manifest(directory)
    return entries


def main(argv=None) -> int:
    from kernels import ring_trace, trace_io

    ap = argparse.ArgumentParser(prog="python -m kernels.ring_local", description=__doc__.split("\n\n")[0])
    ap.add_argument("--world-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--layout", choices=ring_plan.LAYOUTS, default=None, help="default: zigzag when causal")
    ap.add_argument("--block-m", type=int, default=16)
    ap.add_argument("--block-n", type=int, default=16)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--scenario", default="randn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    ap.add_argument("--out", type=Path, help="write the trace here")
    ap.add_argument("--scenes", type=Path, help="record the shipped ring scenes into this directory instead")
    a = ap.parse_args(argv)
    try:
        if a.scenes:
            record_scenes(a.scenes)
            return 0
        cfg = RingConfig(seq_len=a.seq_len, head_dim=a.head_dim, world_size=a.world_size, causal=a.causal,
                         layout=a.layout or ("zigzag" if a.causal else "contiguous"), block_m=a.block_m,
                         block_n=a.block_n, dtype=a.dtype, scenario=a.scenario, seed=a.seed)
        _, trace = run_config(cfg, timeout=a.timeout)
    except (ValueError, RankFailure) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.out:
        trace_io.save(trace, a.out)
    print(ring_trace.summary(trace), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
