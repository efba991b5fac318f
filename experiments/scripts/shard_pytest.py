"""Run a pytest selection in N processes at once (the GPU suite compiles a kernel per test, and
compiling is CPU-bound: 16 cores on the lent H200): collect the test ids, deal them round-robin
into shards, run each shard in its own process with its own log, and print each shard's summary.
Usage: shard_pytest.py SHARDS OUT_DIR TIMEOUT_S -- pytest arguments... Exits 1 if any shard failed.
PASSED=N:a,b,...:K leaves out tests an earlier run passed: of an N-way split of the same
collection, the first K tests of shards a, b, ... Every shard's log is printed at the end."""
import os
import subprocess
import sys
import time


def main():
    shards, out, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    args = [a for a in sys.argv[sys.argv.index("--") + 1:] if a not in ("-q", "-qq")]
    ids = [line for line in subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                                           capture_output=True, text=True).stdout.splitlines() if "::" in line]
    total = len(ids)
    if os.environ.get("PASSED"):
        n, done, k = os.environ["PASSED"].split(":")
        skip = {t for i in map(int, done.split(",")) for t in ids[i::int(n)][:int(k)]}
        ids = [t for t in ids if t not in skip]
    print(f"{total} tests collected, {len(ids)} to run in {shards} shards", flush=True)
    t0 = time.time()
    procs = []
    for i in range(shards):
        mine = ids[i::shards]
        if not mine:
            continue
        log = open(f"{out}/shard-{i}.log", "w")
        procs.append((i, log, subprocess.Popen([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *mine], stdout=log, stderr=subprocess.STDOUT)))
    bad = 0
    for i, log, p in procs:
        try:
            rc = p.wait(timeout=max(0.1, timeout - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            for _, _, q in procs:  # time is up for every shard still running
                if q.poll() is None:
                    q.kill()
            rc = "timeout"
        log.close()
        tail = open(f"{out}/shard-{i}.log").read().strip().splitlines()[-1:]
        print(f"shard {i}: rc {rc}: {tail[0] if tail else ''}", flush=True)
        bad += rc != 0
    print(f"{time.time() - t0:.0f} s", flush=True)
    for i, _, _ in procs:
        print(f"---- shard {i}\n" + open(f"{out}/shard-{i}.log").read()[-3000:], flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
