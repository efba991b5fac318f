"""FlashAttention-2, the public API: flash_attention (differentiable), its forward and backward.

Checks every argument (a ValueError naming it, the value and what is allowed), picks the config
on a GPU (tuning.py; 64 x 64 in the interpreter) and launches the kernels of flash_fwd.py and
flash_bwd.py. The forward and backward are torch.library operators (torch.ops.fa_viz), which
torch.compile takes; eager calls run the same two functions through a torch.autograd.Function
(the dispatcher's per-call work is host time a small call cannot hide). The forward saves q, k,
v, out and the log-sum-exp (O(N) per row), never P.

Attention as models run it, with flash-attn's conventions (kernels/masks.py): a sliding window
`window_size=(left, right)`, packed documents `cu_seqlens`, GQA/MQA (k and v with fewer heads than
q), decode (fewer queries than keys, aligned to the end of the keys; split-KV when the q-blocks
alone would leave the GPU idle). Forward and backward support every combination.

Not for: the kernels (flash_fwd.py, flash_bwd.py) or traces (trace.py, trace_backward.py).
"""
import math
import weakref

import numpy as np
import torch

from kernels import backend, flash_bwd, flash_fwd, graphs, masks, tuning
from kernels.launch import Config, precision
from kernels.limits import HEAD_DIMS, check_blocks, check_bool, check_choice, check_float, dtypes, shown_value

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[check_choice("dtype", name, tuple(_TORCH_DTYPES))]


def sm_scale_of(sm_scale, head_dim: int) -> float:
    return head_dim ** -0.5 if sm_scale is None else check_float("sm_scale", sm_scale, positive=True)


def check_inputs(q, k, v, causal, window_size=(-1, -1)) -> tuple:
    """(q, k, v, causal) checked: q (batch, heads, n_q, head_dim), k and v (batch, kv_heads, n_kv,
    head_dim) with kv_heads dividing heads. k and v are made contiguous where their strides differ
    (the kernels take one set for both; for q too when the shapes are one), q where GQA views it."""
    backend.require_triton()
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor (batch, heads, seq_len, head_dim), "
                             f"got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be (batch, heads, seq_len, head_dim), got shape {tuple(t.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have one shape, got {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q, k, v must have one batch size and head_dim, got {tuple(q.shape)}, {tuple(k.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in [_TORCH_DTYPES[d] for d in dtypes()]:
        note = " (the interpreter has no bfloat16 arithmetic)" if backend.INTERPRET else ""
        raise ValueError(f"q.dtype must be one of {', '.join(dtypes())} on this backend{note}, got {q.dtype}")
    if min(q.shape[:3]) < 1 or min(k.shape[1:3]) < 1:
        raise ValueError(f"batch, heads and seq_len must be at least 1, got shapes {tuple(q.shape)}, {tuple(k.shape)}")
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {', '.join(map(str, HEAD_DIMS))}, got {q.shape[3]}")
    masks.check_group(q.shape[1], k.shape[1])
    if q.device.type == "meta" or k.device.type == "meta" or v.device.type == "meta":
        raise ValueError("q, k, v must hold data: meta tensors have none (this function launches kernels; "
                         "torch.compile's fake tensors go through torch.ops.fa_viz)")
    if not (q.device == k.device == v.device) or q.device.type != backend.DEVICE:
        raise ValueError(f"q, k, v must be on {backend.DEVICE!r} for this backend ({backend.describe()}), "
                         f"got {q.device}, {k.device}, {v.device}")
    causal = check_bool("causal", causal)
    if (causal or tuple(window_size) != (-1, -1)) and q.shape[2] > k.shape[2]:
        raise ValueError(f"q has {q.shape[2]} queries and k {k.shape[2]} keys: with causal or a window the queries "
                         f"are the last positions of the keys (decode), so q may have at most as many as k")
    if q.shape == k.shape:
        if not (q.stride() == k.stride() == v.stride()):
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    else:
        if k.stride() != v.stride():
            k, v = k.contiguous(), v.contiguous()
        if q.shape[1] != k.shape[1] and not q.is_contiguous():  # GQA: the group's heads viewed as one column
            q = q.contiguous()
    return q, k, v, causal


