"""The architecture spec: one JSON-serialisable description of a 3D ResNet / CSN.

Everything else derives from it: ``build_model`` (torch), ``count`` (paper eq. 1-3), the UI
form and the database row. ``plan(spec)`` walks the network once, analytically, and yields
one :class:`LayerPlan` per conv / pool / fc layer with its shapes; both the model builder and
the counter consume that walk, so an architecture is described exactly once.

Block types (paper §3.3-3.4, Figures 2-4):

=================  ===========================================================================
simple             3x3x3 -> 3x3x3                                  (ResNet3D-18/34, Fig. 3a)
simple-G           both 3x3x3 grouped (``groups``)                 (Fig. 3b)
simple-D           both 3x3x3 depthwise, plus a 1x1x1 conv in front of the first one when the
                   block changes the channel count                (Fig. 3c)
bottleneck         1x1x1 -> 3x3x3 -> 1x1x1                         (ResNet3D-26/50/101/152, Fig. 4a)
bottleneck-G       3x3x3 grouped (``groups``): a 3D ResNeXt block  (Fig. 4b)
bottleneck-D / ir  3x3x3 depthwise: ir-CSN                         (Fig. 2c, 4c)
ip                 1x1x1 -> 1x1x1 -> 3x3x3 depthwise -> 1x1x1: ip-CSN (Fig. 2b)
bottleneck-DG      3x3x3 depthwise, both outer 1x1x1 grouped (``pw_groups``)  (Fig. 4d)
=================  ===========================================================================
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Iterator, NamedTuple

from .bounds import check_bounds, load_json, show, show_names
from .vocab import (BLOCK_ALIASES, BLOCK_TYPES, HEADS, INPUT_CENTRES, INPUT_ORDERS, KINETICS_MEAN,  # noqa: F401 - re-exported
                    KINETICS_STD, STAGE_NAMES, SpecError)


def is_simple(block: str) -> bool:
    return block.startswith("simple")


def canonical_block(block: str, where: str = "") -> str:
    b = BLOCK_ALIASES.get(block, block) if isinstance(block, str) else block
    if b not in BLOCK_TYPES:
        raise SpecError(where, f"unknown block type {show(block)}; choose one of {', '.join(BLOCK_TYPES)}")
    return b


@dataclass
class StageSpec:
    """One stage (conv2_x ... conv5_x) of identical residual blocks."""

    blocks: int = 2            # number of residual blocks in the stage
    width: int = 256           # output channels of every block
    inner: int = 64            # bottleneck width (the 3x3x3 conv's channels); = width for simple
    block: str = "bottleneck"  # one of BLOCK_TYPES (aliases ir / ip-csn accepted)
    groups: int = 1            # groups of the 3x3x3 conv(s): simple-G, bottleneck-G only
    pw_groups: int = 1         # groups of the two 1x1x1 convs: bottleneck-DG only
    # temporal stride 2 in the stage's first block (conv3..conv5 only); None follows
    # ArchSpec.temporal_stride (VMZ, mmaction2 and pytorchvideo's create_csn stride all three)
    temporal_stride: bool | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "stage") -> "StageSpec":
        if not isinstance(d, dict):
            raise SpecError(where, f"must be a stage object, got {show(d)}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(where, f"unknown stage field(s) {show_names(unknown)}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class ArchSpec:
    """A whole network: stem, four stages, head, and the clip it is counted at."""

    name: str = "custom"
    stages: list[StageSpec] = field(default_factory=lambda: [StageSpec() for _ in range(4)])
    # clip T x H x W the model is counted at (the model itself accepts any size)
    frames: int = 8
    height: int = 224
    width: int = 224
    in_channels: int = 3
    num_classes: int = 400
    # stem: conv1 3x7x7, 64, stride 1x2x2 (+BN+ReLU), then pool1 max 1x3x3 stride 1x2x2
    stem_width: int = 64
    stem_kernel_t: int = 3
    stem_stride_t: int = 1
    pool1: bool = True
    # pool2: temporal max-pool 2x1x1 stride 2x1x1 after conv2_x (mmaction2 ResNet3d with_pool2)
    pool2: bool = False
    # 2x2x2 striding at conv3_1, conv4_1, conv5_1; False gives 1x2x2 (a stage's own
    # temporal_stride, when set, overrides this for that stage)
    temporal_stride: bool = True
    # "fc": global average pool + Linear; "conv": 1x1x1 conv classifier on the final map
    # (VMZ use_convolutional_pred), then average of the logits over positions
    head: str = "fc"
    # conv head only: average-pool window (t, h, w) before the 1x1x1 conv, stride 1; 0 = none
    head_pool: tuple[int, int, int] = (0, 0, 0)
    dropout: float = 0.0
    # ReLU between ip-CSN's extra 1x1x1 conv and its depthwise conv (paper Fig. 2: yes;
    # VMZ's '0.3d' block: no). Does not change any count.
    ip_relu: bool = True
    # input normalisation the weights expect: x = (pixel / 255 - input_mean) / input_std, one
    # value per input channel on the 0-1 scale, listed in the model's channel order
    # (input_order: "RGB" = decoded frames as they are, "BGR" = channels reversed first)
    input_mean: tuple[float, ...] = KINETICS_MEAN
    input_std: tuple[float, ...] = KINETICS_STD
    input_order: str = "RGB"
    # "temporal": the net sees each clip minus its per-pixel mean over time (static appearance
    # removed, only what changes is left; not in the paper, not counted: one op per input value)
    input_centre: str = "none"

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("head_pool", "input_mean", "input_std"):
            d[k] = list(getattr(self, k))
        return d

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchSpec":
        """The spec a dict describes; it must list its stages (other fields default, see
        :func:`defaults_filled`). Types and limits are checked by :meth:`validate`."""
        if not isinstance(d, dict):
            raise SpecError("", "a spec must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError("", f"unknown spec field(s) {show_names(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if "stages" not in d:
            raise SpecError("stages", "a spec must list its 4 stages (conv2_x..conv5_x) or name a "
                            "preset; nothing is assumed for them")
        if not isinstance(d["stages"], list) or len(d["stages"]) != 4:
            raise SpecError("stages", f"must be a list of 4 stage objects, got {show(d['stages'])}")
        d["stages"] = [s if isinstance(s, StageSpec) else StageSpec.from_dict(s, f"{n}_x")
                       for s, n in zip(d["stages"], STAGE_NAMES)]
        for k in ("head_pool", "input_mean", "input_std"):
            if k in d and isinstance(d[k], (list, tuple)):
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        return cls.from_dict(load_json(text))

    # --- conveniences ----------------------------------------------------------------
    def with_stage(self, index: int, **changes: Any) -> "ArchSpec":
        stages = list(self.stages)
        stages[index] = replace(stages[index], **changes)
        return replace(self, stages=stages)

    @property
    def depth(self) -> int:
        """Weighted layers on the main path: conv1 + convs of every block + fc (paper naming)."""
        per_block = {"simple": 2, "bottleneck": 3}
        return 2 + sum(s.blocks * per_block["simple" if is_simple(s.block) else "bottleneck"]
                       for s in self.stages)

    @property
    def clip(self) -> tuple[int, int, int]:
        return (self.frames, self.height, self.width)

    def validate(self) -> "ArchSpec":
        """Raise :class:`SpecError` if the spec cannot be built; return self otherwise."""
        for _ in plan(self):
            pass
        return self


class LayerPlan(NamedTuple):
    """One layer of the walked network. Shapes are (T, H, W); ``kind`` says what it is.

    A NamedTuple, not a dataclass: the builder recounts on every keystroke and a 152-layer
    walk must stay well under a millisecond.
    """

    name: str                    # e.g. "conv3_1.conv_b", "conv3_1.shortcut", "fc"
    kind: str                    # conv | depthwise | pointwise | grouped | maxpool | avgpool | fc
    c_in: int
    c_out: int
    groups: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]
    in_size: tuple[int, int, int]
    out_size: tuple[int, int, int]
    relu: bool = True            # followed by BN + ReLU (False: BN only, or nothing for fc/pool)
    bn: bool = True
    bias: bool = False
    block: str = ""              # "conv3_1" for layers inside a residual block, else ""
    role: str = ""               # conv_a, conv_b, ..., shortcut; "" for stem/head

    @property
    def stage(self) -> str:
        """conv1, pool1, conv2, pool2, conv3 .. conv5, head."""
        if self.block:
            return self.block.split("_")[0]
        return "head" if self.name in ("fc", "head.pool") else self.name


def _out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def _out3(size, kernel, stride, padding) -> tuple[int, int, int]:
    return tuple(_out(n, k, s, p) for n, k, s, p in zip(size, kernel, stride, padding))  # type: ignore


def stage_tstride(spec: ArchSpec, index: int) -> bool:
    """Whether stage ``index`` (0 = conv2) halves time in its first block."""
    own = spec.stages[index].temporal_stride
    return index > 0 and (spec.temporal_stride if own is None else own)


def _conv_kind(c_in: int, c_out: int, groups: int, kernel) -> str:
    if groups > 1 and groups == c_in == c_out:
        return "depthwise"
    if groups > 1:
        return "grouped"
    return "pointwise" if tuple(kernel) == (1, 1, 1) else "conv"


def _check_positive(spec: ArchSpec) -> None:
    check_bounds(spec, stage_type=StageSpec)   # types and limits first: everything below is then bounded
    _check_input(spec)
    for sname, st in zip(STAGE_NAMES, spec.stages):
        where = f"{sname}_x"
        b = canonical_block(st.block, f"{where}.block")
        if sname == "conv2" and st.temporal_stride:
            raise SpecError(f"{where}.temporal_stride", "conv2 does not downsample (no stride in space "
                            "or time); temporal striding applies to conv3..conv5")
        if st.groups != 1 and b not in ("simple-G", "bottleneck-G"):
            raise SpecError(f"{where}.groups", f"groups={st.groups} applies only to simple-G and "
                            f"bottleneck-G blocks, not {b} (use 1)")
        if st.pw_groups != 1 and b != "bottleneck-DG":
            raise SpecError(f"{where}.pw_groups", f"pw_groups={st.pw_groups} applies only to "
                            f"bottleneck-DG blocks, not {b} (use 1)")
        if is_simple(b) and st.inner != st.width:
            raise SpecError(f"{where}.inner", f"simple blocks have no bottleneck: inner ({st.inner}) "
                            f"must equal width ({st.width})")


def _check_input(spec: ArchSpec) -> None:
    if spec.input_order not in INPUT_ORDERS:
        raise SpecError("input_order", f"must be one of {INPUT_ORDERS}, got {spec.input_order!r}")
    if spec.input_order == "BGR" and spec.in_channels != 3:
        raise SpecError("input_order", "BGR needs 3 input channels")
    for f in ("input_mean", "input_std"):
        n = len(getattr(spec, f))
        if n not in (1, 3, spec.in_channels):
            raise SpecError(f, f"must be numbers, one per input channel or one for all; got {n} "
                            f"for {spec.in_channels} channels")


def _block_convs(b: str, c_in: int, c_out: int, inner: int, groups: int, pw_groups: int,
                 stride: tuple[int, int, int], ip_relu: bool):
    """The convs of one residual block, in order: (role, c_in, c_out, groups, kernel, stride, relu)."""
    k3, k1, s1 = (3, 3, 3), (1, 1, 1), (1, 1, 1)
    if b in ("simple", "simple-G"):
        return [("conv_a", c_in, c_out, groups, k3, stride, True),
                ("conv_b", c_out, c_out, groups, k3, s1, False)]
    if b == "simple-D":
        convs = []
        if c_in != c_out:  # Fig. 3c: optional 1x1x1 conv when the block changes channel count
            convs.append(("conv_a_pw", c_in, c_out, 1, k1, s1, True))
        return convs + [("conv_a", c_out, c_out, c_out, k3, stride, True),
                        ("conv_b", c_out, c_out, c_out, k3, s1, False)]
    g3 = {"bottleneck": 1, "bottleneck-G": groups}.get(b, inner)  # D, ip, DG: depthwise
    g1 = pw_groups if b == "bottleneck-DG" else 1
    convs = [("conv_a", c_in, inner, g1, k1, s1, True)]
    if b == "ip":
        convs.append(("conv_b_pw", inner, inner, 1, k1, s1, ip_relu))
    convs += [("conv_b", inner, inner, g3, k3, stride, True),
              ("conv_c", inner, c_out, g1, k1, s1, False)]
    return convs


def plan(spec: ArchSpec) -> Iterator[LayerPlan]:
    """Walk the network analytically (no torch), validating as it goes.

    Yields stem conv1, pool1, every conv of every block (shortcut last), the head's
    pool(s) and classifier. Raises :class:`SpecError` naming the first bad layer.
    """
    _check_positive(spec)
    c, size = yield from _plan_stem(spec)
    for si, (sname, stage) in enumerate(zip(STAGE_NAMES, spec.stages)):
        if si == 1 and spec.pool2:
            yield (p := _maxpool("pool2", spec, c, size, (2, 1, 1), (2, 1, 1), (0, 0, 0)))
            size = p.out_size                                              # T/2 after conv2_x
        c, size = yield from _plan_stage(spec, si, sname, stage, c, size)
    yield from _plan_head(spec, c, size)


def _plan_stem(spec: ArchSpec):
    """conv1 and pool1; returns (channels, size) after them."""
    size = spec.clip                                                       # (T, H, W) input
    k = (spec.stem_kernel_t, 7, 7)
    st = (spec.stem_stride_t, 2, 2)
    pad = (spec.stem_kernel_t // 2, 3, 3)
    out = _out3(size, k, st, pad)
    _check_size("conv1", size, k, st, pad, out, spec)
    yield LayerPlan("conv1", "conv", spec.in_channels, spec.stem_width, 1, k, st, pad, size, out)
    size, c = out, spec.stem_width                                         # T x H/2 x W/2
    if spec.pool1:
        yield (p := _maxpool("pool1", spec, c, size, (1, 3, 3), (1, 2, 2), (0, 1, 1)))
        size = p.out_size                                                  # T x H/4 x W/4
    return c, size


def _plan_stage(spec: ArchSpec, si: int, sname: str, stage: StageSpec, c: int, size):
    """One stage's blocks; returns (channels, size) after it."""
    b = canonical_block(stage.block)
    repeat: list[LayerPlan] = []   # blocks 3.. of a stage have exactly block 2's shapes
    for bi in range(stage.blocks):
        bname = f"{sname}_{bi + 1}"
        if bi >= 2:
            for p in repeat:  # (tuple.__new__ is ~5x faster than NamedTuple._replace)
                yield tuple.__new__(LayerPlan, (f"{bname}.{p.role}",) + p[1:13] + (bname, p.role))
            continue
        down = si > 0 and bi == 0                     # conv3_1, conv4_1, conv5_1
        stride = ((2 if stage_tstride(spec, si) else 1), 2, 2) if down else (1, 1, 1)
        c, size = yield from _plan_block(spec, b, bname, stage, c, size, stride,
                                         repeat if bi == 1 else None)
    return c, size


