"""`python -m backend.count`: every spec field has a flag; --table prints the paper's rows."""
from __future__ import annotations

import json

from backend.count import main
from backend.csn import count
from backend.csn.paper import table_spec


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_table5_reproduced_from_flags(capsys):
    rc, out, _ = run(capsys, "ir-csn-101", "--frames", "32", "--size", "256", "--head", "conv",
                     "--head-pool", "4,7,7", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["totals"] == count(table_spec("5", "ir-csn-101")).to_dict()["totals"]
    assert f"{d['totals']['flops'] / 1e9:.1f}" == "73.8"


def test_stage_and_arch_field_flags(capsys):
    rc, out, _ = run(capsys, "resnet3d-26", "--pool1", "no", "--stem-width", "32",
                     "--stage-block", "ir", "--stage", "3.temporal_stride=no", "--json")
    assert rc == 0
    spec = json.loads(out)["spec"]
    assert spec["pool1"] is False and spec["stem_width"] == 32
    assert {s["block"] for s in spec["stages"]} == {"bottleneck-D"}
    assert spec["stages"][3]["temporal_stride"] is False and spec["stages"][2]["temporal_stride"] is None
    for bad, msg in ((["--pool1", "maybe"], "expected yes/no"), (["--stage", "9.groups=2"], "out of range"),
                     (["--stage", "1.colour=2"], "I.FIELD=VALUE")):
        rc, _, err = run(capsys, "resnet3d-26", *bad)
        assert rc == 2 and msg in err


def test_paper_tables_print_counted_beside_printed(capsys):
    for table, n in (("2", 27), ("4", 4), ("5", 4)):
        rc, out, _ = run(capsys, "--table", table)
        lines = out.strip().splitlines()
        assert rc == 0 and len(lines) == n + 2 and lines[0].startswith(f"Table {table}")
        assert all(" yes " in line and " NO " not in line for line in lines[2:])
    _, out, _ = run(capsys, "--table", "5")
    assert "pool 4x7x7" in out and "73.8" in out
