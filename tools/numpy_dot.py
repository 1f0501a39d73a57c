#!/usr/bin/env python3
"""Times a 1024^3 f32 matmul in numpy (its BLAS) for a side-by-side figure with benches/cpu_dot.rs.

Usage: python3 tools/numpy_dot.py   (prints median ms and GFLOP/s over 30 runs)
"""
import statistics
import time

import numpy as np

n = 1024
rng = np.random.default_rng(1)
a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
for _ in range(3):
    a @ b
times = []
for _ in range(30):
    t = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t)
med = statistics.median(times)
print(f"numpy {np.__version__} dot f32 1024^3: median {med * 1e3:.2f} ms, {2 * n**3 / med / 1e9:.0f} GFLOP/s")
