"""Probe forward-loop restructurings on the GPU before touching kernels/attention.py: does any pay?
  pipe : issue QK^T of kv-block j+1 before the softmax of block j (FA3's intra-warpgroup overlap)
  poly : half of the exp2s on the FMA pipe (Cody-Waite + degree-4 polynomial, FA4's trick), half
         on the MUFU; for head_dim 128 the MUFU is the busiest unit besides the tensor cores
  poly=2: exp2 two at a time in fp16 (ex2.approx.f16x2): half the MUFU instructions; P is
         rounded to fp16 for the PV matmul anyway
  lazy : rescale acc only when some row's max grew (a branch per tile)
Non-causal, seq_len a multiple of the blocks, fp16, (4, 16, 8192, d). Prints a table, JSON to $OUT.
usage: python3 scripts/attn_probe.py
"""
import json
import os

import torch
import triton
import triton.language as tl

from kernels import attention
from kernels.bench import _median_ms, _sdpa, attention_flops

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _exp2_poly(x):
    # 2^x = 2^j * 2^f, j = round(x), f in [-0.5, 0.5]; x <= 0 here (scores minus the row max)
    x = tl.maximum(x, -126.0)
    t = x + 12582912.0  # 1.5 * 2^23: the rounded integer lands in the low mantissa bits
    j = t - 12582912.0
    f = x - j
    p = 0.009676046752335 * f + 0.055922119334255
    p = p * f + 0.240221071748094
    p = p * f + 0.693121023530673
    p = p * f + 1.000000075533061
    bits = p.to(tl.int32, bitcast=True) + ((t.to(tl.int32, bitcast=True) - 0x4B400000) << 23)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _exp2_f16x2(x):
    # two exp2 per MUFU instruction, in fp16: P is rounded to fp16 for the PV matmul anyway
    return tl.inline_asm_elementwise("ex2.approx.f16x2 $0, $1;", "=r,r", [x.to(tl.float16)],
                                     dtype=tl.float16, is_pure=True, pack=2)


