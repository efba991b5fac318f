"""Compare two compile_sm90.py result files kernel by kernel: which cases compiled to the same SASS
(opcode hash, registers, stack), which differ, and which are new.

    python3 experiments/scripts/compare_sm90.py BEFORE.json AFTER.json
"""
import json
import sys


def main(before: str, after: str) -> int:
    old = {(r["case"], r.get("kernel")): r for r in json.load(open(before))["rows"]}
    new = json.load(open(after))["rows"]
    same, differ, added = [], [], []
    for r in new:
        key = (r["case"], r.get("kernel"))
        if key not in old:
            added.append(r)
        elif all(r.get(f) == old[key].get(f) for f in ("sass_hash", "reg", "stack", "shared")):
            same.append(key)
        else:
            differ.append((key, old[key], r))
    print(f"{len(same)} kernels compile to the same SASS, {len(differ)} differ, {len(added)} new, "
          f"{sum('error' in r for r in new)} errors; {len(old) - len(same) - len(differ)} of before not compiled after")
    for key, a, b in differ:
        print(f"  differs: {key[0]} {key[1]}: reg {a.get('reg')} -> {b.get('reg')}, stack {a.get('stack')} -> "
              f"{b.get('stack')}, ops {a.get('sass_ops')} -> {b.get('sass_ops')}")
    for r in added:
        print(f"  new: {r['case']} {r.get('kernel', '')}: reg {r.get('reg')}, stack {r.get('stack')}, ops "
              f"{r.get('sass_ops')}" + (f" ERROR {r['error']}" if "error" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
