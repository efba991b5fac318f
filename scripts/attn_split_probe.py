"""Probe more forward restructurings on the GPU before touching kernels/attention.py:
  split : one program takes SPLIT row-halves of a q-block, each with its own m, l and acc, and
          shares every K/V tile between them (the data partitioning of FA3 and of the Triton
          team's Blackwell kernel). The hope was that one half's softmax runs while the other
          half's matrix product is in flight; the PTX shows every wait is `wait_group 0`, so any
          gain comes from elsewhere (fewer K/V loads per row, two warpgroups). ORDER says how the
          loop body is written: 0 = half after half, 1 = both QK^T first, 2 = QK^T, QK^T, softmax,
          softmax, PV, PV.
  maxnreg: the app's own kernel with a register cap per thread, so that more programs fit on one
          SM (head_dim 64: shared memory allows three or four).
  defer : FA3's softmax / PV overlap inside one program: P_{j-1} V_{j-1} is issued after QK^T_j's
          wait and left in flight while the softmax of tile j runs (_defer_fwd says how).
For every compiled variant the PTX's wgmma waits (how many wgmmas each wait lets stay in flight),
the registers per thread, spills and shared memory are recorded too.
Non-causal, fp16, (4, 16, 8192, d). Prints a table; JSON to $OUT/split_probe.json.
usage: python3 scripts/attn_split_probe.py   (env D="128,64" picks head_dims, PARTS="defer,split,maxnreg")
"""
import collections
import json
import os
import re

import torch
import triton
import triton.language as tl

from kernels import attention
from kernels.bench import _median_ms, _sdpa, attention_flops

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _half_step(qk, m_i, l_i, acc, v, qk_scale):
    m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    p = tl.math.exp2(qk * qk_scale - m_ij[:, None])
    alpha = tl.math.exp2(m_i - m_ij)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_ij, l_i, acc


@triton.jit
def _split_fwd(Q, K, V, sm_scale, Out, H, N_CTX,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               SPLIT: tl.constexpr, ORDER: tl.constexpr):
    HALF: tl.constexpr = BLOCK_M // SPLIT
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    z = off_hz // H
    h = off_hz % H
    row0 = start_m * BLOCK_M
    qk_scale = sm_scale * LOG2E
    q0 = tl.reshape(Q.load([z, h, row0, 0]), [HALF, HEAD_DIM])
    m0 = tl.zeros([HALF], dtype=tl.float32) - float("inf")
    l0 = tl.zeros([HALF], dtype=tl.float32)
    a0 = tl.zeros([HALF, HEAD_DIM], dtype=tl.float32)
    if SPLIT == 2:
        q1 = tl.reshape(Q.load([z, h, row0 + HALF, 0]), [HALF, HEAD_DIM])
        m1 = tl.zeros([HALF], dtype=tl.float32) - float("inf")
        l1 = tl.zeros([HALF], dtype=tl.float32)
        a1 = tl.zeros([HALF, HEAD_DIM], dtype=tl.float32)
    for start_n in tl.range(0, N_CTX, BLOCK_N):
        k = tl.reshape(K.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM]).T
        v = tl.reshape(V.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM])
        if SPLIT == 1:
            m0, l0, a0 = _half_step(tl.dot(q0, k), m0, l0, a0, v, qk_scale)
        elif ORDER == 0:
            m0, l0, a0 = _half_step(tl.dot(q0, k), m0, l0, a0, v, qk_scale)
            m1, l1, a1 = _half_step(tl.dot(q1, k), m1, l1, a1, v, qk_scale)
        elif ORDER == 1:
            s0 = tl.dot(q0, k)
            s1 = tl.dot(q1, k)
            m0, l0, a0 = _half_step(s0, m0, l0, a0, v, qk_scale)
            m1, l1, a1 = _half_step(s1, m1, l1, a1, v, qk_scale)
        else:
            s0 = tl.dot(q0, k)
            s1 = tl.dot(q1, k)
            mn0 = tl.maximum(m0, tl.max(s0, 1) * qk_scale)
            p0 = tl.math.exp2(s0 * qk_scale - mn0[:, None])
            mn1 = tl.maximum(m1, tl.max(s1, 1) * qk_scale)
            p1 = tl.math.exp2(s1 * qk_scale - mn1[:, None])
            al0 = tl.math.exp2(m0 - mn0)
            al1 = tl.math.exp2(m1 - mn1)
            l0 = l0 * al0 + tl.sum(p0, 1)
            l1 = l1 * al1 + tl.sum(p1, 1)
            a0 = tl.dot(p0.to(v.dtype), v, a0 * al0[:, None])
            a1 = tl.dot(p1.to(v.dtype), v, a1 * al1[:, None])
            m0 = mn0
            m1 = mn1
    Out.store([z, h, row0, 0], tl.reshape((a0 / l0[:, None]).to(Out.dtype), [1, 1, HALF, HEAD_DIM]))
    if SPLIT == 2:
        Out.store([z, h, row0 + HALF, 0], tl.reshape((a1 / l1[:, None]).to(Out.dtype), [1, 1, HALF, HEAD_DIM]))


