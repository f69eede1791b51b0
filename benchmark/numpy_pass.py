#!/usr/bin/python3
"""numpy's single-threaded summing pass, the yardstick for fedguard's.

`fedguard bench aggregate` divides every rule's time by one summing pass
(pass_seconds). That pass must be at least as fast as numpy's x.sum(0) on
the same shape, or the ratios flatter fedguard. Run both in one session:

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmark/numpy_pass.py -n 50 -d 1000000
    fedguard bench aggregate -rule fedavg -n 50 -d 1000000 -json

x.sum(0) does not use BLAS and runs on one thread. The values are standard
normal float32 like fedguard's (another generator: a sum's time does not
depend on them). Prints one JSON object with the median of the runs.
"""
import argparse
import json
import platform
import statistics
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("-d", type=int, default=1_000_000)
    ap.add_argument("-runs", type=int, default=5)
    a = ap.parse_args()
    x = np.random.default_rng(1).standard_normal((a.n, a.d), dtype=np.float32)
    x.sum(0)  # warm-up
    ts = []
    for _ in range(a.runs):
        t = time.perf_counter()
        x.sum(0)
        ts.append(time.perf_counter() - t)
    print(json.dumps({"n": a.n, "d": a.d, "numpy": np.__version__, "python": platform.python_version(),
                      "numpy_sum_seconds": statistics.median(ts)}))


if __name__ == "__main__":
    main()
