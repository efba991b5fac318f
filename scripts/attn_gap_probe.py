"""Probe: why the app's forward kernel runs below a minimal kernel with the same config.
On an H100 (2026-11-23) the minimal loop of scripts/attn_polyexp_probe.py (TMA loads, no masks,
no log-sum-exp) ran 3-10% faster than kernels/attention.py's _attn_fwd at the same block sizes,
warps and stages, non-causal, N=8192. Each flag below adds one thing the app's kernel has:
  TAIL: the second kv loop over the masked tiles (empty here: N divides the blocks), with the
        masking code of the app; its pipelined prologue and epilogue are there even so;
  LSE : the log-sum-exp store in the epilogue;
  VLATE: V_j loaded after the softmax (the app's order) instead of with K_j.
Non-causal, fp16, (4, 16, 8192, d). Prints a table; JSON to $OUT/gap_probe.json.
usage: python3 scripts/attn_gap_probe.py
"""
import os

import torch
import triton
import triton.language as tl

from scripts.probe_util import desc, load_half, run

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _step(qk, m_i, l_i, acc, V, z, h, start_n, offs_n, offs_m, N_CTX, qk_scale, v_early,
          HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, VLATE: tl.constexpr):
    if MASKED:
        qk = tl.where(offs_n[None, :] < N_CTX, qk * qk_scale, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_ij[:, None])
    else:
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_ij[:, None])
    alpha = tl.math.exp2(m_i - m_ij)
    l_i = l_i * alpha + tl.sum(p, 1)
    if VLATE:
        acc = acc * alpha[:, None]
        v = tl.reshape(V.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM])
        acc = tl.dot(p.to(v.dtype), v, acc)
    else:
        acc = tl.dot(p.to(v_early.dtype), v_early, acc * alpha[:, None])
    return m_ij, l_i, acc


@triton.jit
def _loop(q0, m0, l0, a0, q1, m1, l1, a1, K, V, z, h, lo, hi, offs_m, N_CTX, qk_scale,
          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
          MASKED: tl.constexpr, VLATE: tl.constexpr):
    for start_n in tl.range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = tl.reshape(K.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM]).T
        if VLATE:
            v = k.T  # stand-in, never read
        else:
            v = tl.reshape(V.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM])
        s0 = tl.dot(q0, k)
        if SPLIT == 2:
            s1 = tl.dot(q1, k)
        m0, l0, a0 = _step(s0, m0, l0, a0, V, z, h, start_n, offs_n, offs_m, N_CTX, qk_scale, v,
                           HEAD_DIM, BLOCK_N, MASKED, VLATE)
        if SPLIT == 2:
            m1, l1, a1 = _step(s1, m1, l1, a1, V, z, h, start_n, offs_n, offs_m, N_CTX, qk_scale, v,
                               HEAD_DIM, BLOCK_N, MASKED, VLATE)
    return m0, l0, a0, m1, l1, a1


@triton.jit
def _gap_fwd(Q, K, V, sm_scale, Lse, Out, H, N_CTX,
             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
             TAIL: tl.constexpr, LSE: tl.constexpr, VLATE: tl.constexpr):
    HALF: tl.constexpr = BLOCK_M // SPLIT
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    z = off_hz // H
    h = off_hz % H
    row0 = start_m * BLOCK_M
    offs_m = row0 + tl.arange(0, HALF)
    qk_scale = sm_scale * LOG2E
    q0, m0, l0, a0 = load_half(Q, z, h, row0, HALF, HEAD_DIM)
    if SPLIT == 2:
        q1, m1, l1, a1 = load_half(Q, z, h, row0 + HALF, HALF, HEAD_DIM)
    else:
        q1 = q0
        m1 = m0
        l1 = l0
        a1 = a0
    if TAIL:
        hi = (N_CTX // BLOCK_N) * BLOCK_N
    else:
        hi = N_CTX
    m0, l0, a0, m1, l1, a1 = _loop(q0, m0, l0, a0, q1, m1, l1, a1, K, V, z, h, 0, hi, offs_m, N_CTX, qk_scale,
                                   HEAD_DIM, BLOCK_M, BLOCK_N, SPLIT, False, VLATE)
    if TAIL:
        m0, l0, a0, m1, l1, a1 = _loop(q0, m0, l0, a0, q1, m1, l1, a1, K, V, z, h, hi, N_CTX, offs_m, N_CTX,
                                       qk_scale, HEAD_DIM, BLOCK_M, BLOCK_N, SPLIT, True, VLATE)
    Out.store([z, h, row0, 0], tl.reshape((a0 / l0[:, None]).to(Out.dtype), [1, 1, HALF, HEAD_DIM]))
    if LSE:
        tl.store(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, (m0 + tl.math.log2(l0)) * LN2, mask=offs_m < N_CTX)
    if SPLIT == 2:
        Out.store([z, h, row0 + HALF, 0], tl.reshape((a1 / l1[:, None]).to(Out.dtype), [1, 1, HALF, HEAD_DIM]))
        if LSE:
            tl.store(Lse + off_hz.to(tl.int64) * N_CTX + offs_m + HALF, (m1 + tl.math.log2(l1)) * LN2,
                     mask=offs_m + HALF < N_CTX)


def gap(q, k, v, bm, bn, w, s, n_split, tail, lse, vlate):
    b, h, n, d = q.shape
    out = torch.empty_like(q)
    lse_t = torch.empty((b, h, n), dtype=torch.float32, device=q.device)

    _gap_fwd[(n // bm, b * h)](desc(q, bm // n_split), desc(k, bn), desc(v, bn), d ** -0.5, lse_t,
                               desc(out, bm // n_split), h, n, HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, SPLIT=n_split,
                               TAIL=tail, LSE=lse, VLATE=vlate, num_warps=w, num_stages=s)
    return out


CFGS = {128: [(128, 128, 8, 3, 1), (256, 64, 8, 3, 2), (128, 64, 4, 2, 1)],
        64: [(128, 128, 4, 2, 2), (64, 128, 4, 2, 1)]}
FLAGS = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]  # (TAIL, LSE, VLATE)


def main():
    def variants(q, k, v, cfg):
        bm, bn, w, s, sp = cfg
        return [(f"gap {bm}x{bn} w{w} s{s} split{sp} tail,lse,vlate={flags}",
                 lambda flags=flags: gap(q, k, v, bm, bn, w, s, sp, *flags)) for flags in FLAGS]

    run("gap_probe.json", [int(x) for x in os.environ.get("D", "128,64").split(",")], CFGS, variants, _gap_fwd)


if __name__ == "__main__":
    main()
