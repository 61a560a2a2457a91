"""Splits: k-fold and shuffle re-splits by object, stratified and seeded; a source's frozen test set survives
every build setting, and the study never reads it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.prepare.builder import build
from core.acquire.catalogue import load_source
from core.prepare.dataset import load_dataset
from core.prepare.save import save_dataset
from core.errors import ConfigError, GalaxyMorphError
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import QualityThresholds
from core.spec import BuildSpec
from core.prepare.splits import (
    SPLIT_FILE,
    fold_split,
    freeze_test_split,
    read_split_file,
    resplit,
    shuffle_split,
    split_around_test,
    stratified_kfold,
)


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


# ----------------------------------------------------------------------------------------- frozen test set

ROOT = Path(__file__).resolve().parents[1]
GZ1 = ROOT / "data" / "gz1"


def _study():
    spec = importlib.util.spec_from_file_location("study_gz1", ROOT / "benchmarks" / "study_gz1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gz1_copy(out: Path, *, per_class: int) -> Path:
    """The first ``per_class`` galaxies of each class of the shipped source, without its split file."""
    rows = pd.read_csv(GZ1 / "catalog.csv").groupby("classification").head(per_class)
    (out / "images").mkdir(parents=True)
    for file in rows["file"]:
        shutil.copy2(GZ1 / file, out / file)
    rows.to_csv(out / "catalog.csv", index=False)
    return out


def test_the_shipped_split_file_freezes_30_test_galaxies_per_class():
    frozen = read_split_file(GZ1)
    catalogue = pd.read_csv(GZ1 / "catalog.csv")
    assert len(frozen) == 90 and frozen <= set(catalogue["name"])
    assert catalogue[catalogue["name"].isin(frozen)]["classification"].value_counts().to_dict() == {
        "E": 30, "EdgeOn": 30, "Spiral": 30}


def test_freeze_test_split_draws_stratified_once_and_refuses_to_redraw(tmp_path):
    names = pd.Series([f"G{i}" for i in range(40)])
    labels = pd.Series(["a"] * 30 + ["b"] * 10)
    path = freeze_test_split(tmp_path, labels, names, fraction=0.2, seed=3)
    frozen = read_split_file(tmp_path)
    assert path == tmp_path / SPLIT_FILE and len(frozen) == 8
    assert sum(int(n[1:]) >= 30 for n in frozen) == 2  # 20 % of each class: 6 of a, 2 of b
    with pytest.raises(ConfigError, match="exists; a frozen test set is not redrawn"):
        freeze_test_split(tmp_path, labels, names, fraction=0.2, seed=4)
    assert read_split_file(tmp_path) == frozen


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,split\nG1,test\nG2,val\n", r"row 3: split must be 'test'; got 'val'"),
        ("galaxy,part\nG1,test\n", r"must have the columns name and split; it lacks \['name', 'split'\]"),
        (b"name,split\n\xff\xfe,test\n", "is not a readable CSV"),
    ],
)
def test_a_damaged_split_file_is_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / SPLIT_FILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message) as info:
        read_split_file(tmp_path)
    assert str(path) in str(info.value)


def test_split_around_test_keeps_the_test_rows_and_draws_validation_by_class():
    labels = np.array(["a"] * 50 + ["b"] * 30, dtype=object)
    is_test = np.zeros(80, bool)
    is_test[[0, 1, 2, 50]] = True
    split = split_around_test(labels, is_test, seed=0, val_fraction=0.15, test_fraction=0.15)
    assert list(np.flatnonzero(split == "test")) == [0, 1, 2, 50]
    # Validation is 15/85 of the non-test rows of each class: round(47 * 0.176) = 8, round(29 * 0.176) = 5.
    assert ((split == "val") & (labels == "a")).sum() == 8 and ((split == "val") & (labels == "b")).sum() == 5
    assert np.array_equal(split, split_around_test(labels, is_test, seed=0, val_fraction=0.15, test_fraction=0.15))


def test_build_keeps_a_sources_frozen_test_names_whatever_crop_or_threshold_keeps(tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    source = _gz1_copy(tmp_path / "gz1", per_class=12)
    plain = build(BuildSpec(source=str(source), preprocess=PreprocessConfig(size=16, channels=3, crop=0.3)),
                  out=tmp_path / "plain", n_jobs=1)
    assert "split_file_sha256" not in load_dataset(plain).manifest["params"]  # no file: datasets built before match
    catalogue = pd.read_csv(source / "catalog.csv")
    frozen = set(catalogue.groupby("classification").head(3)["name"])
    pd.DataFrame({"name": sorted(frozen | {"SDSS 1 (not in the catalogue)"}), "split": "test"}).to_csv(
        source / SPLIT_FILE, index=False)
    tested = {}
    for tag, config, thresholds in [
        ("default", PreprocessConfig(size=16, channels=3, crop=0.3), QualityThresholds()),
        ("tight", PreprocessConfig(size=16, channels=3, crop=0.2), QualityThresholds(min_quality=0.6)),
        ("loose", PreprocessConfig(size=16, channels=3, crop=0.4), QualityThresholds(min_quality=0.0, min_size=0, min_snr=0.0,
                                                                              min_finite=0.0, max_saturated=1.0, extent=0.0)),
    ]:
        data = load_dataset(build(BuildSpec(source=str(source), preprocess=config, thresholds=thresholds),
                                  out=tmp_path / tag, n_jobs=1))
        names, split = pd.Series(data.names), pd.Series(data.split)
        tested[tag] = set(names[split == "test"])
        # Every kept frozen galaxy is test, nothing else is, and a dropped one just drops out.
        assert tested[tag] == frozen & set(names)
        assert set(split[names.isin(frozen)]) == {"test"} and not (split[~names.isin(frozen)] == "test").any()
        assert data.manifest["params"]["split_file_sha256"]
    assert tested["loose"] == frozen  # every filter off: all nine
    assert tested["tight"] <= tested["default"] <= tested["loose"]


def test_the_default_build_and_the_study_build_of_gz1_test_the_same_frozen_names(tmp_path, monkeypatch):
    # The study (benchmarks/study_gz1.py, the only benchmark that builds data/gz1) builds exactly what
    # `python -m core build --source data/gz1` builds, and trains and scores on its train + validation only.
    from core.prepare.selection import preprocess_defaults
    from core.cli import build_parser
    from core.config import get_settings

    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    study = _study()
    args = build_parser().parse_args(["build", "--source", str(GZ1)])
    cli_spec = BuildSpec.from_args(args, default_source=str(GZ1), default_size=get_settings().image_size,
                                   defaults=preprocess_defaults(load_source(GZ1)))
    assert study.default_spec() == cli_spec
    data = study.study_dataset(tmp_path)
    names, split = pd.Series(data.names), pd.Series(data.split)
    frozen = read_split_file(GZ1)
    assert set(names[split == "test"]) == frozen & set(names)
    assert len(frozen & set(names)) >= 0.85 * len(frozen)  # the quality filter drops a few, not the test set
    for fold in range(5):
        inner = study.fold_dataset(data, fold=fold, k=5, seed=0)
        assert not set(inner.names) & frozen
        assert set(inner.split) == {"train", "val", "test"}  # test here is the scored validation fold
    scored = np.concatenate([study.fold_dataset(data, fold=f, k=5, seed=0).meta.query("split == 'test'")["name"]
                             for f in range(5)])
    assert sorted(scored) == sorted(names[split != "test"])  # every train + validation galaxy scored once


def test_build_refuses_a_damaged_split_file_before_reading_an_image(tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    source = _gz1_copy(tmp_path / "gz1", per_class=3)
    (source / SPLIT_FILE).write_text("name,split\nSDSS 1,validation\n")
    with pytest.raises(ConfigError, match=r"split.csv, row 2: split must be 'test'; got 'validation'"):
        build(BuildSpec(source=str(source)), out=tmp_path / "out", n_jobs=1)
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # nothing measured or written


def test_folds_and_repeats_on_a_frozen_test_set_rotate_only_train_and_validation(tmp_path):
    # A dataset built from a source with a split.csv: K-fold must never train on its test galaxies.
    # Folds rotate validation over the other galaxies, and every fold is scored on the frozen test set.
    n = 90
    meta = pd.DataFrame({"name": [f"G{i}" for i in range(n)], "label": np.array(["a", "b", "c"])[np.arange(n) % 3],
                         "y": np.arange(n) % 3, "split": np.array(["train"] * 60 + ["val"] * 15 + ["test"] * 15)})
    path = save_dataset(tmp_path / "d", x=np.zeros((n, 8, 8, 1), np.float32), meta=meta, classes=["a", "b", "c"],
                        manifest={"params": {"split_file_sha256": "ab" * 32}})
    dataset = load_dataset(path)
    frozen = set(meta.loc[meta["split"] == "test", "name"])
    validated = []
    for fold in range(5):
        part = resplit(dataset, folds=5, fold=fold, split_seed=0)
        names, split = pd.Series(part.names), pd.Series(part.split)
        assert set(names[split == "test"]) == frozen  # every fold scores the same frozen test galaxies
        assert not (split[~names.isin(frozen)] == "test").any()
        assert (split == "val").sum() == 15  # 75 non-test galaxies in 5 folds
        validated += list(names[split == "val"])
    assert sorted(validated) == sorted(set(meta["name"]) - frozen)  # each non-test galaxy validates once
    for seed in (1, 2):
        again = resplit(dataset, folds=0, fold=0, split_seed=seed)
        names, split = pd.Series(again.names), pd.Series(again.split)
        assert set(names[split == "test"]) == frozen and (split == "val").sum() == 15
        assert not np.array_equal(again.split, dataset.split)


def test_the_study_applies_the_epoch_budget_rule_as_written():
    # docs/MODELS.md, "The epoch budget": a model asks for more epochs only when its mean best validation
    # epoch is >= 27 of 30; the default split's validation runs count beside the study's folds.
    study = _study()
    results = pd.DataFrame({"model": ["lenet5", "lenet5", "resnet20", "resnet20"], "best_epoch": [18, 24, 29, 23]})
    lines = study.epoch_budget(results)
    assert lines[0].endswith("No model reaches the last 10 % of the budget: 30 epochs stay.")
    assert "- resnet20: best epochs [29, 23], mean 26.0 (< 27: the budget suffices)" in lines
    lines = study.epoch_budget(results, extra_best_epochs={"resnet20": [30], "alexnet": [28]})
    assert "resnet20, alexnet reach the last 10 % of the budget" in lines[0] or \
        "alexnet, resnet20 reach the last 10 % of the budget" in lines[0]
    assert "- resnet20: best epochs [29, 23, 30], mean 27.3 (≥ 27: asks for more epochs)" in lines
