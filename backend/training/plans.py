"""A study's plan: the shared recipes, the templates (Table 2, Figures 6/7, a grid) and
:func:`plan`, which turns a template and seeds into runs with their counted costs; no
training here (:mod:`backend.study` trains and reports them).

Torch-light: it builds specs and counts them (``backend.csn``), never a model.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from backend.csn import ArchSpec, SpecError, count, preset
from backend.csn.bounds import load_json, show

#: Shared recipes: TrainConfig fields, plus ``pool1`` and ``input_centre`` applied to every
#: spec. ``quick`` was chosen by measurement on ``backend.synth --difficulty easy`` data (README
#: "The quick Table 2 study: measured"; ``input_centre`` "temporal" ends the nets' plateau at
#: chance, README "The plateau"); ``tiny`` is a seconds-long smoke test.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"optimizer": "sgd", "epochs": 45, "batch_size": 8, "frames": 8, "rate": 2,
              "size": 112, "eval_clips": 10, "pool1": True},
    "quick": {"optimizer": "adamw", "lr": 6e-3, "epochs": 14, "warmup_epochs": 1,
              "batch_size": 32, "frames": 8, "rate": 2, "size": 32, "eval_clips": 2,
              "eval_every": 4, "weight_decay": 1e-4, "pool1": False, "input_centre": "temporal",
              "workers": 0},
    "tiny": {"optimizer": "adamw", "lr": 1e-3, "epochs": 1, "batch_size": 4, "frames": 8,
             "rate": 2, "size": 32, "eval_clips": 1, "max_steps_per_epoch": 2, "pool1": False,
             "workers": 0, "log_every": 1},
}
#: recipe keys that set a spec field of every run (not TrainConfig fields)
SPEC_KNOBS = ("pool1", "input_centre")
FAMILY_LABEL = {"resnet3d": "ResNet3D", "ir-csn": "ir-CSN", "ip-csn": "ip-CSN"}


@dataclass
class PlannedRun:
    label: str          # e.g. "ir-CSN-26", "bottleneck-G-8 g4"
    family: str         # one curve in Figures 6/7; one row group in the table
    order: int          # position along its family's curve (paper order)
    spec: dict[str, Any]
    seed: int = 0
    paper: str | None = None  # the paper's preset name when this run matches a Table 2 row
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.label} s{self.seed}".replace(" ", "_")


@dataclass
class Study:
    name: str
    template: str
    args: dict[str, Any]
    recipe_name: str
    recipe: dict[str, Any]
    seeds: list[int]
    runs: list[PlannedRun]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Study":
        return cls(**{**d, "runs": [PlannedRun(**r) for r in d["runs"]]})


# --- templates ---------------------------------------------------------------------------------
def scale_width(spec: ArchSpec, width: int | None) -> ArchSpec:
    """Every stage (and the stem) scaled so that conv2's inner width is ``width``."""
    if not width or width == spec.stages[0].inner:
        return spec
    k = width / spec.stages[0].inner
    return replace(spec, stem_width=max(1, round(spec.stem_width * k)),
                   stages=[replace(s, width=max(1, round(s.width * k)),
                                   inner=max(1, round(s.inner * k))) for s in spec.stages])


def _table2(depth: int = 26, **_: Any) -> list[tuple[str, str, int, ArchSpec, str | None]]:
    out = []
    for i, fam in enumerate(("resnet3d", "ir-csn", "ip-csn")):
        name = f"{fam}-{depth}"
        out.append((f"{FAMILY_LABEL[fam]}-{depth}", FAMILY_LABEL[fam], i, preset(name), name))
    return out


def _fig67(blocks: int = 8, groups: tuple[int, ...] = (2, 4, 8), **_: Any):
    if blocks not in (8, 16):
        raise SpecError("", f"fig67: blocks must be 8 or 16, got {blocks}")
    out: list[tuple[str, str, int, ArchSpec, str | None]] = []
    for base, kinds in (("simple", ("", "G", "D")), ("bottleneck", ("", "G", "D", "DG"))):
        fam, order = f"{base}-X-{blocks}", 0
        for kind in kinds:
            name = f"{base}-{kind + '-' if kind else ''}{blocks}"
            if kind in ("G", "DG"):
                for g in groups:
                    key = "groups" if kind == "G" else "pw_groups"
                    out.append((f"{name} g{g}", fam, order, preset(name, **{key: g}), None))
                    order += 1
            else:
                out.append((name, fam, order, preset(name), None))
                order += 1
    return out