@triton.jit
def _defer_fwd(Q, K, V, sm_scale, Out, H, N_CTX,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TIE: tl.constexpr):
    # FA3's softmax / PV overlap, written so that Triton's own rules allow it: iteration j issues
    # QK^T_j (waited for at once), rescales acc by alpha_{j-1}, issues P_{j-1} V_{j-1} and then runs
    # the softmax of tile j while that product is in flight. The PV result is used only by the next
    # iteration, after its QK^T wait, so the compiler can leave it asynchronous (its "rule 3b").
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    z = off_hz // H
    h = off_hz % H
    qk_scale = sm_scale * LOG2E
    q = tl.reshape(Q.load([z, h, start_m * BLOCK_M, 0]), [BLOCK_M, HEAD_DIM])
    qk = tl.dot(q, tl.reshape(K.load([z, h, 0, 0]), [BLOCK_N, HEAD_DIM]).T)
    m_i = tl.max(qk, 1) * qk_scale
    p = tl.math.exp2(qk * qk_scale - m_i[:, None])
    l_i = tl.sum(p, 1)
    alpha = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in tl.range(BLOCK_N, N_CTX, BLOCK_N):
        qk = tl.dot(q, tl.reshape(K.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM]).T)
        row_max = tl.max(qk, 1)
        if TIE:  # make the rescale depend on this tile's scores: it cannot move above the QK^T wait
            alpha = alpha + 0.0 * row_max
        acc = acc * alpha[:, None]
        v = tl.reshape(V.load([z, h, start_n - BLOCK_N, 0]), [BLOCK_N, HEAD_DIM])
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_ij = tl.maximum(m_i, row_max * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_ij
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(tl.float16), tl.reshape(V.load([z, h, N_CTX - BLOCK_N, 0]), [BLOCK_N, HEAD_DIM]), acc)
    Out.store([z, h, start_m * BLOCK_M, 0], tl.reshape((acc / l_i[:, None]).to(Out.dtype), [1, 1, BLOCK_M, HEAD_DIM]))


