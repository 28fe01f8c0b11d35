"""Two tiny import stubs so the peers' own packages import here (tests only).

- ``torchvision``: the project never installs it (HELPERS: torch only). pytorchvideo 0.1.5's
  ``models/head.py`` imports ``torchvision.ops.RoIAlign`` at module level for ``ResNetRoIHead``,
  which CSN does not use; the stub class refuses to be built, so nothing can run it silently.
- ``mmaction.models.localizers.drn``: the mmaction2 1.2.0 wheel on PyPI lacks this subpackage
  (open-mmlab/mmaction2#2714) although ``localizers/__init__.py`` imports ``DRN`` from it; DRN is
  a temporal-grounding localizer, unrelated to ResNet3dCSN. The stub ``DRN`` refuses to be built.
"""
from __future__ import annotations

import importlib.util
import sys
import types


class _Unavailable:
    def __init__(self, *a, **kw):
        raise RuntimeError(f"{type(self).__name__} is an import stub (tests/_peer_stubs.py)")


def _module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def install() -> None:
    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        ops = _module("torchvision.ops", RoIAlign=type("RoIAlign", (_Unavailable,), {}))
        _module("torchvision", ops=ops, __path__=[])
    if "mmaction.models.localizers.drn" not in sys.modules:
        try:
            has_drn = importlib.util.find_spec("mmaction.models.localizers.drn") is not None
        except (ImportError, ValueError):
            has_drn = False  # mmaction2 absent, or its package __init__ failed: not our business
        if not has_drn:
            drn = _module("mmaction.models.localizers.drn.drn", DRN=type("DRN", (_Unavailable,), {}))
            _module("mmaction.models.localizers.drn", drn=drn, __path__=[])
