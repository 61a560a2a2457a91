"""core.acquire.counts: rows, objects and labelled objects of a source, defined once."""

from __future__ import annotations

import pandas as pd
import pytest

from core.acquire.counts import count_source, galaxy_names, labelled_objects, left_out_objects
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



def test_left_out_objects_counts_galaxies_not_names() -> None:
    # One row per name, as core.prepare.selection.select gives them. NGC 1 = UGC 1 (kept under NGC 1);
    # NGC 2 = UGC 2, both left out (UGC 2 only as NGC 2's duplicate); NGC 3 left out alone.
    selection = pd.DataFrame({
        "name": ["NGC 1", "UGC 1", "NGC 2", "UGC 2", "NGC 3"],
        "label": ["E", "E", "S0", "S0", "unclassified"],
        "kept": [True, False, False, False, False],
        "reason": ["", "duplicate_of:NGC 1", "low_snr", "duplicate_of:NGC 2", "unclassified"],
        "ra": [1.0, 1.0, 2.0, 2.0, 3.0], "dec": [0.0, 0.0, 0.0, 0.0, 0.0],
    })
    galaxies = galaxy_names(selection)
    assert galaxies == {"NGC 1": "NGC 1", "UGC 1": "NGC 1", "NGC 2": "NGC 2", "UGC 2": "NGC 2"}
    left = left_out_objects(selection, galaxies)
    assert sorted(left["name"]) == ["NGC 2", "NGC 3"]
    assert dict(zip(left["name"], left["reason"])) == {"NGC 2": "low_snr", "NGC 3": "unclassified"}
    objects = count_source(selection, classes=["E", "S0"]).objects
    assert int(selection["kept"].sum()) + len(left) == objects == 3
    # A galaxy whose first listed name is the duplicate still counts under its own reason.
    reordered = selection.iloc[[0, 1, 3, 2, 4]]
    assert dict(zip(*left_out_objects(reordered, galaxies)[["name", "reason"]].to_numpy().T)) == {
        "NGC 2": "low_snr", "NGC 3": "unclassified"}


def test_labelled_objects_are_what_the_class_counts_count() -> None:
    # A redshift per catalogue row: a chart of it per class must count objects, as the bars do.
    table = pd.DataFrame({
        "name": ["NGC 1", "NGC 1", "UGC 2", "2MASX J1", "NGC 3", "NGC 3"],
        "label": ["E", "E", "Spiral", "Spiral", "E", "S0"],
        "redshift": [0.01, 0.01, 0.02, 0.02, 0.03, 0.03],
        "ra": [10.0, 10.0, 20.0, 20.0, 30.0, 30.0], "dec": [5.0, 5.0, -5.0, -5.0, 0.0, 0.0],
    })
    objects = labelled_objects(table)
    counts = count_source(table, classes=["E", "S0", "Spiral"])
    assert objects.groupby("label").size().to_dict() == {c: n for c, n in counts.per_class.items() if n}
    assert list(objects["redshift"]) == [0.01, 0.02] and len(objects) == counts.labelled
