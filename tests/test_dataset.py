"""The dataset container: round trip, validation and atomic replacement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.prepare.dataset import is_dataset, load_dataset
from core.prepare.save import save_dataset
from core.errors import GalaxyMorphError

CLASSES = ["E", "S0", "Spiral"]


def _meta(n: int) -> pd.DataFrame:
    y = np.arange(n) % 3
    split = np.array(["train", "val", "test"])[(np.arange(n) // 3) % 3]
    return pd.DataFrame(
        {"name": [f"NGC {i}" for i in range(n)], "label": np.array(CLASSES)[y], "y": y, "split": split}
    )


def test_round_trip_keeps_arrays_labels_and_counts(tmp_path):
    x = np.random.default_rng(0).random((9, 8, 8, 1), dtype=np.float32)
    out = save_dataset(tmp_path / "ds", x=x, meta=_meta(9), classes=CLASSES, manifest={"params": {"size": 8}})
    ds = load_dataset(out)
    np.testing.assert_array_equal(ds.x, x)
    assert ds.classes == CLASSES
    assert ds.manifest["params"] == {"size": 8}
    assert ds.manifest["counts"]["train"] == {"E": 1, "S0": 1, "Spiral": 1}
    assert ds.manifest["n_images"] == 9
    x_test, y_test, names_test = ds.subset("test")
    assert list(names_test) == ["NGC 6", "NGC 7", "NGC 8"] and list(y_test) == [0, 1, 2]
    assert x_test.shape == (3, 8, 8, 1)


def test_content_hash_changes_with_a_label(tmp_path):
    x = np.zeros((9, 4, 4, 1), dtype=np.float32)
    meta = _meta(9)
    first = load_dataset(save_dataset(tmp_path / "a", x=x, meta=meta, classes=CLASSES, manifest={}))
    meta.loc[0, ["label", "y"]] = ["S0", 1]
    second = load_dataset(save_dataset(tmp_path / "b", x=x, meta=meta, classes=CLASSES, manifest={}))
    assert first.content_hash != second.content_hash


def test_saving_again_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "ds"
    save_dataset(out, x=np.zeros((9, 4, 4, 1), np.float32), meta=_meta(9), classes=CLASSES, manifest={},
                 images=pd.DataFrame({"name": ["x"]}))
    save_dataset(out, x=np.ones((6, 4, 4, 1), np.float32), meta=_meta(6), classes=CLASSES, manifest={})
    ds = load_dataset(out)
    assert len(ds.x) == 6 and ds.images_table().empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize(
    ("x", "meta_change", "message"),
    [
        (np.zeros((9, 4, 4), np.float32), None, "4-D"),
        (np.zeros((8, 4, 4, 1), np.float32), None, "align"),
        (np.zeros((9, 4, 4, 1), np.float32), ("y", 5), "labels y must be in"),
        (np.zeros((9, 4, 4, 1), np.float32), ("split", "holdout"), "split values"),
        (np.zeros((9, 4, 4, 1), np.float32), ("label", "Irr"), "disagree"),
    ],
)
def test_inconsistent_inputs_are_refused_and_nothing_is_written(tmp_path, x, meta_change, message):
    meta = _meta(9)
    if meta_change:
        meta.loc[0, meta_change[0]] = meta_change[1]
    with pytest.raises(GalaxyMorphError, match=message):
        save_dataset(tmp_path / "ds", x=x, meta=meta, classes=CLASSES, manifest={})
    assert not is_dataset(tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_loading_a_folder_that_is_not_a_dataset_says_what_to_do(tmp_path):
    with pytest.raises(GalaxyMorphError, match="python -m core build"):
        load_dataset(tmp_path)