@triton.jit
def _softmax_tile(qk, m_i, qk_scale, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, POLY: tl.constexpr):
    m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    x = qk * qk_scale - m_ij[:, None]
    if POLY == 2:
        p = _exp2_f16x2(x)
    elif POLY:
        a, b = tl.split(tl.reshape(x, [BLOCK_M, 2, BLOCK_N // 2]).permute(0, 2, 1))
        p = tl.reshape(tl.join(tl.math.exp2(a), _exp2_poly(b)).permute(0, 2, 1), [BLOCK_M, BLOCK_N])
    else:
        p = tl.math.exp2(x)
    return p, m_ij


@triton.jit
def _probe_fwd(Q, K, V, sm_scale, Out, stride_z, stride_h, stride_n, H, N_CTX,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               PIPE: tl.constexpr, POLY: tl.constexpr, LAZY: tl.constexpr):
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    base = (off_hz // H).to(tl.int64) * stride_z + (off_hz % H).to(tl.int64) * stride_h
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + base + offs_m[:, None] * stride_n + offs_d[None, :])
    kp = K + base + offs_n[None, :] * stride_n + offs_d[:, None]
    vp = V + base + offs_n[:, None] * stride_n + offs_d[None, :]
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    if PIPE:
        qk = tl.dot(q, tl.load(kp))
        for start_n in range(BLOCK_N, N_CTX, BLOCK_N):
            qk_next = tl.dot(q, tl.load(kp + start_n * stride_n))
            p, m_ij = _softmax_tile(qk, m_i, qk_scale, BLOCK_M, BLOCK_N, POLY)
            alpha = tl.math.exp2(m_i - m_ij)
            l_i = l_i * alpha + tl.sum(p.to(tl.float32), 1)
            acc = acc * alpha[:, None]
            v = tl.load(vp + (start_n - BLOCK_N) * stride_n)
            acc = tl.dot(p.to(v.dtype), v, acc)
            m_i = m_ij
            qk = qk_next
        p, m_ij = _softmax_tile(qk, m_i, qk_scale, BLOCK_M, BLOCK_N, POLY)
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p.to(tl.float32), 1)
        acc = acc * alpha[:, None]
        v = tl.load(vp + (N_CTX - BLOCK_N) * stride_n)
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_ij
    else:
        for start_n in range(0, N_CTX, BLOCK_N):
            qk = tl.dot(q, tl.load(kp + start_n * stride_n))
            p, m_ij = _softmax_tile(qk, m_i, qk_scale, BLOCK_M, BLOCK_N, POLY)
            alpha = tl.math.exp2(m_i - m_ij)
            l_i = l_i * alpha + tl.sum(p.to(tl.float32), 1)
            if LAZY:
                if tl.min(alpha) < 1.0:
                    acc = acc * alpha[:, None]
            else:
                acc = acc * alpha[:, None]
            v = tl.load(vp + start_n * stride_n)
            acc = tl.dot(p.to(v.dtype), v, acc)
            m_i = m_ij
    out = acc / l_i[:, None]
    tl.store(Out + base + offs_m[:, None] * stride_n + offs_d[None, :], out.to(Out.dtype.element_ty))


def probe(q, k, v, bm, bn, w, s, pipe, poly, lazy):
    b, h, n, d = q.shape
    out = torch.empty_like(q)
    _probe_fwd[(n // bm, b * h)](q, k, v, d ** -0.5, out, q.stride(0), q.stride(1), q.stride(2), h, n,
                                 HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, PIPE=pipe, POLY=poly, LAZY=lazy,
                                 num_warps=w, num_stages=s)
    return out


PROBES = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1)]
if os.environ.get("PROBES"):  # e.g. PROBES="000,002": pipe, poly (2 = fp16x2 exp2), lazy
    PROBES = [tuple(int(ch) for ch in p) for p in os.environ["PROBES"].split(",")]


def main():
    B, H, N = 4, 16, 8192
    rows = []
    cfgs = {128: [(128, 128, 8, 3), (128, 64, 8, 3)], 64: [(128, 64, 4, 3), (128, 128, 8, 3)]}
    for d in (128, 64):
        q, k, v = (torch.randn(B, H, N, d, device="cuda", dtype=torch.float16) for _ in range(3))
        ref = _sdpa("FLASH_ATTENTION")(q, k, v, False)
        flops = attention_flops(B, H, N, d, False)

        def add(tag, fn):
            try:
                err = float((fn().float() - ref.float()).abs().max())
                ms = _median_ms(fn)
                rows.append(dict(d=d, variant=tag, tflops=flops / ms / 1e9, err=err))
            except Exception as e:  # a variant that does not compile is a result too
                rows.append(dict(d=d, variant=tag, error=str(e).splitlines()[0][:160]))
            print(rows[-1], flush=True)

        for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION"):
            add(name, lambda name=name: _sdpa(name)(q, k, v, False))
        add("ours autotuned", lambda: attention.flash_attention(q, k, v))
        for bm, bn, w, s in cfgs[d]:
            add(f"ours tma {bm}x{bn} w{w} s{s}", lambda: attention._launch(q, k, v, False, None, bm, bn, num_warps=w,
                                                                            num_stages=s, use_tma=True)[0])
            for pipe, poly, lazy in PROBES:
                tag = f"probe {bm}x{bn} w{w} s{s} pipe={pipe} poly={poly} lazy={lazy}"
                add(tag, lambda: probe(q, k, v, bm, bn, w, s, bool(pipe), poly, bool(lazy)))
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), "probe.json"), "w"), indent=1)
    print("\nranked:")
    for d in (128, 64):
        for r in sorted([r for r in rows if r["d"] == d and "tflops" in r], key=lambda r: -r["tflops"]):
            print(f"  d={d} {r['variant']:48s} {r['tflops']:6.1f}  err {r['err']:.1e}")


if __name__ == "__main__":
    main()