def check_cu_seqlens(cu_seqlens, q, k) -> flash_fwd.Docs | None:
    """cu_seqlens checked (1-D int32 on q's device, 0 = c_0 < ... < c_D = seq_len; a host copy to
    check it), and each position's document (int32), as the kernels take them; None for none."""
    if cu_seqlens is None:
        return None
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
        got = (f"{cu_seqlens.dtype} of shape {tuple(cu_seqlens.shape)}" if isinstance(cu_seqlens, torch.Tensor)
               else shown_value(cu_seqlens))
        raise ValueError(f"cu_seqlens must be a 1-D torch.int32 tensor of document boundaries, got {got}")
    if cu_seqlens.device != q.device:
        raise ValueError(f"cu_seqlens must be on q's device {q.device}, got {cu_seqlens.device}")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"cu_seqlens packs documents into one sequence of queries and keys: q and k must have one "
                         f"seq_len, got {q.shape[2]} and {k.shape[2]}")
    seen = _checked_docs.get(id(cu_seqlens))
    version = _version_of(cu_seqlens)
    if seen is not None and seen[0]() is cu_seqlens and seen[1:3] == (version, q.shape[2]) and version is not None:
        return flash_fwd.Docs(cu_seqlens.contiguous(), seen[3])  # unchanged since it was checked: no host copy
    masks.check_cu_seqlens(cu_seqlens.tolist(), q.shape[2])
    cu = cu_seqlens.contiguous()
    pos = torch.arange(q.shape[2], dtype=torch.int32, device=q.device)
    docs = flash_fwd.Docs(cu, torch.searchsorted(cu[1:], pos, right=True).to(torch.int32))
    if version is not None:
        key = id(cu_seqlens)
        _checked_docs[key] = (weakref.ref(cu_seqlens, lambda _, key=key: _checked_docs.pop(key, None)), version,
                              q.shape[2], docs.doc)  # not docs.cu: that may be the tensor itself
    return docs


# cu_seqlens tensors already checked, by id: (a weak reference, its version counter, seq_len, and
# each position's document).
# The same tensor object at the same version (an in-place write bumps it) holds the same boundaries,
# so a model that passes one cu_seqlens to every layer pays the check (a device-to-host copy) once.
_checked_docs: dict = {}


def _version_of(t) -> int | None:
    """The tensor's version counter; None where it keeps none (inference-mode tensors)."""
    try:
        return t._version
    except RuntimeError:
        return None


def check_masks(q, k, v, causal, window_size, cu_seqlens) -> tuple:
    """(q, k, v, causal, window, docs): every argument checked, as the kernels take them."""
    window = masks.check_window(window_size)
    q, k, v, causal = check_inputs(q, k, v, causal, window)
    return q, k, v, causal, window, check_cu_seqlens(cu_seqlens, q, k)


def _given_blocks(block_m, block_n, head_dim) -> Config | None:
    """The Config of both block sizes when they are given (and valid), None when neither is."""
    if block_m is None and block_n is None:
        return None
    if block_m is None or block_n is None:
        raise ValueError(f"give both block_m and block_n, or neither (tuned), got block_m={block_m!r}, "
                         f"block_n={block_n!r}")
    check_blocks(block_m, block_n, head_dim)
    return Config(int(block_m), int(block_n))


# ------------------------------------------------------------------------------ forward
_sm_counts: dict = {}


