"""Editing sub-queries in a table: what the user types becomes a valid decomposition, or a clear error."""

import math

import pytest

from rdm.decompose import Decomposition, DecompositionError, SubQuery
from rdm.decompose.table import EDITED, from_table, table_rows

ORIGINAL = Decomposition(
    prompt="A cute dog wearing yellow hoodie sits on a stylish sofa.", summary="dog in hoodie on sofa",
    subqueries=(SubQuery("A cute dog wearing a yellow hoodie", 0.6), SubQuery("A stylish sofa", 0.4)),
    backend="offline")


def test_unchanged_table_gives_back_the_original():
    assert from_table(ORIGINAL, table_rows(ORIGINAL)) is ORIGINAL


def test_edits_are_renormalised_and_recorded():
    rows = table_rows(ORIGINAL) + [{"sub-query": "  plush   cushions ", "weight": 0.5}, {"sub-query": "", "weight": 1}]
    rows[1]["weight"] = 0.5
    edited = from_table(ORIGINAL, rows)
    assert [q.text for q in edited.subqueries] == ["A cute dog wearing a yellow hoodie", "A stylish sofa",
                                                   "plush cushions"]
    assert math.fsum(q.weight for q in edited.subqueries) == pytest.approx(1.0)
    assert edited.subqueries[0].weight == pytest.approx(0.6 / 1.6)
    assert edited.repairs == (EDITED,) and edited.prompt == ORIGINAL.prompt and edited.summary == ORIGINAL.summary


def test_a_new_row_without_a_weight_gets_an_equal_share():
    rows = [{"sub-query": "a dog", "weight": None}, {"sub-query": "a sofa", "weight": float("nan")}]
    edited = from_table(ORIGINAL, rows)
    assert [q.weight for q in edited.subqueries] == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("weight, message", [(0, "must be above 0"), (-1, "must be above 0"), ("lots", "not a number")])
def test_bad_weights_are_refused_with_the_row_named(weight, message):
    with pytest.raises(DecompositionError, match=message) as info:
        from_table(ORIGINAL, [{"sub-query": "a dog", "weight": weight}])
    assert "a dog" in str(info.value)


def test_an_empty_table_is_refused():
    with pytest.raises(DecompositionError, match="empty"):
        from_table(ORIGINAL, [{"sub-query": "  ", "weight": 1}])