def _plan_block(spec: ArchSpec, b: str, bname: str, stage: StageSpec, c: int, size, stride,
                keep: list[LayerPlan] | None):
    """One residual block's convs, then its projection shortcut where the shape changes (the
    convs also appended to ``keep`` when given); returns (channels, size) after it."""
    block_in, block_size = c, size
    for role, ci, co, g, kk, ss, relu in _block_convs(
            b, c, stage.width, stage.inner, stage.groups, stage.pw_groups, stride, spec.ip_relu):
        name = f"{bname}.{role}"
        _check_groups(name, ci, co, g)
        pp = tuple(x // 2 for x in kk)
        out = _out3(size, kk, ss, pp)
        _check_size(name, size, kk, ss, pp, out, spec)
        p = LayerPlan(name, _conv_kind(ci, co, g, kk), ci, co, g, kk, ss, pp, size, out,
                      relu=relu, block=bname, role=role)
        if keep is not None:
            keep.append(p)
        yield p
        c, size = co, out
    if block_in != c or stride != (1, 1, 1):
        yield LayerPlan(f"{bname}.shortcut", "pointwise", block_in, c, 1, (1, 1, 1), stride,
                        (0, 0, 0), block_size, size, relu=False, block=bname, role="shortcut")
    return c, size


def _plan_head(spec: ArchSpec, c: int, size):
    """The conv head's average pool (when it has a window) and the classifier."""
    if spec.head == "conv" and any(spec.head_pool):
        k = tuple(p or n for p, n in zip(spec.head_pool, size))
        _check_head_window(spec, k, size)
        out = _out3(size, k, (1, 1, 1), (0, 0, 0))
        yield LayerPlan("head.pool", "avgpool", c, c, 1, k, (1, 1, 1), (0, 0, 0), size, out,
                        relu=False, bn=False)
        size = out
    if spec.head == "fc":
        yield LayerPlan("fc", "fc", c, spec.num_classes, 1, (1, 1, 1), (1, 1, 1), (0, 0, 0),
                        (1, 1, 1), (1, 1, 1), relu=False, bn=False, bias=True)
    else:
        yield LayerPlan("fc", "fc", c, spec.num_classes, 1, (1, 1, 1), (1, 1, 1), (0, 0, 0),
                        size, size, relu=False, bn=False, bias=True)


def _check_head_window(spec: ArchSpec, window, size) -> None:
    """A fixed average-pool window larger than conv5's map is refused (pytorchvideo's
    AvgPool3d head and fvcore do too); clamping it would compute another function."""
    if any(k > n for k, n in zip(window, size)):
        raise SpecError("head_pool", f"{tuple(spec.head_pool)} is larger than conv5's output "
                        f"{tuple(size)} at {spec.frames}x{spec.height}x{spec.width}: use a "
                        f"larger clip or a smaller window (0 = the whole map)")


def _maxpool(name: str, spec: ArchSpec, c: int, size, k, st, pad) -> LayerPlan:
    out = _out3(size, k, st, pad)
    _check_size(name, size, k, st, pad, out, spec)
    return LayerPlan(name, "maxpool", c, c, 1, k, st, pad, size, out, relu=False, bn=False)


def _check_groups(name: str, c_in: int, c_out: int, g: int) -> None:
    if c_in % g:
        what = "channels" if c_in == c_out else "input channels"
        raise SpecError(name, f"{c_in} {what} are not divisible by {g} groups")
    if c_out % g:
        raise SpecError(name, f"{c_out} channels are not divisible by {g} groups")


_DIMS = ("temporal", "height", "width")


def _check_size(name, size, kernel, stride, padding, out, spec: ArchSpec) -> None:
    for d, n, k, s, p, o in zip(_DIMS, size, kernel, stride, padding, out):
        if o < 1 or n + 2 * p < k:
            raise SpecError(name, f"{d} input size {n} is too small for kernel {k} "
                            f"(clip {spec.frames}x{spec.height}x{spec.width} too small)")
        if s > 1 and n < s:
            hint = ("; use more frames or temporal_stride=false" if d == "temporal" else
                    "; use a larger crop")
            raise SpecError(name, f"{d} input size {n} is smaller than its stride {s} "
                            f"(clip {spec.frames}x{spec.height}x{spec.width} too short for "
                            f"its strides{hint})")
