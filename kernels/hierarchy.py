"""The memory hierarchy of the GPU a run was recorded on, as data: registers, shared memory (SRAM),
L2 and HBM with their sizes and bandwidths, the spec sheet's numbers labelled as spec and the
project's own measurements (bench/results/*.json) labelled as measured; and the "4 accesses -> 3"
softmax story against the DRAM bytes Nsight Compute measured (bench/results/*-dram-bytes.json).

Not for: timing or profiling anything (bench/, experiments/jobs/); drawing (viz/figures/hierarchy.py).
"""
from dataclasses import dataclass

from kernels import results, traffic

# NVIDIA's published figures (H100 / H200 datasheets and the Hopper architecture whitepaper): per-SM
# register file 256 KB and 256 KB of combined L1 / shared memory (up to 228 KB of it shared), 50 MB L2,
# 132 SMs on the SXM parts. NVIDIA publishes no bandwidth for registers, shared memory or L2: None.
SPEC_SOURCE = "NVIDIA H100 / H200 datasheets and the Hopper architecture whitepaper"
SPECS = {
    "NVIDIA H200": {"sms": 132, "hbm_bytes": 141e9, "hbm_TBps": 4.8, "hbm_name": "HBM3e"},
    "NVIDIA H100 80GB HBM3": {"sms": 132, "hbm_bytes": 80e9, "hbm_TBps": 3.35, "hbm_name": "HBM3"},
}
HOPPER_PER_SM = {"registers": 256 * 1024, "shared": 228 * 1024}
HOPPER_L2_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Level:
    name: str
    size_bytes: float  # whole GPU
    size_note: str
    bandwidth_TBps: float | None  # None: not published, not measured
    bandwidth_source: str  # "spec", "measured" or "" when none


def measured_copy(gpu: str) -> dict | None:
    """The newest committed benchmark run on `gpu` that measured a device copy: {"TBps", "file", "date"}."""
    for name, result in results.recorded().items():
        tbps = result.get("ceilings", {}).get("copy_TBps")
        if result["env"].get("gpu") == gpu and tbps:
            return {"TBps": tbps, "file": f"bench/results/{name}", "date": str(result["env"].get("date", ""))[:10]}
    return None


def levels(gpu: str) -> list[Level]:
    """Registers, shared memory, L2, HBM of `gpu`, nearest the arithmetic first. HBM twice when the
    project measured it: the spec's bandwidth and the measured copy's."""
    if gpu not in SPECS:
        raise ValueError(f"no memory hierarchy for {gpu!r}; known: {', '.join(SPECS)}")
    s = SPECS[gpu]
    out = [Level("registers", HOPPER_PER_SM["registers"] * s["sms"], f"256 KB per SM × {s['sms']} SMs", None, ""),
           Level("shared memory (SRAM)", HOPPER_PER_SM["shared"] * s["sms"], f"228 KB per SM × {s['sms']} SMs",
                 None, ""),
           Level("L2", HOPPER_L2_BYTES, "50 MB, shared by all SMs", None, ""),
           Level(f"HBM ({s['hbm_name']})", s["hbm_bytes"], f"{s['hbm_bytes'] / 1e9:g} GB", s["hbm_TBps"], "spec")]
    copy = measured_copy(gpu)
    if copy is not None:
        out.append(Level(f"HBM ({s['hbm_name']})", s["hbm_bytes"], f"device copy, {copy['file']}", copy["TBps"],
                         "measured"))
    return out


def softmax_dram(seq_len: int, data: dict | None = None) -> list[dict]:
    """Per softmax variant measured at (seq_len x seq_len, float32): the model's loads and stores per
    element, and the passes over the input that reached DRAM (ncu's bytes / the input's bytes)."""
    data = results.dram_bytes() if data is None else data
    if data is None:
        return []
    out = []
    for case in data["cases"]:
        what = case.get("what", "")
        if not what.startswith("softmax_") or case.get("seq_len") != seq_len:
            continue
        variant = what.removeprefix("softmax_")
        ld, st = traffic.SOFTMAX_ACCESSES[variant]
        input_bytes = seq_len * seq_len * {"float32": 4, "float16": 2}[case["dtype"]]
        out.append({"variant": variant, "loads": ld, "stores": st, "accesses": ld + st,
                    "model_bytes": case["model_bytes_at_dtype"], "input_bytes": input_bytes,
                    "dram_read_bytes": case["dram_read_bytes"], "dram_write_bytes": case["dram_write_bytes"],
                    "dram_reads_per_element": case["dram_read_bytes"] / input_bytes,
                    "cached_reads_per_element": max(0.0, ld - case["dram_read_bytes"] / input_bytes)})
    return out


def softmax_seq_lens(data: dict | None = None) -> list[int]:
    data = results.dram_bytes() if data is None else data
    return sorted({c["seq_len"] for c in (data or {}).get("cases", []) if c.get("what", "").startswith("softmax_")})