def _sm_count(device) -> int:
    """The GPU's streaming multiprocessors, asked once per device."""
    count = _sm_counts.get(device)
    if count is None:
        count = _sm_counts[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return count


def _forward_tuned(q, k, v, causal, sm_scale, window=(-1, -1), docs=None):
    out = torch.empty_like(q)
    batch, heads, n_q, head_dim = q.shape
    kv_heads, n_kv = k.shape[1], k.shape[2]
    use_tma = n_kv >= tuning.TMA_MIN_SEQ_LEN and flash_fwd.tma_supported(q, k, v, out)
    prec = precision(q.dtype)
    intervals = masks.needs_intervals(causal, window, docs is not None, heads // kv_heads, n_q, n_kv)
    splits = (1,) if backend.INTERPRET else tuning.kv_split_counts(
        math.ceil(heads // kv_heads * n_q / 64) * batch * kv_heads, math.ceil(n_kv / 64),
        _sm_count(q.device))

    def run(config):
        return flash_fwd.launch(q, k, v, causal, sm_scale, config, out=out, use_tma=use_tma, window=window, docs=docs)

    key = ("fwd", tuning.bucket(n_q), tuning.bucket(n_kv), heads // kv_heads, head_dim, causal, window,
           docs is not None, intervals, prec, use_tma, splits, q.device)
    return run(tuning.forward_tuner.pick(
        key, lambda: tuning.forward_candidates(head_dim, prec, use_tma, intervals, splits, heads // kv_heads * n_q),
        run))


def flash_attention_fwd(q, k, v, causal=False, sm_scale=None, block_m=None, block_n=None, window_size=(-1, -1),
                        cu_seqlens=None):
    """(out, lse): out (batch, heads, n_q, head_dim) in q's dtype, lse float32 natural log.
    Without block sizes: the tuned fast path on a GPU, 64 x 64 blocks in the interpreter."""
    q, k, v, causal, window, docs = check_masks(q, k, v, causal, window_size, cu_seqlens)
    sm_scale = sm_scale_of(sm_scale, q.shape[3])
    config = _given_blocks(block_m, block_n, q.shape[3])
    if config is None:
        return _forward_tuned(q, k, v, causal, sm_scale, window, docs)
    return flash_fwd.launch(q, k, v, causal, sm_scale, config, window=window, docs=docs)


def tuned_config_name() -> str | None:
    """The config the forward's tuner picked for its latest call, e.g. 'BM128 BN128 w8 s3'."""
    return tuning.forward_tuner.last.name if tuning.forward_tuner.last else None


_last_backward: dict = {}


def tuned_backward_name() -> str | None:
    """What the backward's tuner ran for its latest call: 'dK/dV BM.. + dQ BM..' or 'fused-dQ BM..'."""
    schedule, picked = _last_backward.get("run", (None, None))
    if schedule is None:
        return None
    return schedule.name if schedule.fused_dq else f"dK/dV {picked['dkdv'].name} + dQ {picked['dq'].name}"


# ------------------------------------------------------------------------------ backward
def _check_backward_inputs(q, out, lse, do) -> None:
    for name, t in (("out", out), ("do", do)):
        if not isinstance(t, torch.Tensor) or t.shape != q.shape or t.dtype != q.dtype or t.device != q.device:
            got = f"{tuple(t.shape)} {t.dtype} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must match q: shape {tuple(q.shape)} {q.dtype} on {q.device}, got {got}")
    if (not isinstance(lse, torch.Tensor) or lse.shape != q.shape[:3] or lse.dtype != torch.float32
            or not lse.is_contiguous() or lse.device != q.device):
        got = f"{tuple(lse.shape)} {lse.dtype}" if isinstance(lse, torch.Tensor) else type(lse).__name__
        raise ValueError(f"lse must be contiguous float32 of shape {tuple(q.shape[:3])} (what the forward "
                         f"returns), got {got}")


def flash_attention_bwd(q, k, v, out, lse, do, causal=False, sm_scale=None, block_m=None, block_n=None,
                        window_size=(-1, -1), cu_seqlens=None):
    """(dq, dk, dv) given the forward's out and lse and the output gradient do. Gradients are
    contiguous, in q's (dq) and k's (dk, dv) shapes and q's dtype. Without block sizes: tuned on a
    GPU, 64 x 64 in the interpreter. out and lse must be this forward's, with the same masks (a few
    rows are recomputed to check: ValueError if not)."""
    q, k, v, causal, window, docs = check_masks(q, k, v, causal, window_size, cu_seqlens)
    _check_backward_inputs(q, out, lse, do)
    sm_scale = sm_scale_of(sm_scale, q.shape[3])
    _check_forward_outputs(q, k, v, out, lse, causal, sm_scale, window, docs)
    return _backward(q, k, v, out, lse, do, causal, sm_scale, block_m, block_n, window, docs)


def _check_forward_outputs(q, k, v, out, lse, causal, sm_scale, window=(-1, -1), docs=None, rows: int = 4) -> None:
    """out and lse of a few (batch, head, row) triples, spread over the tensor, recomputed in float32:
    a forward's outputs that belong to other inputs give wrong gradients, so they are refused."""
    b, h, n, _ = q.shape
    group = h // k.shape[1]
    g = torch.Generator().manual_seed(n * 131 + b * 7 + h)
    pick = [(int(torch.randint(b, (1,), generator=g)), int(torch.randint(h, (1,), generator=g)),
             int(torch.randint(n, (1,), generator=g))) for _ in range(rows)] + [(b - 1, h - 1, n - 1)]
    zb, zh, zr = (torch.tensor(x, device=q.device) for x in zip(*pick, strict=True))
    kh = zh // group
    s = torch.einsum("td,tnd->tn", q[zb, zh, zr].float(), k[zb, kh].float()) * sm_scale  # (t, N_k)
    cu = tuple(docs.cu.tolist()) if docs is not None else ()
    sees = masks.Masks(n, k.shape[2], causal, window, cu)
    allowed = torch.from_numpy(np.stack([sees.allowed(r, r + 1)[0] for *_, r in pick]))
    s = s.masked_fill(~allowed.to(q.device), float("-inf"))
    want_lse = torch.logsumexp(s, dim=-1)
    want_out = torch.einsum("tn,tnd->td", torch.softmax(s, dim=-1), v[zb, kh].float())
    lse_err = float((lse[zb, zh, zr] - want_lse).abs().max())
    out_err = float((out[zb, zh, zr].float() - want_out).abs().max())
    tol = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}[q.dtype]
    if not (lse_err <= tol * max(1.0, float(want_lse.abs().max())) and out_err <= tol * max(1.0, float(want_out.abs().max()))):
        raise ValueError(f"out and lse must be the forward's of these q, k, v (flash_attention_fwd(q, k, v, causal="
                         f"{causal}, window_size={window}, cu_seqlens=...)): recomputed rows differ by "
                         f"{max(lse_err, out_err):.3g}")


def _backward(q, k, v, out, lse, do, causal, sm_scale, block_m=None, block_n=None, window=(-1, -1), docs=None):
    config = _given_blocks(block_m, block_n, q.shape[3])
    if config is not None:
        return flash_bwd.launch(q, k, v, out, lse, do, causal, sm_scale, config, config, window=window, docs=docs)[:3]
    return _backward_tuned(q, k, v, out, lse, do, causal, sm_scale, window, docs)


def _backward_tuned(q, k, v, out, lse, do, causal, sm_scale, window=(-1, -1), docs=None):
    """The dK/dV and dQ kernels each at the config tuned for it alone; then that pair against
    FlashAttention-2's fused schedule (dQ added atomically), the faster kept per shape."""
    seq_len, head_dim = q.shape[2], q.shape[3]
    prec = precision(q.dtype)
    delta = flash_bwd.preprocess(out, do)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk, dv = (torch.empty(k.shape, dtype=q.dtype, device=q.device) for _ in range(2))
    mask = dict(window=window, docs=docs)

    def run_dkdv(c):
        return flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, sm_scale, c, dk=dk, dv=dv, **mask)

    def run_dq(c):
        return flash_bwd.launch_dq(q, k, v, do, lse, delta, causal, sm_scale, c, dq=dq, **mask)

    shape = (tuning.bucket(seq_len), tuning.bucket(k.shape[2]), q.shape[1] // k.shape[1], head_dim, causal, window,
             docs is not None, prec, q.device)
    picked = {}
    for kernel, run in (("dkdv", run_dkdv), ("dq", run_dq)):
        picked[kernel] = tuning.backward_tuner.pick(
            ("bwd", kernel, *shape), lambda kernel=kernel: tuning.candidates(tuning.BACKWARD_CONFIGS[kernel], head_dim,
                                                                             prec), run)
    dq_acc = None

    def run_schedule(c):
        nonlocal dq_acc
        if not c.fused_dq:
            run_dkdv(picked["dkdv"])
            return run_dq(picked["dq"])
        dq_acc = torch.zeros(q.shape, dtype=torch.float32, device=q.device) if dq_acc is None else dq_acc.zero_()
        flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, sm_scale, c, dk=dk, dv=dv, dq_acc=dq_acc, **mask)
        return dq.copy_(dq_acc)

    def schedules():
        return [picked["dkdv"]] + tuning.candidates(tuning.BACKWARD_CONFIGS["fused"], head_dim, prec, fused=True)

    schedule = tuning.backward_tuner.pick(("bwd", "schedule", *shape), schedules, run_schedule)
    run_schedule(schedule)
    _last_backward["run"] = (schedule, picked)  # named when asked (tuned_backward_name)
    return dq, dk, dv


