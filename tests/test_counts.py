"""core.counts: rows, objects and labelled objects of a source, defined once."""

from __future__ import annotations

import pandas as pd
import pytest

from core.counts import count_source
from core.errors import ParseError


def test_aliases_conflicts_and_unclassified_rows() -> None:
    table = pd.DataFrame({
        # NGC 1 twice (one galaxy, two rows); UGC 2 = 2MASX J1 (same position); NGC 3 in conflict;
        # NGC 4 unclassified.
        "name": ["NGC 1", "NGC 1", "UGC 2", "2MASX J1", "NGC 3", "NGC 3", "NGC 4"],
        "label": ["E", "E", "Spiral", "Spiral", "E", "S0", "unclassified"],
        "ra": [10.0, 10.0, 20.0, 20.0 + 0.5 / 3600, 30.0, 30.0, 40.0],
        "dec": [5.0, 5.0, -5.0, -5.0, 0.0, 0.0, 1.0],
    })
    counts = count_source(table, classes=["E", "S0", "Spiral"])
    assert (counts.rows, counts.names, counts.objects) == (7, 5, 4)
    assert counts.conflicts == 1
    assert counts.per_class == {"E": 1, "S0": 0, "Spiral": 1}
    assert counts.labelled == 2 == sum(counts.per_class.values())

    first = count_source(table, classes=["E", "S0", "Spiral"], policy="first")
    assert first.per_class == {"E": 2, "S0": 0, "Spiral": 1} and first.labelled == 3


def test_without_positions_names_are_objects() -> None:
    table = pd.DataFrame({"name": ["A", "B", "B"], "label": ["E", "S0", "S0"]})
    counts = count_source(table, classes=["E", "S0"])
    assert (counts.rows, counts.objects, counts.labelled) == (3, 2, 2)


def test_an_unlabelled_table_is_refused() -> None:
    with pytest.raises(ParseError, match="missing \\['label'\\]. Label the table first"):
        count_source(pd.DataFrame({"name": ["A"]}), classes=["E"])

