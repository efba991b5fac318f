"""The DRAM bytes each kernel really moves, for `ncu --profile-from-start off` to measure.

Runs one (batch 1, head 1) case per region: the FA2-order kernel, the FA1-order kernel, standard
attention (S = QK^T, P = softmax(S), O = PV with S and P in memory) and the softmax kernels over the
N x N float32 scores, the configs the app's memory table describes (64 x 64 blocks, head_dim 64,
float16). Each region is bracketed by cudaProfilerStart/Stop and separated from the next by a
marker kernel (torch.cuda._sleep), so the CSV of `ncu --csv --metrics dram__bytes_read.sum,
dram__bytes_write.sum` splits into cases. `python dram_bytes.py parse ncu.csv out.json` turns it
into experiments/results/h200/...dram-bytes.json with the model and counted figures beside."""
import csv
import json
import sys

CASES = [(n, causal) for n in (4096, 16384) for causal in (False, True)]


def cases():
    """(name, config, callable) in the order they run."""
    import torch

    from kernels import flash_fa1, flash_fwd, softmax

    out = []
    for n, causal in CASES:
        q, k, v = (torch.randn(1, 1, n, 64, device="cuda", dtype=torch.float16) for _ in range(3))
        cfg = {"seq_len": n, "head_dim": 64, "block_m": 64, "block_n": 64, "causal": causal, "dtype": "float16"}
        out.append((f"fa2-{n}-{int(causal)}", {**cfg, "what": "fa2"},
                    lambda q=q, k=k, v=v, c=causal: flash_fwd.launch(q, k, v, c, 0.125, 64, 64)))
        out.append((f"fa1-{n}-{int(causal)}", {**cfg, "what": "fa1"},
                    lambda q=q, k=k, v=v, c=causal: flash_fa1.launch(q, k, v, c, 0.125, 64, 64)))
        if not causal:
            out.append((f"standard-{n}", {**cfg, "what": "standard"},
                        lambda q=q, k=k, v=v: torch.softmax(q @ k.transpose(-1, -2) * 0.125, -1) @ v))
            s = torch.randn(n, n, device="cuda") * 0.125  # the scores as the app's memory table counts them
            for variant in softmax.variants_for(n):
                out.append((f"softmax-{variant}-{n}", {"seq_len": n, "what": f"softmax_{variant}", "dtype": "float32"},
                            lambda s=s, variant=variant: softmax.softmax(s, variant)))
    return out


def run():
    import torch

    todo = cases()
    for _, _, fn in todo:  # compile everything first: nothing but the cases in the profiled regions
        fn()
    torch.cuda.synchronize()
    for name, _, fn in todo:
        torch.cuda.profiler.start()
        torch.cuda._sleep(1000)  # marker
        fn()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
        print(name, flush=True)


def parse(csv_path: str, out_path: str):
    from kernels import traffic

    with open(csv_path) as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own lines and the case names are not CSV
    rows = list(csv.DictReader(lines))
    groups, current = [], None
    for r in rows:
        kernel = r["Kernel Name"]
        if "sleep" in kernel.lower() or "spin" in kernel.lower():
            if current is None or current["kernels"]:
                current = {"kernels": [], "read": 0.0, "write": 0.0}
                groups.append(current)
            continue
        if current is None or not _counts(kernel, len(groups) - 1):
            continue
        value = float(r["Metric Value"].replace(",", ""))
        unit = r["Metric Unit"].lower()
        value *= {"byte": 1, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9}.get(unit, 1)
        key = "read" if "read" in r["Metric Name"] else "write"
        current[key] += value
        if r["ID"] not in [k["id"] for k in current["kernels"]]:
            current["kernels"].append({"id": r["ID"], "name": kernel[:80]})
    todo = [(name, cfg) for name, cfg, _ in cases_static()]
    result = {"metric": "dram__bytes_read.sum + dram__bytes_write.sum (ncu --clock-control none)", "cases": []}
    for (name, cfg), g in zip(todo, groups, strict=False):
        n = cfg["seq_len"]
        if cfg["what"] == "fa2":
            model = traffic.flash_fa2(n, 64, 64, 64, cfg["causal"])
        elif cfg["what"] == "fa1":
            model = traffic.flash_fa1(n, 64, 64, 64, cfg["causal"])
        elif cfg["what"] == "standard":
            model = traffic.standard_attention(n, 64)
        else:
            model = traffic.softmax(cfg["what"][len("softmax_"):], n, n)
        itemsize = 4 if cfg["dtype"] == "float32" else 2
        result["cases"].append({"name": name, **cfg, "dram_read_bytes": g["read"], "dram_write_bytes": g["write"],
                                "kernels": [k["name"] for k in g["kernels"]],
                                "model_elements": traffic.total(model), "model_bytes_at_dtype": traffic.total(model) * itemsize})
    json.dump(result, open(out_path, "w"), indent=1)


MAIN_KERNELS = {"fa2": ("_attn_fwd",), "fa1": ("_attn_fwd_fa1",), "standard": ("gemm", "nvjet", "SoftMax", "Mul"),
                "softmax": ("softmax_",)}


def _counts(kernel: str, index: int) -> bool:
    """Whether a kernel of case `index` is the case's own work (not the allocation fills or the
    lse arithmetic around it)."""
    what = cases_static()[index][1]["what"]
    names = MAIN_KERNELS["softmax" if what.startswith("softmax") else what]
    if what == "fa2":
        return kernel == "_attn_fwd"
    return any(n.lower() in kernel.lower() for n in names)


def cases_static():
    """The case names and configs without a GPU (for parse)."""
    out = []
    for n, causal in CASES:
        cfg = {"seq_len": n, "head_dim": 64, "block_m": 64, "block_n": 64, "causal": causal, "dtype": "float16"}
        out.append((f"fa2-{n}-{int(causal)}", {**cfg, "what": "fa2"}, None))
        out.append((f"fa1-{n}-{int(causal)}", {**cfg, "what": "fa1"}, None))
        if not causal:
            out.append((f"standard-{n}", {**cfg, "what": "standard"}, None))
            for variant in ("naive", "safe", "online", "single_pass"):
                if variant != "single_pass" or n <= 32768:
                    out.append((f"softmax-{variant}-{n}", {"seq_len": n, "what": f"softmax_{variant}", "dtype": "float32"},
                                None))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["parse"]:
        parse(sys.argv[2], sys.argv[3])
    else:
        run()
