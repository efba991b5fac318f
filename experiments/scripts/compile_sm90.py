"""Compile the project's kernels for sm_90 (Hopper) on a machine with no GPU, and report what ptxas made.

Every launch the given calls make is compiled by triton's own JIT with a stub driver (target
cuda 90, warp size 32) instead of running: JITFunction[grid](...) becomes .warmup(...). Each
compiled kernel is reported with its registers, stack (spills) and shared memory from
`cuobjdump -res-usage`, and a hash of its SASS opcode sequence, so two trees can be compared
kernel by kernel ("did a refactor change the code?") without device time.

    /tmp/v36/bin/python experiments/scripts/compile_sm90.py TREE CASES.py OUT.json   # triton 3.6 in that venv

TREE is a checkout (its kernels/ are imported); CASES.py defines CASES(): (name, call) pairs in that
tree's API (experiments/scripts/sm90_cases.py for this one).
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
import torch  # noqa: E402

torch.cuda.is_available = lambda: True  # kernels.backend: compiled kernels
torch.cuda.get_device_capability = lambda *a: (9, 0)
torch.cuda.get_device_name = lambda *a: "stub sm_90"
torch.cuda.synchronize = lambda *a: None
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402


class StubDriver:
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_device_interface(self):
        return torch.cuda

    def is_active(self):
        return True


driver.set_active(StubDriver())
COMPILED = []  # (kernel name, compiled kernel) in launch order


def _warm(self, grid):
    def run(*args, **kwargs):
        k = self.warmup(*args, grid=grid, **kwargs)
        COMPILED.append((self.fn.__name__, k))
    return run


JITFunction.__getitem__ = _warm
CUOBJDUMP = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"


def report(kernel) -> dict:
    path = Path("/tmp/_k.cubin")
    path.write_bytes(kernel.asm["cubin"])
    res = subprocess.run([str(CUOBJDUMP), "-res-usage", str(path)], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", res)
    sass = subprocess.run([str(CUOBJDUMP), "-sass", str(path)], capture_output=True, text=True).stdout
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass)
    return {"reg": int(m[1]), "stack": int(m[2]), "shared": int(m[3]), "local": int(m[4]), "sass_ops": len(ops),
            "sass_hash": hashlib.sha1(" ".join(ops).encode()).hexdigest()[:12],
            "hgmma": sum(o.startswith("HGMMA") for o in ops)}


def main(tree: str, cases_file: str, out: str) -> None:
    import importlib.util

    sys.path.insert(0, tree)
    spec = importlib.util.spec_from_file_location("cases", cases_file)
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)

    rows = []
    only = os.environ.get("ONLY", "")  # a substring of the case names to compile
    for name, call in cases.CASES():
        if only not in name:
            continue
        COMPILED.clear()
        try:
            call()
        except Exception as e:  # noqa: BLE001  a case that does not compile is reported, not fatal
            rows.append({"case": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            print(f"{name:60s} ERROR {rows[-1]['error']}", flush=True)
            continue
        for kname, k in COMPILED:
            r = {"case": name, "kernel": kname, **report(k)}
            rows.append(r)
            print(f"{name:60s} {kname:24s} reg {r['reg']:3d} stack {r['stack']:4d} ops {r['sass_ops']:5d} "
                  f"{r['sass_hash']}", flush=True)
    Path(out).write_text(json.dumps({"triton": triton.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
