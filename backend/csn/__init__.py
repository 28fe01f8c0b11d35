"""CSN architecture spec, presets, torch model and analytic cost counter."""
from .counting import UNITS, CountReport, LayerCount, Totals, count
from .presets import list_presets, preset
from .spec import BLOCK_TYPES, ArchSpec, LayerPlan, SpecError, StageSpec, plan

__all__ = [
    "ArchSpec", "StageSpec", "SpecError", "LayerPlan", "BLOCK_TYPES", "plan",
    "preset", "list_presets", "count", "CountReport", "LayerCount", "Totals", "UNITS",
    "build_model",
]


def __getattr__(name):  # build_model imports torch lazily: counting stays torch-free
    if name == "build_model":
        from .model import build_model
        return build_model
    raise AttributeError(name)