# ------------------------------------------------------------------------------ the operators, and autograd
# The forward and backward as PyTorch operators, so torch.compile and CUDA graphs take them as they
# are (an autograd.Function with Python inside breaks a compiled graph); the backward is registered
# as the forward's autograd formula.
@torch.library.custom_op("fa_viz::flash_attention_fwd", mutates_args=())
def _op_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, sm_scale: float, window_left: int,
            window_right: int, cu_seqlens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = flash_attention_fwd(q, k, v, causal=causal, sm_scale=sm_scale, window_size=(window_left, window_right),
                                   cu_seqlens=cu_seqlens)
    return out, lse


@_op_fwd.register_fake
def _(q, k, v, causal, sm_scale, window_left, window_right, cu_seqlens):
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("fa_viz::flash_attention_bwd", mutates_args=())
def _op_bwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
            do: torch.Tensor, causal: bool, sm_scale: float, window_left: int, window_right: int,
            cu_seqlens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # out and lse are the operator's own forward's (saved by autograd): no check needed
    q, k, v, causal, window, docs = check_masks(q, k, v, causal, (window_left, window_right), cu_seqlens)
    _check_backward_inputs(q, out, lse, do)
    dq, dk, dv = _backward(q, k, v, out, lse, do, causal, sm_scale, window=window, docs=docs)
    return dq, dk, dv


