"""Every cost number of the paper's Tables 2, 4 and 5 (35 numbers), at printed precision."""
import pytest

from backend.csn import count
from backend.csn.paper import ALL_ROWS, table_spec


def test_there_are_35_numbers():
    assert len(ALL_ROWS) == 35


@pytest.mark.parametrize("row", ALL_ROWS, ids=lambda r: f"T{r.table}-{r.model}-{r.metric}")
def test_paper_number(row):
    totals = count(table_spec(row.table, row.model)).totals
    value = getattr(totals, row.metric) / row.scale
    assert f"{value:.{row.decimals}f}" == row.printed, (
        f"Table {row.table} {row.model} {row.metric}: counted {value:.4f}, paper {row.printed}")


def test_interactions_exclude_classifier_but_params_include_it():
    rep = count(table_spec("2", "ir-csn-50"))
    fc = rep.layers[-1]
    assert fc.name == "fc" and fc.interactions == 0 and fc.params == 2048 * 400
