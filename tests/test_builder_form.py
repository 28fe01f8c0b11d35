"""The Builder's form model (app/builder_form.py): spec <-> form values, which fields show."""
from __future__ import annotations

from dataclasses import fields, replace

import pytest

from app.builder_form import (CLIP_FORM, G_BLOCKS, STAGE_FORM, TSTRIDE, canonical, edited_name,
                              form_to_spec, reshown_defaults, spec_to_form, stage_field_shown,
                              ui_message)
from backend.csn import BLOCK_TYPES, ArchSpec, SpecError, list_presets, preset
from backend.csn.explore import error_field
from backend.csn.presets import DEFAULT_GROUPS, DEFAULT_PW_GROUPS
from backend.csn.spec import HEADS, INPUT_CENTRES, INPUT_ORDERS, StageSpec

# ArchSpec fields the form leaves as loaded (shown as text, or not at all); any other field
# must be a form control, so a new spec field cannot be forgotten by the form.
KEPT_AS_LOADED = {"stages", "head_pool", "in_channels", "stem_width", "stem_kernel_t",
                  "stem_stride_t", "dropout", "ip_relu", "input_mean", "input_std", "input_order"}


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_round_trips_through_the_form(name):
    spec = preset(name)
    assert form_to_spec(spec_to_form(spec), spec) == spec
    assert canonical(spec) == spec


@pytest.mark.parametrize("centre", INPUT_CENTRES)
def test_input_centre_round_trips_and_its_choices_are_the_specs(centre):
    spec = preset("ir-csn-26", input_centre=centre)
    assert spec_to_form(spec)["input_centre"] == centre
    assert form_to_spec(spec_to_form(spec), spec) == spec
    assert CLIP_FORM["input_centre"][2]["options"] is INPUT_CENTRES


def test_selects_offer_the_vocabulary_of_the_spec():
    assert CLIP_FORM["head"][2]["options"] is HEADS
    assert STAGE_FORM["block"][2]["options"] is BLOCK_TYPES
    assert set(STAGE_FORM) == {f.name for f in fields(StageSpec)}


def test_every_spec_field_is_on_the_form_or_kept_as_loaded():
    spec_fields = {f.name for f in fields(ArchSpec)}
    assert set(CLIP_FORM) | KEPT_AS_LOADED == spec_fields
    assert not set(CLIP_FORM) & KEPT_AS_LOADED


def test_fields_not_on_the_form_keep_the_loaded_value():
    base = preset("ir-csn-50", input_order=INPUT_ORDERS[1], dropout=0.5, stem_width=32)
    vals = spec_to_form(preset("resnet3d-50"))
    got = form_to_spec(vals, base)
    assert (got.input_order, got.dropout, got.stem_width) == (INPUT_ORDERS[1], 0.5, 32)
    assert got.stages[1].block == "bottleneck"


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_stage_fields_shown_per_block_type(block):
    shown = {f for f in STAGE_FORM if stage_field_shown(1, f, block)}
    always = {"block", "blocks", "width", "temporal_stride"}
    assert always <= shown
    assert ("inner" in shown) == (not block.startswith("simple"))
    assert ("groups" in shown) == (block in G_BLOCKS)
    assert ("pw_groups" in shown) == (block == "bottleneck-DG")


def test_conv2_has_no_temporal_stride_field():
    assert not stage_field_shown(0, "temporal_stride", "bottleneck")
    assert all(stage_field_shown(i, "temporal_stride", "bottleneck") for i in (1, 2, 3))


def test_hidden_fields_take_the_neutral_value():
    base = preset("bottleneck-DG-8")
    vals = spec_to_form(base)
    vals.update({"s0_block": "simple", "s1_block": "bottleneck"})
    got = form_to_spec(vals, base)
    s0, s1 = got.stages[:2]
    assert (s0.inner, s0.groups, s0.pw_groups) == (s0.width, 1, 1)
    assert (s1.inner, s1.groups, s1.pw_groups) == (base.stages[1].inner, 1, 1)


def test_temporal_stride_values_map_both_ways():
    for form_value, spec_value in TSTRIDE.items():
        spec = preset("ir-csn-26").with_stage(2, temporal_stride=spec_value)
        vals = spec_to_form(spec)
        assert vals["s2_temporal_stride"] == form_value
        assert form_to_spec(vals, spec).stages[2].temporal_stride is spec_value


def test_aliases_become_canonical_block_types():
    spec = preset("ir-csn-26")
    spec = replace(spec, stages=[replace(s, block="ir") for s in spec.stages])
    assert {s.block for s in canonical(spec).stages} == {"bottleneck-D"}


def test_head_pool_only_with_a_conv_head():
    spec = preset("ir-csn-26", head="conv", head_pool=(1, 7, 7))
    vals = spec_to_form(spec)
    assert (vals["head_pool_t"], vals["head_pool_h"], vals["head_pool_w"]) == (1, 7, 7)
    assert form_to_spec(vals, spec).head_pool == (1, 7, 7)
    assert form_to_spec({**vals, "head": "fc"}, spec).head_pool == (0, 0, 0)


def test_an_empty_name_is_custom():
    spec = preset("ir-csn-26")
    assert form_to_spec({**spec_to_form(spec), "name": ""}, spec).name == "custom"


def test_reshown_group_fields_get_the_bases_or_the_default_value():
    base = preset("ir-csn-26")
    vals = {**spec_to_form(base), "s0_block": "bottleneck-G", "s1_block": "bottleneck-DG"}
    assert reshown_defaults(vals, base) == {"s0_groups": DEFAULT_GROUPS,
                                            "s1_pw_groups": DEFAULT_PW_GROUPS}
    grouped = preset("bottleneck-G-8", groups=8)
    assert reshown_defaults(spec_to_form(grouped), grouped) == {}
    assert reshown_defaults({**spec_to_form(grouped), "s0_groups": 1}, grouped) == {"s0_groups": 8}


def test_an_edited_design_is_renamed_once():
    base = preset("ir-csn-26")
    assert edited_name(base, base) is base
    edited = edited_name(base.with_stage(0, blocks=3), base)
    assert edited.name == "ir-csn-26-edited"
    assert edited_name(replace(edited, name="mine"), base).name == "mine"
    again = replace(edited, frames=16)
    assert edited_name(again, edited) is again


def test_errors_are_in_the_forms_words_with_valid_values():
    spec = preset("bottleneck-G-8").with_stage(1, groups=3)
    with pytest.raises(SpecError) as e:
        spec.validate()
    msg = ui_message(e.value, error_field(e.value, spec), spec)
    assert msg.startswith("conv3_1.conv_b") and "Valid groups (3x3x3) here: " in msg