@_op_bwd.register_fake
def _(q, k, v, out, lse, do, causal, sm_scale, window_left, window_right, cu_seqlens):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, causal, sm_scale, window_left, window_right, cu_seqlens = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, *(() if cu_seqlens is None else (cu_seqlens,)))
    ctx.causal, ctx.sm_scale, ctx.window = causal, sm_scale, (window_left, window_right)


def _op_backward(ctx, dout, dlse):
    q, k, v, out, lse, *cu = ctx.saved_tensors
    dq, dk, dv = torch.ops.fa_viz.flash_attention_bwd(q, k, v, out, lse, dout, ctx.causal, ctx.sm_scale, *ctx.window,
                                                      cu[0] if cu else None)
    return dq, dk, dv, None, None, None, None, None


_op_fwd.register_autograd(_op_backward, setup_context=_setup_context)


def _graph_names() -> tuple:
    return tuning.forward_tuner.last, _last_backward.get("run")


def _graph_restore(names, part) -> None:
    if part == 0:
        tuning.forward_tuner.last = names[0]
    else:
        _last_backward["run"] = names[1]


class _Eager(torch.autograd.Function):
    """Eager autograd outside torch.compile: the operators' own forward and backward functions,
    called without the dispatcher. Two operator calls and torch.library's autograd wrapper cost
    the host more than the kernels' GPU time at small sizes (issue 22: measured on the H200,
    experiments/results/h200/); the arguments are checked once, in the forward, and the
    backward takes them as the forward kept them. From a shape's second call on a GPU, the same
    kernels replay from CUDA graphs kept for that shape (kernels/graphs.py). torch.compile keeps
    the operators."""

    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale, window, cu_seqlens):
        q, k, v, causal, window, docs = check_masks(q, k, v, causal, window, cu_seqlens)
        graphed = graphs.usable(q, k, docs) and graphs.forward(
            q, k, v, (q.shape, k.shape, v.shape, q.dtype, q.device, causal, sm_scale, window),
            lambda q, k, v: _forward_tuned(q, k, v, causal, sm_scale, window),
            lambda q, k, v, out, lse, do: _backward_tuned(q, k, v, out, lse, do, causal, sm_scale, window),
            _graph_names, _graph_restore)
        if graphed:
            out, lse, ctx.lease = graphed
        else:
            out, lse = _forward_tuned(q, k, v, causal, sm_scale, window, docs)
            ctx.lease = None
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.masks = (causal, sm_scale, window, docs)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        causal, sm_scale, window, docs = ctx.masks
        if ctx.lease is not None:
            grads = ctx.lease.backward(dout, _graph_restore)
            if grads is not None:
                return *grads, None, None, None, None
            graphs.stats["backward_eager"] += 1
        if dout.dtype != q.dtype:
            dout = dout.to(q.dtype)
        dq, dk, dv = _backward_tuned(q, k, v, out, lse, dout, causal, sm_scale, window, docs)
        return dq, dk, dv, None, None, None, None