def _grid(base: str = "ir-csn-26", field_: str = "groups=1,2,4", stage: int | None = None,
          **_: Any):
    name, _, values = field_.partition("=")
    if not values:
        raise SpecError("", f"grid: --field must be NAME=V1,V2,..., got {show(field_)}")
    out = []
    if values.count(",") >= MAX_GRID_VALUES:
        raise SpecError("", f"grid: at most {MAX_GRID_VALUES} values")
    for i, text in enumerate(values.split(",")):
        try:
            v: Any = load_json(text, "grid value")
        except SpecError:          # a word (block=ir): the text itself
            v = text
        spec = (preset(base, stage_overrides={stage: {name: v}}) if stage is not None
                else preset(base, **{name: v}))
        out.append((f"{base} {name}={text}", base, i, spec, None))
    return out


MAX_GRID_VALUES, MAX_SEEDS = 64, 64   # a study of at most 64 x 64 planned runs

TEMPLATES: dict[str, Callable[..., list]] = {"table2": _table2, "table2-quick": _table2,
                                             "fig67": _fig67, "fig67-quick": _fig67,
                                             "grid": _grid}
#: the quick templates: their fixed arguments (recipe ``quick``)
QUICK_DEFAULTS: dict[str, dict[str, Any]] = {"table2-quick": {"depth": 26, "width": 16},
                                             "fig67-quick": {"blocks": 8, "width": 16}}


def plan(template: str, *, seeds: list[int] | None = None, recipe: str | dict | None = None,
         width: int | None = None, name: str | None = None, num_classes: int = 8,
         **args: Any) -> Study:
    """The runs of a study with their counted costs at the recipe's clip (no training)."""
    if template not in TEMPLATES:
        raise SpecError("", f"unknown study template {template!r}; one of {', '.join(TEMPLATES)}")
    if template in QUICK_DEFAULTS:
        quick = {k: v for k, v in QUICK_DEFAULTS[template].items() if k != "width"}
        args = {**quick, **{k: v for k, v in args.items() if v is not None}}
        width = width or QUICK_DEFAULTS[template]["width"]
        recipe = recipe or "quick"
    recipe_name = recipe if isinstance(recipe, str) else "custom"
    rec = dict(RECIPES[recipe] if isinstance(recipe, str) else (recipe or RECIPES["quick"]))
    seeds = list(seeds or [0])
    if len(seeds) > MAX_SEEDS:
        raise SpecError("", f"at most {MAX_SEEDS} seeds, got {len(seeds)}")
    runs = []
    for label, fam, order, spec, paper in TEMPLATES[template](**{k: v for k, v in args.items()
                                                                   if v is not None}):
        spec = replace(scale_width(spec, width), frames=rec.get("frames", 8),
                       height=rec.get("size", 112), width=rec.get("size", 112),
                       num_classes=num_classes, pool1=rec.get("pool1", spec.pool1),
                       input_centre=rec.get("input_centre", spec.input_centre)).validate()
        t = count(spec).totals
        costs = {"params": t.params, "flops": t.flops, "interactions": t.interactions}
        for s in seeds:
            runs.append(PlannedRun(label, fam, order, spec.to_dict(), s, paper, costs))
    return Study(name or f"{template}-{time.strftime('%Y%m%d-%H%M%S')}", template,
                 {**args, "width": width}, recipe_name, rec, seeds, runs)


def train_hparams(study: Study, run: PlannedRun) -> dict[str, Any]:
    """The TrainConfig fields of one run (recipe + seed; the clip and pool1 are in the spec)."""
    return {**{k: v for k, v in study.recipe.items() if k not in SPEC_KNOBS}, "seed": run.seed}


def replan(doc: dict[str, Any], seeds: list[int] | None = None) -> Study:
    """A saved study (``study.json``) planned again with ``seeds`` added: the runs it had keep
    their keys and specs (checked), the new seeds' runs follow."""
    old = Study.from_dict(doc["study"])
    if not seeds or set(seeds) <= set(old.seeds):
        return old
    args = {k: v for k, v in old.args.items() if k != "width"}
    if "groups" in args and args["groups"] is not None:
        args["groups"] = tuple(args["groups"])
    new = plan(old.template, seeds=sorted(set(old.seeds) | set(seeds)), recipe=dict(old.recipe),
               width=old.args.get("width"), name=old.name,
               num_classes=old.runs[0].spec["num_classes"], **args)
    new.recipe_name = old.recipe_name
    specs = {r.key: r.spec for r in new.runs}
    if any(specs.get(r.key) != r.spec for r in old.runs):
        raise ValueError("--seeds: planning the saved study again gives other runs; "
                         "start a new study instead")
    return new
