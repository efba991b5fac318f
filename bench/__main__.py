"""`python -m bench`: time the app's kernels against PyTorch on this GPU; a table on stdout,
progress on stderr, every figure in a JSON file (bench/results/ holds the committed runs)."""
import argparse
import datetime
import json
import sys

from kernels import backend


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split(";")[0])
    ap.add_argument("--only", choices=("attention", "softmax", "backward", "masks", "all"), nargs="+", default=["all"],
                    help="one or more parts (default all); backward: forward + backward through autograd; masks: "
                         "sliding window, packed documents, GQA and decode against SDPA and FlexAttention")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    ap.add_argument("--mask-seq-lens", type=int, nargs="+", default=[4096, 8192, 16384],
                    help="masks: the sequence lengths of the window, documents and GQA cases")
    ap.add_argument("--decode-lens", type=int, nargs="+", default=[4096, 16384, 65536],
                    help="masks: the K/V cache lengths of the decode case")
    ap.add_argument("--mask-head-dim", type=int, default=128, help="masks: head_dim of the self-attention cases")
    ap.add_argument("--mask-cases", nargs="+", default=["window", "documents", "gqa", "decode"],
                    choices=("window", "documents", "gqa", "decode"), help="masks: which cases")
    ap.add_argument("--quick", action="store_true", help="seq_len 1024 and 4096, one softmax shape of each kind")
    ap.add_argument("--small", action="store_true", help="the Benchmarks page's live run (bench/small.py)")
    ap.add_argument("--json", default=None, help="write every figure here (default bench-DATE.json)")
    args = ap.parse_args(argv)
    if backend.INTERPRET:
        print("python -m bench needs a CUDA GPU: this machine runs the kernels in Triton's interpreter, "
              "where timings mean nothing. The recorded runs are in bench/results/.", file=sys.stderr)
        return 2
    from bench import report, timing

    if args.small:
        from bench.small import small_run

        result = small_run(lambda f, m: timing.log(f"progress {f:.3f} {m}"))
    else:
        result = run(args)
    path = args.json or f"bench-{datetime.date.today().isoformat()}.json"
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(report.table(result))
    timing.log(f"wrote {path}")
    return 0


def run(args) -> dict:
    from bench import attention, backward, masks, softmax, timing
    from kernels.results import ratios

    if args.quick:
        args.seq_lens = [1024, 4096]
    result = {"env": timing.environment(), "args": vars(args)}
    timing.log(f"{result['env']['gpu']}: measuring ceilings")
    result["ceilings"] = timing.ceilings()
    parts = {"attention", "softmax", "backward", "masks"} if "all" in args.only else set(args.only)
    if "attention" in parts:
        result["attention"] = attention.bench_attention(args.seq_lens, args.head_dims, args.batch, args.heads,
                                                        args.dtype)
    if "softmax" in parts:
        shapes = ([softmax.SHAPES_ON_CHIP[0], softmax.SHAPES_LONG[0]] if args.quick
                  else softmax.SHAPES_ON_CHIP + softmax.SHAPES_LONG)
        result["softmax"] = softmax.bench_softmax(shapes)
    if "backward" in parts:
        result["backward"] = backward.bench_backward(args.seq_lens, args.head_dims, args.batch, args.heads,
                                                     dtype=args.dtype)
        result["flops_convention"] = "forward 4*B*H*N^2*D (halved when causal); backward 2.5x; fwd+bwd 3.5x"
        if "attention" not in result:  # the forwards timed in the same rounds, as a forward table
            result["attention"] = backward.forward_rows(result["backward"])
    if "masks" in parts:
        result["masks"] = masks.bench_masks(args.mask_seq_lens, args.decode_lens, args.mask_head_dim, args.batch,
                                            args.heads, args.dtype, tuple(args.mask_cases),
                                            progress=lambda f, m: timing.log(f"progress {f:.3f} {m}"))
        result["masks_note"] = masks.note()
    result["ratios"] = ratios(result)
    return result


if __name__ == "__main__":
    sys.exit(main())