# True: eager calls that need a gradient go through the operators too (how it was before issue 22;
# experiments/scripts/host_time.py times both routes)
EAGER_THROUGH_OPERATORS = False


def flash_attention(q, k, v, causal=False, sm_scale=None, window_size=(-1, -1), cu_seqlens=None) -> torch.Tensor:
    """softmax(q k^T * sm_scale) v, FlashAttention-2. sm_scale defaults to 1/sqrt(head_dim).
    window_size=(left, right): query i sees keys i + off - left .. i + off + right (-1: no limit);
    cu_seqlens (int32, 0 .. seq_len): packed documents, a query sees only its own; k and v may have
    fewer heads than q (GQA/MQA: a divisor) and more positions (decode: the queries are the last
    positions, off = n_kv - n_q). Differentiable: the FlashAttention-2 backward (no N x N tensor).
    Under torch.compile it is the torch.ops.fa_viz operator and its autograd formula; an eager call
    takes the same forward and backward functions without the dispatcher (a torch.autograd.Function,
    which CUDA graphs capture too); a call that needs no gradient runs the forward alone."""
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        check_inputs(q, k, v, causal)  # the message the operator would give, before it is dispatched
    window = masks.check_window(window_size)
    causal, sm_scale = check_bool("causal", causal), sm_scale_of(sm_scale, q.shape[-1])
    if cu_seqlens is not None and not isinstance(cu_seqlens, torch.Tensor):
        check_cu_seqlens(cu_seqlens, q, k)  # the message, before the operator's schema refuses it
    needs_grad = torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in (q, k, v))
    if torch.compiler.is_compiling() or (needs_grad and EAGER_THROUGH_OPERATORS):
        return torch.ops.fa_viz.flash_attention_fwd(q, k, v, causal, sm_scale, *window, cu_seqlens)[0]
    if needs_grad:
        return _Eager.apply(q, k, v, causal, sm_scale, window, cu_seqlens)
    return flash_attention_fwd(q, k, v, causal=causal, sm_scale=sm_scale, window_size=window, cu_seqlens=cu_seqlens)[0]
