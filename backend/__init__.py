"""CSN Explorer's library: models, counting, video, training, profiling (no UI)."""
import os

# OpenMP threads spin between parallel regions; where the cores are shared, spinning threads
# take the time the working ones need (a 2-thread forward measured 100x slower at load 12,
# bench/bench_step.py). Effective when set before torch loads libgomp (import backend first);
# OMP_WAIT_POLICY=ACTIVE in the environment keeps spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
