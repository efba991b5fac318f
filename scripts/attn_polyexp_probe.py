"""Probe: compute part of the softmax's exponentials on the FMA units instead of the MUFU unit
(the trick of FlashAttention-4). At head_dim 64 an H100 SM does 16 exp2 per clock on its MUFU
unit and ~4096 fp16 tensor-core flops per clock, and each score costs 4 * 64 = 256 flops: the
exponentials alone take as long as both matrix products. A degree-3 polynomial for 2^f on
[-0.5, 0.5] (relative error 7.5e-5, below fp16's half ulp of 4.9e-4) costs ~9 issue slots on
the FMA/ALU pipes, so moving a fraction of the exponentials there can shorten the softmax.

Variants (the loop of kernels/attention.py's forward with TMA loads and no masking, so the
sequence length must divide the blocks): SPLIT 2 takes the q-block as two halves of rows, each
with its own m, l, acc; MODES gives each half's exp2:
  0 = every exp2 on the MUFU unit, 1 = odd columns by the polynomial, 2 = every one by the polynomial.
For each compiled variant the registers, spills and shared memory are recorded.
Non-causal, fp16, (4, 16, 8192, d). Prints a table; JSON to $OUT/polyexp_probe.json.
usage: python3 scripts/attn_polyexp_probe.py   (env D="64,128")
"""
import os

import torch
import triton
import triton.language as tl

from scripts.probe_util import desc, load_half, run

LOG2E = tl.constexpr(1.4426950408889634)
# 2^f ~ C0 + C1 f + C2 f^2 + C3 f^3 on [-0.5, 0.5], minimax relative error 7.49e-5 (Lawson's algorithm)
C0 = tl.constexpr(0.9999281213111182)
C1 = tl.constexpr(0.6932609672206902)
C2 = tl.constexpr(0.2426103414157597)
C3 = tl.constexpr(0.05517134269910334)
ROUND = tl.constexpr(12582912.0)  # 1.5 * 2^23: x + ROUND holds round(x) in its low mantissa bits


@triton.jit
def exp2_poly(x):
    """2^x for x <= 0 with FMA/ALU instructions only: x = j + f with j = round(x), f in [-0.5, 0.5];
    2^f by the polynomial, j added into the exponent bits. x below -125 gives ~2^-125, not 0."""
    x = tl.maximum(x, -125.0)
    r = x + ROUND
    f = x - (r - ROUND)
    p = ((C3 * f + C2) * f + C1) * f + C0
    # r's bits are ROUND's plus j: shifted left by 23, ROUND's bits fall off the top and j lands
    # on the exponent field
    bits = (r.to(tl.int32, bitcast=True) << 23) + p.to(tl.int32, bitcast=True)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _exp2_mode(x, MODE: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    if MODE == 0:
        return tl.math.exp2(x)
    elif MODE == 2:
        return exp2_poly(x)
    else:  # columns in pairs: each thread of a wgmma tile holds both columns of a pair
        a, b = tl.split(tl.reshape(x, [ROWS, BLOCK_N // 2, 2]))
        return tl.reshape(tl.join(tl.math.exp2(a), exp2_poly(b)), [ROWS, BLOCK_N])


@triton.jit
def _half_step(qk, m_i, l_i, acc, v, qk_scale, MODE: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    p = _exp2_mode(qk * qk_scale - m_ij[:, None], MODE, ROWS, BLOCK_N)
    alpha = tl.math.exp2(m_i - m_ij)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_ij, l_i, acc


@triton.jit
def _poly_fwd(Q, K, V, sm_scale, Out, H, N_CTX,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              SPLIT: tl.constexpr, MODE0: tl.constexpr, MODE1: tl.constexpr):
    HALF: tl.constexpr = BLOCK_M // SPLIT
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    z = off_hz // H
    h = off_hz % H
    row0 = start_m * BLOCK_M
    qk_scale = sm_scale * LOG2E
    q0, m0, l0, a0 = load_half(Q, z, h, row0, HALF, HEAD_DIM)
    if SPLIT == 2:
        q1, m1, l1, a1 = load_half(Q, z, h, row0 + HALF, HALF, HEAD_DIM)
    for start_n in tl.range(0, N_CTX, BLOCK_N):
        k = tl.reshape(K.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM]).T
        v = tl.reshape(V.load([z, h, start_n, 0]), [BLOCK_N, HEAD_DIM])
        s0 = tl.dot(q0, k)
        if SPLIT == 2:
            s1 = tl.dot(q1, k)
        m0, l0, a0 = _half_step(s0, m0, l0, a0, v, qk_scale, MODE0, HALF, BLOCK_N)
        if SPLIT == 2:
            m1, l1, a1 = _half_step(s1, m1, l1, a1, v, qk_scale, MODE1, HALF, BLOCK_N)
    Out.store([z, h, row0, 0], tl.reshape((a0 / l0[:, None]).to(Out.dtype), [1, 1, HALF, HEAD_DIM]))
    if SPLIT == 2:
        Out.store([z, h, row0 + HALF, 0], tl.reshape((a1 / l1[:, None]).to(Out.dtype), [1, 1, HALF, HEAD_DIM]))


def poly(q, k, v, bm, bn, w, s, n_split, modes):
    b, h, n, d = q.shape
    out = torch.empty_like(q)

    _poly_fwd[(n // bm, b * h)](desc(q, bm // n_split), desc(k, bn), desc(v, bn), d ** -0.5, desc(out, bm // n_split),
                                h, n, HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, SPLIT=n_split, MODE0=modes[0],
                                MODE1=modes[-1], num_warps=w, num_stages=s)
    return out


# (block_m, block_n, warps, stages, split): the configs the app's tuner picks most at each head_dim
CFGS = {64: [(128, 128, 4, 2, 2), (128, 64, 4, 3, 1), (64, 128, 4, 2, 1), (128, 128, 8, 3, 1)],
        128: [(256, 64, 8, 3, 2), (128, 64, 4, 2, 1), (128, 128, 8, 3, 1)]}
MODES = {1: [(0,), (1,), (2,)], 2: [(0, 0), (0, 1), (1, 1), (0, 2)]}


def main():
    def variants(q, k, v, cfg):
        bm, bn, w, s, sp = cfg
        return [(f"poly {bm}x{bn} w{w} s{s} split{sp} modes{''.join(map(str, modes))}",
                 lambda modes=modes: poly(q, k, v, bm, bn, w, s, sp, modes)) for modes in MODES[sp]]

    run("polyexp_probe.json", [int(x) for x in os.environ.get("D", "64,128").split(",")], CFGS, variants, _poly_fwd)


if __name__ == "__main__":
    main()
