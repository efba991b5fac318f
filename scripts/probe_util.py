"""What the forward-kernel probes (attn_gap_probe.py, attn_polyexp_probe.py) share: tensor
descriptors over (batch, heads, seq_len, head_dim), and one shape's variants checked against
float64, compiled (registers, spills, shared memory recorded) and timed in interleaved rounds."""
import json
import os

import torch
import triton
import triton.language as tl

from kernels import attention
from kernels.attention import interleaved_medians
from kernels.bench import _sdpa, attention_flops

ROUNDS = 5


@triton.jit
def load_half(Q, z, h, row, HALF: tl.constexpr, HEAD_DIM: tl.constexpr):
    """The probe kernels' start for HALF rows of a q-block: (q, m = -inf, l = 0, acc = 0)."""
    q = tl.reshape(Q.load([z, h, row, 0]), [HALF, HEAD_DIM])
    return (q, tl.zeros([HALF], dtype=tl.float32) - float("inf"), tl.zeros([HALF], dtype=tl.float32),
            tl.zeros([HALF, HEAD_DIM], dtype=tl.float32))


def desc(t, rows):
    """A tensor descriptor that loads (1, 1, rows, head_dim) blocks of t."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(t, shape=list(t.shape), strides=list(t.stride()), block_shape=[1, 1, rows, t.shape[-1]])


def _compiled(jit_fn):
    return {id(k): k for caches in jit_fn.device_caches.values() for k in caches[0].values()}


def time_variants(d, q, k, v, flops, variants, jit_fn) -> list[dict]:
    """Rows for SDPA FLASH and cuDNN and every (tag, fn) in `variants` (fn returns the output; a
    jit_fn launch when the tag starts with "probe"): max error against float64, TFLOP/s from the
    median over interleaved rounds, and for the probe's own kernel its compiled resources."""
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    fns = {"FLASH": lambda: _sdpa("FLASH_ATTENTION")(q, k, v, False),
           "CUDNN": lambda: _sdpa("CUDNN_ATTENTION")(q, k, v, False)}
    info, rows = {}, []
    for tag, fn in [*fns.items(), *variants]:
        try:
            before = _compiled(jit_fn)
            info[tag] = {"err": float((fn().double() - ref).abs().max())}
            new = [kk for i, kk in _compiled(jit_fn).items() if i not in before]
            if new:
                info[tag].update(regs=new[0].n_regs, spills=new[0].n_spills, shared=new[0].metadata.shared)
            fns[tag] = fn
        except Exception as e:  # a variant that does not compile is a result too
            rows.append(dict(d=d, variant=tag, error=str(e).splitlines()[0][:200]))
            print(rows[-1], flush=True)
    times, failed = interleaved_medians(fns, ROUNDS, lambda fn: triton.testing.do_bench(fn, warmup=25, rep=100))
    rows += [dict(d=d, variant=tag, tflops=flops / ms / 1e9, **info[tag]) for tag, ms in times.items()]
    rows += [dict(d=d, variant=tag, error=str(err)[:200]) for tag, err in failed.items()]
    return rows


def print_ranked(rows):
    for d in sorted({r["d"] for r in rows}, reverse=True):
        for r in sorted([r for r in rows if r["d"] == d], key=lambda r: -r.get("tflops", 0)):
            extra = f"regs {r['regs']} spills {r['spills']} smem {r['shared']}" if "regs" in r else ""
            tf = f"{r['tflops']:6.1f}" if "tflops" in r else r.get("error", "")
            print(f"  d={d} {r['variant']:52s} {tf}  err {r.get('err', float('nan')):.1e}  {extra}")


def run(json_name, head_dims, cfgs, probe_variants, jit_fn, batch=4, heads=16, seq_len=8192):
    """For each head_dim: the app's kernel at each (block_m, block_n, warps, stages, split) of
    cfgs[head_dim] and the probe's variants of it (`probe_variants(q, k, v, cfg)` gives (tag, fn)
    pairs), non-causal fp16, all timed together; the rows go to $OUT/json_name and are printed."""
    rows = []
    for d in head_dims:
        q, k, v = (torch.randn(batch, heads, seq_len, d, device="cuda", dtype=torch.float16) for _ in range(3))
        variants = []
        for bm, bn, w, s, sp in cfgs[d]:
            variants.append((f"app {bm}x{bn} w{w} s{s} split{sp}", lambda bm=bm, bn=bn, w=w, s=s, sp=sp: (
                attention._launch(q, k, v, False, None, bm, bn, num_warps=w, num_stages=s, use_tma=True,
                                  split=sp)[0])))
            variants += probe_variants(q, k, v, (bm, bn, w, s, sp))
        rows += time_variants(d, q, k, v, attention_flops(batch, heads, seq_len, d, False), variants, jit_fn)
        del q, k, v
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), json_name), "w"), indent=1)
    print_ranked(rows)
