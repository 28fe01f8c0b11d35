"""input_centre="temporal": the net sees each clip minus its mean over time."""
from __future__ import annotations

import pytest
import torch

from backend.csn import SpecError, build_model, preset
from backend.study import main, plan


def _spec(centre: str):
    recipe = {"frames": 8, "size": 32, "pool1": False, "input_centre": centre}
    return plan("table2", depth=26, width=4, recipe=recipe, num_classes=3).runs[1].spec


@pytest.mark.parametrize("centre, blind", [("temporal", True), ("none", False)])
def test_a_temporally_centred_net_is_blind_to_static_content(centre, blind):
    from backend.csn import ArchSpec
    torch.manual_seed(0)
    model = build_model(ArchSpec.from_dict(_spec(centre))).eval()
    clip = torch.randn(2, 3, 8, 32, 32)
    still = torch.randn(2, 3, 1, 32, 32).expand(-1, -1, 8, -1, -1)   # the same in every frame
    with torch.no_grad():
        a, b = model(clip), model(clip + still)
    assert torch.allclose(a, b, atol=1e-4) is blind


def test_input_centre_is_checked_and_set_by_the_recipe(capsys):
    with pytest.raises(SpecError, match="input_centre"):
        preset("ir-csn-26", input_centre="spatial").validate()
    assert main(["plan", "table2-quick", "--no-predict", "--json", "--set",
                 "input_centre=none"]) == 0
    assert '"input_centre": "none"' in capsys.readouterr().out
