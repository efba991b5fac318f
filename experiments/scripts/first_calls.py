"""First calls at new lengths (issue 22, "first calls"): wall seconds of the first forward + backward
at each length, in order, with how many tuning decisions this process timed (the rest came from the
disk cache or the shape bucket). `python experiments/scripts/first_calls.py OUT.json N [N ...]`;
run it twice with the same FA_VIZ_TUNING_CACHE and TRITON_CACHE_DIR to see a second process."""
import json
import sys
import time

import torch

from kernels import attention, tuning


def main(out: str, lengths: list[int]) -> None:
    rows = []
    for n in lengths:
        q, k, v = (torch.randn(4, 16, n, 128, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
        before = (tuning.forward_tuner.timed, tuning.backward_tuner.timed)
        torch.cuda.synchronize()
        t = time.perf_counter()
        attention.flash_attention(q, k, v, causal=True).sum().backward()
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        t = time.perf_counter()
        attention.flash_attention(q, k, v, causal=True).sum().backward()
        torch.cuda.synchronize()
        rows.append({"seq_len": n, "bucket": tuning.bucket(n), "first_s": round(first, 3),
                     "second_s": round(time.perf_counter() - t, 4),
                     "forward_timed": tuning.forward_tuner.timed - before[0],
                     "backward_timed": tuning.backward_tuner.timed - before[1],
                     "forward_config": attention.tuned_config_name(), "backward": attention.tuned_backward_name()})
        print(rows[-1], flush=True)
    info = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cache": str(tuning.cache_path()),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "shape": "batch 4, 16 heads, d128, fp16, causal",
            "rows": rows}
    with open(out, "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], [int(x) for x in sys.argv[2:]])