def defer(q, k, v, bm, bn, w, s, tie=True):
    from triton.tools.tensor_descriptor import TensorDescriptor

    b, h, n, d = q.shape
    out = torch.empty_like(q)

    def desc(t, rows):
        return TensorDescriptor(t, shape=list(t.shape), strides=list(t.stride()), block_shape=[1, 1, rows, d])

    return _defer_fwd[(n // bm, b * h)](desc(q, bm), desc(k, bn), desc(v, bn), d ** -0.5, desc(out, bm), h, n,
                                        HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, TIE=tie, num_warps=w, num_stages=s), out


def split(q, k, v, bm, bn, w, s, n_split, order):
    from triton.tools.tensor_descriptor import TensorDescriptor

    b, h, n, d = q.shape
    out = torch.empty_like(q)

    def desc(t, rows):
        return TensorDescriptor(t, shape=list(t.shape), strides=list(t.stride()), block_shape=[1, 1, rows, d])

    return _split_fwd[(n // bm, b * h)](desc(q, bm // n_split), desc(k, bn), desc(v, bn), d ** -0.5,
                                        desc(out, bm // n_split), h, n, HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn,
                                        SPLIT=n_split, ORDER=order, num_warps=w, num_stages=s), out


def _compiled(jit_fn):
    return {id(k): k for caches in jit_fn.device_caches.values() for k in caches[0].values()}


def _describe(kernel) -> dict:
    md = kernel.metadata
    waits = collections.Counter(re.findall(r"wgmma\.wait_group\.sync\.aligned\s+(\d+)", kernel.asm.get("ptx", "")))
    return dict(regs=kernel.n_regs, spills=kernel.n_spills, shared=md.shared,
                wgmma=kernel.asm.get("ptx", "").count("wgmma.mma_async"), waits=dict(waits))


SPLIT_CFGS = {128: [(256, 64, 8, 2), (256, 128, 8, 2), (256, 64, 8, 3), (128, 64, 4, 2), (128, 128, 4, 2)],
              64: [(256, 64, 8, 3), (256, 128, 8, 2), (256, 128, 8, 3), (128, 128, 4, 2), (128, 64, 4, 3)]}
BASE_CFGS = {128: [(128, 64, 4, 2), (128, 128, 8, 3), (256, 64, 8, 2)], 64: [(128, 64, 4, 3), (128, 128, 8, 3)]}
MAXNREG = {128: [(128, 64, 4, 2, None), (128, 128, 8, 3, None), (128, 128, 8, 3, 128)],
           64: [(64, 128, 4, 2, None), (64, 128, 4, 2, 168), (128, 64, 4, 2, None), (128, 64, 4, 2, 168),
                (128, 64, 4, 2, 128), (128, 64, 4, 3, None), (128, 64, 4, 3, 168), (128, 128, 8, 2, None),
                (128, 128, 8, 2, 128), (64, 64, 4, 2, 128)]}


DEFER_CFGS = {128: [(128, 64, 8, 3), (128, 128, 8, 2), (128, 64, 8, 2), (128, 64, 4, 2), (64, 64, 4, 2),
                     (64, 128, 4, 2)],
              64: [(128, 64, 8, 3), (64, 64, 4, 3), (128, 128, 8, 3), (64, 128, 4, 3), (128, 64, 4, 3),
                   (128, 128, 8, 2), (128, 64, 4, 2), (64, 64, 4, 2), (128, 128, 4, 2)]}
OURS_CFGS = {128: [(256, 64, 8, 3, 2), (128, 64, 4, 2, 1)], 64: [(64, 128, 4, 2, 1), (128, 128, 4, 2, 2)]}
PARTS = os.environ.get("PARTS", "maxnreg,split,defer").split(",")


def main():
    B, H, N = 4, 16, 8192
    rows = []
    for d in [int(x) for x in os.environ.get("D", "128,64").split(",")]:
        q, k, v = (torch.randn(B, H, N, d, device="cuda", dtype=torch.float16) for _ in range(3))
        ref = _sdpa("FLASH_ATTENTION")(q, k, v, False)
        flops = attention_flops(B, H, N, d, False)

        def add(tag, fn, jit_fn=None):
            try:
                before = _compiled(jit_fn) if jit_fn is not None else {}
                err = float((fn().float() - ref.float()).abs().max())
                ms = _median_ms(fn)
                row = dict(d=d, variant=tag, tflops=flops / ms / 1e9, err=err)
                if jit_fn is not None:
                    new = [kk for i, kk in _compiled(jit_fn).items() if i not in before]
                    if new:
                        row.update(_describe(new[0]))
                rows.append(row)
            except Exception as e:  # a variant that does not compile is a result too
                rows.append(dict(d=d, variant=tag, error=str(e).splitlines()[0][:160]))
            print(rows[-1], flush=True)

        for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION"):
            add(name, lambda name=name: _sdpa(name)(q, k, v, False))
        for bm, bn, w, s in BASE_CFGS[d][:2] if "defer" in PARTS else []:
            add(f"split=1 {bm}x{bn} w{w} s{s}", lambda: split(q, k, v, bm, bn, w, s, 1, 0)[1], _split_fwd)
        for bm, bn, w, s, sp in OURS_CFGS[d] if "defer" in PARTS else []:
            add(f"ours {bm}x{bn} w{w} s{s} split{sp}",
                lambda: attention._launch(q, k, v, False, None, bm, bn, num_warps=w, num_stages=s, use_tma=True,
                                          split=sp)[0], attention._attn_fwd)
        for bm, bn, w, s in DEFER_CFGS[d] if "defer" in PARTS else []:
            add(f"defer {bm}x{bn} w{w} s{s}", lambda: defer(q, k, v, bm, bn, w, s)[1], _defer_fwd)
        for bm, bn, w, s, mr in MAXNREG[d] if "maxnreg" in PARTS else []:
            add(f"ours {bm}x{bn} w{w} s{s} maxnreg={mr}",
                lambda: attention._launch(q, k, v, False, None, bm, bn, num_warps=w, num_stages=s, use_tma=True,
                                          maxnreg=mr)[0], attention._attn_fwd)
        for bm, bn, w, s in BASE_CFGS[d] if "split" in PARTS else []:
            add(f"split=1 {bm}x{bn} w{w} s{s}", lambda: split(q, k, v, bm, bn, w, s, 1, 0)[1], _split_fwd)
        for bm, bn, w, s in SPLIT_CFGS[d] if "split" in PARTS else []:
            for order in (0, 1, 2):
                add(f"split=2 {bm}x{bn} w{w} s{s} order={order}",
                    lambda: split(q, k, v, bm, bn, w, s, 2, order)[1], _split_fwd)
        del q, k, v, ref
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), "split_probe.json"), "w"), indent=1)
    print("\nranked:")
    for d in sorted({r["d"] for r in rows}, reverse=True):
        for r in sorted([r for r in rows if r["d"] == d and "tflops" in r], key=lambda r: -r["tflops"]):
            extra = f"regs {r['regs']} spills {r['spills']} smem {r['shared']} waits {r['waits']}" if "regs" in r else ""
            print(f"  d={d} {r['variant']:40s} {r['tflops']:6.1f}  err {r['err']:.1e}  {extra}")


if __name__ == "__main__":
    main()
