import os

# before anything loads torch: OpenMP threads sleep instead of spinning (see backend/__init__.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
