"""Study statistics against published values (t tables, Newcombe 1998, Student's sleep data)."""
from __future__ import annotations

import math

import pytest

from backend.training.stats import betainc, mean_ci, paired_difference, sample_std, t_quantile, wilson
from backend.training.report import paired_rows, run_rows, table_markdown, table_rows


@pytest.mark.parametrize("df, q975, q995", [
    (1, 12.7062, 63.6567), (2, 4.3027, 9.9248), (3, 3.1824, 5.8409), (4, 2.7764, 4.6041),
    (5, 2.5706, 4.0321), (9, 2.2622, 3.2498), (10, 2.2281, 3.1693), (30, 2.0423, 2.7500)])
def test_t_quantiles_match_the_printed_table(df, q975, q995):
    assert round(t_quantile(0.975, df), 4) == q975
    assert round(t_quantile(0.995, df), 4) == q995
    assert t_quantile(0.025, df) == pytest.approx(-t_quantile(0.975, df))


def test_t_quantile_closed_forms_and_the_normal_limit():
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert round(t_quantile(0.975, 1e7), 4) == 1.9600
    # I_x(a, b) = P(Binomial(a + b - 1, x) >= a): 1 - .6^4 - 4 (.4) .6^3
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718)])
def test_wilson_intervals_match_newcombe_1998(k, n, low, high):
    w = wilson(k, n)
    assert (round(w.low, 4), round(w.high, 4)) == (low, high) and w.estimate == k / n


def test_paired_t_interval_on_students_sleep_data():
    """R: t.test(extra ~ group, data = sleep, paired = TRUE): -1.58, 95 % CI -2.4599 .. -0.7001."""
    g1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    g2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    d = paired_difference(dict(enumerate(g1)), dict(enumerate(g2)))
    assert d.estimate == pytest.approx(-1.58) and d.n == 10 and d.includes_zero is False
    assert (round(d.low, 4), round(d.high, 4)) == (-2.4599, -0.7001)
    assert paired_difference({0: 1.0}, {1: 2.0}) is None            # no shared seed
    one = mean_ci([0.8])
    assert one.estimate == 0.8 and one.low is None and sample_std([0.8]) is None


def _doc(accs: dict[str, dict[int, float]], n: int | None = 144) -> dict:
    runs, results = [], []
    for i, (label, by_seed) in enumerate(accs.items()):
        for seed, acc in by_seed.items():
            runs.append({"label": label, "family": label, "order": i, "seed": seed,
                         "costs": {"flops": 1e9, "params": 1e6, "interactions": 1e6}})
            results.append({"key": f"{label}_s{seed}", "label": label, "seed": seed,
                            "status": "succeeded", "video_top1": acc, "val_videos": n})
    return {"study": {"runs": runs}, "results": results}


def test_the_report_shows_intervals_and_a_dash_for_one_seed():
    doc = _doc({"A": {0: 0.80, 1: 0.84, 2: 0.82}, "B": {0: 0.70, 1: 0.75, 2: 0.71},
                "C": {0: 0.81, 1: 0.70, 2: 0.86}})
    rows = table_rows(doc)
    a = rows[0]
    assert a["video@1 (%)"] == pytest.approx(82.0) and a["std (%)"] == pytest.approx(2.0)
    assert a["± 95% CI (%)"] == pytest.approx(4.3027 * 2.0 / math.sqrt(3), abs=1e-3)
    assert a["binomial ± (%)"] == pytest.approx(
        sum(100 * wilson(round(v * 144), 144).half_width for v in (0.80, 0.84, 0.82)) / 3)
    verdicts = {(p["A"], p["B"]): p["verdict"] for p in paired_rows(rows)}
    assert verdicts == {("A", "B"): "A better", ("A", "C"): "within noise",
                        ("B", "C"): "within noise"}
    assert [r["Wilson low (%)"] is not None for r in run_rows(doc)] == [True] * 9
    single = table_rows(_doc({"A": {0: 0.8}, "B": {0: 0.7}}))
    assert single[0]["std (%)"] is None and single[0]["± 95% CI (%)"] is None
    md = table_markdown(single, _doc({"A": {0: 0.8}, "B": {0: 0.7}}))
    assert "80.0 (± —, 1 seed)" in md and "needs 2 shared seeds" in md and "0.0000" not in md
