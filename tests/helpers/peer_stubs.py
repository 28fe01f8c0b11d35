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
import warnings


class _Unavailable:
    def __init__(self, *a, **kw):
        raise RuntimeError(f"{type(self).__name__} is an import stub (tests/helpers/peer_stubs.py)")


def _module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def import_peer(*modules: str) -> str:
    """Import ``modules`` with the stubs in place; return "" or why they cannot be imported.

    The torchvision stub is removed again afterwards, so no other test ever sees it."""
    added = []
    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        ops = _module("torchvision.ops", RoIAlign=type("RoIAlign", (_Unavailable,), {}))
        _module("torchvision", ops=ops, __path__=[])
        added = ["torchvision", "torchvision.ops"]
    try:
        if any(m.startswith("mmaction") for m in modules) and _mmaction_lacks_drn():
            drn = _module("mmaction.models.localizers.drn.drn", DRN=type("DRN", (_Unavailable,), {}))
            _module("mmaction.models.localizers.drn", drn=drn, __path__=[])
        with warnings.catch_warnings():  # the peers' import-time warnings (mmcv-lite has no ops)
            warnings.simplefilter("ignore")
            for m in modules:
                importlib.import_module(m)
        return ""
    except Exception as e:  # noqa: BLE001 - any failure means: skip these tests, say why
        return f"{type(e).__name__}: {e}"
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _mmaction_lacks_drn() -> bool:
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        return False
    from pathlib import Path
    return not (Path(spec.submodule_search_locations[0]) / "models/localizers/drn").is_dir()
