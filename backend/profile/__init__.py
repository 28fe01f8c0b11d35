"""Cost as the device pays it: per-layer time, memory and roofline beside the counter's FLOPs.

    from backend.profile import ProfileConfig, profile, compare, memory_model, max_batch
    rep = profile(preset("ir-csn-50", frames=8, height=112, width=112), ProfileConfig(batch=4))

``python -m backend.profile ir-csn-50 --batch 4 --mode train`` prints the same as a table.
"""
from .compare import compare, ratio_rows
from .core import ProfileConfig, ProfileReport, profile
from .memory import MemoryModel, activation_rows, max_batch, memory_model, parse_bytes
from .roofline import Roof, roof
from .saved import saved_activation_bytes

__all__ = ["ProfileConfig", "ProfileReport", "profile", "compare", "ratio_rows", "MemoryModel",
           "activation_rows", "memory_model", "max_batch", "parse_bytes", "Roof", "roof",
           "saved_activation_bytes"]
