"""Repeated evaluation splits: k-fold and shuffle re-splits by object, stratified by class, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dataset import load_dataset, save_dataset
from core.errors import GalaxyMorphError
from core.splits import fold_split, resplit, shuffle_split, stratified_kfold


def _objects(counts: list[int], *, repeated: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and names of ``counts[c]`` objects per class; the first ``repeated`` objects have two rows."""
    labels = np.repeat(np.array([f"c{c}" for c in range(len(counts))], dtype=object), counts)
    names = np.array([f"G{i:04d}" for i in range(len(labels))], dtype=object)
    return np.r_[labels, labels[:repeated]], np.r_[names, names[:repeated]]


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=5).filter(lambda c: sum(c) >= 10),
       k=st.integers(3, 10), seed=st.integers(0, 2**16), repeated=st.integers(0, 5))
def test_kfold_puts_every_object_in_exactly_one_test_fold_stratified_to_one(counts, k, seed, repeated):
    labels, names = _objects(counts, repeated=repeated)
    folds = stratified_kfold(labels, names, k=k, seed=seed)
    assert folds.min() >= 0 and folds.max() < k
    # Both rows of a repeated object share a fold: no object is in two parts of one split.
    per_name = pd.DataFrame({"name": names, "fold": folds}).groupby("name")["fold"].nunique()
    assert (per_name == 1).all()
    tested = []
    for fold in range(k):
        split = fold_split(folds, k=k, fold=fold)
        parts = pd.DataFrame({"name": names, "split": split}).groupby("name")["split"].nunique()
        assert (parts == 1).all()
        assert set(split) <= {"train", "val", "test"}
        tested += list(names[split == "test"])
    assert sorted(set(tested)) == sorted(set(names))  # every object tested ...
    unique_tested = pd.Series(tested).drop_duplicates()
    assert len(unique_tested) == len(pd.Series(names[: len(names) - repeated]))  # ... in exactly one fold
    first = ~pd.Series(names).duplicated().to_numpy()
    table = pd.crosstab(folds[first], labels[first]).reindex(range(k), fill_value=0)
    assert (table.max() - table.min() <= 1).all(), table  # stratified to ±1 per class
    sizes = np.bincount(folds[first], minlength=k)
    assert sizes.max() - sizes.min() <= 1


def test_kfold_is_seeded_and_validation_is_the_next_fold():
    labels, names = _objects([30, 20, 10])
    a = stratified_kfold(labels, names, k=5, seed=1)
    np.testing.assert_array_equal(a, stratified_kfold(labels, names, k=5, seed=1))
    assert not np.array_equal(a, stratified_kfold(labels, names, k=5, seed=2))
    split = fold_split(a, k=5, fold=4)
    assert (split[a == 4] == "test").all() and (split[a == 0] == "val").all() and (split[a == 2] == "train").all()
    with pytest.raises(GalaxyMorphError, match="k must be an integer >= 3"):
        stratified_kfold(labels, names, k=2, seed=0)
    with pytest.raises(GalaxyMorphError, match="at least k objects"):
        stratified_kfold(labels[:3], names[:3], k=5, seed=0)


def test_shuffle_split_keeps_the_proportions_per_class():
    labels, names = _objects([50, 30, 20])
    split = shuffle_split(labels, names, fractions=(0.7, 0.15, 0.15), seed=3)
    table = pd.crosstab(labels, split)
    assert table.loc["c0"].to_dict() == {"test": 8, "train": 35, "val": 7}  # round(35) | round(42.5)=42 -> 7 | 8
    assert not np.array_equal(split, shuffle_split(labels, names, fractions=(0.7, 0.15, 0.15), seed=4))
    with pytest.raises(GalaxyMorphError, match="fractions must be"):
        shuffle_split(labels, names, fractions=(0.5, 0.5, 0.5), seed=0)


def test_resplit_changes_only_the_split_and_keeps_the_dataset_hash(tmp_path):
    n = 60
    meta = pd.DataFrame({"name": [f"G{i}" for i in range(n)], "label": np.array(["a", "b", "c"])[np.arange(n) % 3],
                         "y": np.arange(n) % 3, "split": np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)})
    path = save_dataset(tmp_path / "d", x=np.zeros((n, 8, 8, 1), np.float32), meta=meta, classes=["a", "b", "c"],
                        manifest={})
    dataset = load_dataset(path)
    assert resplit(dataset, folds=0, fold=0, split_seed=None) is dataset
    fold = resplit(dataset, folds=5, fold=2, split_seed=0)
    assert fold.content_hash == dataset.content_hash and fold.x is dataset.x
    assert (pd.Series(fold.split).value_counts().to_dict() == {"train": 36, "val": 12, "test": 12})
    again = resplit(dataset, folds=0, fold=0, split_seed=7)
    per_class = pd.crosstab(again.meta["label"], again.split)  # 20 per class, the dataset's 2/3, 1/6, 1/6 each
    assert ((per_class["train"] - 40 / 3).abs() <= 1).all() and ((per_class["test"] - 20 / 6).abs() <= 1).all()
    assert not np.array_equal(again.split, dataset.split)
