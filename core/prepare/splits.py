"""Repeated evaluation: stratified k-fold and shuffle re-splits of a dataset's rows, by object.

A dataset is built with one train/val/test split. On a few hundred galaxies the test set that
split happens to draw moves accuracy by several points, more than training seeds do, so a
comparison should rotate the test set. Both splitters here work **by object** (all rows of one
name land in the same part, so an object never trains and tests the same model) and
**stratified** by class (each fold gets its class's objects in turn, so per-class counts differ
by at most one between folds). Validation is carved from the training folds: with fold ``f`` as
test, fold ``f + 1`` (mod k) is validation and the rest train.

A source may also freeze its test set in a ``split.csv`` (:func:`read_split_file`): the builder
then keeps those galaxies as test whatever crop or quality threshold keeps (a filtered-out one
just drops out) and draws train and validation from the rest (:func:`split_around_test`). Folds
and re-splits of such a dataset rotate only train and validation and keep that test set
(:func:`resplit`), so no fold ever trains on a frozen test galaxy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from core.prepare.dataset import SPLITS, Dataset
from core.errors import ConfigError, GalaxyMorphError


def _objects(labels: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(unique names, label per name, row -> name index)``; a name's label is that of its first row."""
    codes, uniques = pd.factorize(pd.Series(names, dtype=object), sort=False)
    _, first = np.unique(codes, return_index=True)
    return np.asarray(uniques, dtype=object), np.asarray(labels)[first], codes


def stratified_kfold(labels: np.ndarray, names: np.ndarray, *, k: int, seed: int) -> np.ndarray:
    """The fold (``0 .. k-1``) of every row: objects shuffled within each class, dealt to folds in turn.

    Parameters
    ----------
    labels : array, shape (N,)
        Class of each row.
    names : array, shape (N,)
        Object name of each row; rows of one name always share a fold.
    k : int
        Number of folds, >= 3 (one test, one validation, at least one training fold).
    seed : int
        Seeds the shuffle: the same seed gives the same folds.

    Returns
    -------
    numpy.ndarray of int, shape (N,)
    """
    if not isinstance(k, int) or k < 3:
        raise GalaxyMorphError(f"k must be an integer >= 3 (test, validation and training folds); got {k!r}. Try 5.")
    _, object_labels, codes = _objects(labels, names)
    if len(object_labels) < k:
        raise GalaxyMorphError(f"k-fold needs at least k objects; got {len(object_labels)} objects for k={k}. "
                               "Use fewer folds.")
    rng = np.random.default_rng(seed)
    fold_of_object = np.empty(len(object_labels), dtype=np.int64)
    start = 0
    for cls in pd.unique(pd.Series(object_labels, dtype=object)):
        members = rng.permutation(np.flatnonzero(object_labels == cls))
        # Each class continues where the previous one stopped, so fold sizes stay within one of each other too.
        fold_of_object[members] = (start + np.arange(len(members))) % k
        start = (start + len(members)) % k
    return fold_of_object[codes]


def fold_split(folds: np.ndarray, *, k: int, fold: int) -> np.ndarray:
    """``"train"`` / ``"val"`` / ``"test"`` per row: ``fold`` is test, the next fold validation, the rest train."""
    if not 0 <= fold < k:
        raise GalaxyMorphError(f"fold must be in [0, {k}); got {fold!r}.")
    split = np.full(len(folds), "train", dtype=object)
    split[folds == fold] = "test"
    split[folds == (fold + 1) % k] = "val"
    return split


def shuffle_split(labels: np.ndarray, names: np.ndarray, *, fractions: tuple[float, float, float],
                  seed: int) -> np.ndarray:
    """A stratified random train/val/test split by object with the given fractions (one ``--repeats`` draw).

    Within each class the objects are shuffled and cut at the cumulative fractions (rounded), so
    each class keeps the proportions of the dataset's own split.
    """
    fractions_arr = np.asarray(fractions, dtype=np.float64)
    if fractions_arr.shape != (3,) or (fractions_arr < 0).any() or not np.isclose(fractions_arr.sum(), 1):
        raise GalaxyMorphError(f"fractions must be three non-negative numbers summing to 1; got {fractions!r}.")
    _, object_labels, codes = _objects(labels, names)
    rng = np.random.default_rng(seed)
    part = np.empty(len(object_labels), dtype=np.int64)
    cuts = np.cumsum(fractions_arr)[:2]
    for cls in pd.unique(pd.Series(object_labels, dtype=object)):
        members = rng.permutation(np.flatnonzero(object_labels == cls))
        bounds = np.round(cuts * len(members)).astype(np.int64)
        part[members] = np.searchsorted(bounds, np.arange(len(members)), side="right")
    return np.asarray(SPLITS, dtype=object)[part[codes]]


def has_frozen_test(dataset: Dataset) -> bool:
    """Whether the dataset's test rows are its source's frozen test set (built from a ``split.csv``)."""
    params = dataset.manifest.get("params") if isinstance(dataset.manifest, dict) else None
    frozen = isinstance(params, dict) and bool(params.get("split_file_sha256"))
    return frozen and bool((dataset.split == "test").any())


def kept_frozen_test(run_config: dict, dataset: Dataset) -> bool:
    """Whether a run recorded in ``run_config`` kept ``dataset``'s frozen test set out of training.

    Folds and re-splits of a dataset with a frozen test set drew test folds from all its galaxies
    before they kept it; such a run has the same parameters (and config hash) as a correct one but
    no ``split_file_sha256`` in its dataset record, so ``train --resume`` must train it again.
    """
    params = run_config.get("params") if isinstance(run_config.get("params"), dict) else {}
    resplit_run = bool(params.get("folds")) or params.get("split_seed") is not None
    recorded = run_config.get("dataset") if isinstance(run_config.get("dataset"), dict) else {}
    return not (resplit_run and has_frozen_test(dataset) and not recorded.get("split_file_sha256"))


def resplit(dataset: Dataset, *, folds: int, fold: int, split_seed: int | None) -> Dataset:
    """``dataset`` with its ``split`` column replaced; the arrays and the content hash stay the dataset's.

    ``folds >= 3``: fold ``fold`` of :func:`stratified_kfold` with ``split_seed`` (0 if None).
    ``folds == 0`` and a ``split_seed``: :func:`shuffle_split` with the dataset's own split fractions.
    ``folds == 0`` and no seed: the dataset unchanged.

    A dataset with a frozen test set (:func:`has_frozen_test`) keeps it in every split: the folds
    (or re-splits) are drawn over its other galaxies only, fold ``fold`` as validation and the rest
    train, and every split is scored on the same frozen test galaxies. A test galaxy is never
    trained on, so the test set can still be evaluated once, at the end. The comparison then
    scores the fold models as one ensemble on those galaxies (:func:`core.learn.report.fold_ensembles`).
    """
    if folds == 0 and split_seed is None:
        return dataset
    labels, names = dataset.meta["label"].to_numpy(dtype=object), dataset.names
    own = dataset.split
    if has_frozen_test(dataset):
        rest = own != "test"
        split = np.asarray(own, dtype=object).copy()
        if folds:
            in_fold = stratified_kfold(labels[rest], names[rest], k=folds, seed=split_seed or 0)
            split[rest] = np.where(in_fold == fold, "val", "train")
        else:
            val_share = float(np.mean(own[rest] == "val"))
            split[rest] = shuffle_split(labels[rest], names[rest], fractions=(1 - val_share, val_share, 0.0),
                                        seed=split_seed)
    elif folds:
        split = fold_split(stratified_kfold(labels, names, k=folds, seed=split_seed or 0), k=folds, fold=fold)
    else:
        fractions = tuple(float(np.mean(own == s)) for s in SPLITS)
        split = shuffle_split(labels, names, fractions=fractions, seed=split_seed)
    return dataclasses.replace(dataset, meta=dataset.meta.assign(split=split))


# --------------------------------------------------------------------------------------------- frozen test set

SPLIT_FILE = "split.csv"
"""A source's frozen test set: ``name,split`` rows, ``split`` always ``test`` (see :func:`read_split_file`)."""


def read_split_file(root: str | Path) -> frozenset[str] | None:
    """The test names a source folder freezes in its ``split.csv``, or None when it has none.

    The file is read as untrusted: a table of ``name`` and ``split`` columns, every ``split``
    ``test``. Names are stripped; a name that the catalogue does not list simply never matches.

    Raises
    ------
    ConfigError
        If the file cannot be read, lacks a column, or holds another split than ``test``.
    """
    path = Path(root) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"split file {path} is not a readable CSV ({exc}). Fix it or delete it to split afresh.") from exc
    columns = {str(c).strip().lower(): c for c in table.columns}
    missing = [c for c in ("name", "split") if c not in columns]
    if missing:
        raise ConfigError(f"split file {path} must have the columns name and split; it lacks {missing} "
                          f"(found {list(table.columns)[:5]}). Write one 'name,test' row per test galaxy.")
    splits = table[columns["split"]].str.strip().str.lower()
    wrong = table.index[splits != "test"]
    if len(wrong):
        row = int(wrong[0])
        raise ConfigError(f"split file {path}, row {row + 2}: split must be 'test'; got {table.loc[row, columns['split']]!r}. "
                          "The file freezes the test set; build draws train and validation from the rest.")
    names = table[columns["name"]].str.strip()
    return frozenset(names[names != ""])


def split_around_test(labels: np.ndarray, is_test: np.ndarray, *, seed: int, val_fraction: float,
                      test_fraction: float) -> np.ndarray:
    """``train``/``val``/``test`` per row when the test rows are given (a source's frozen test set).

    Validation is drawn from the other rows, stratified by class and seeded, with the share it
    has of them in an ordinary split: ``val_fraction / (1 - test_fraction)``. Rows must be
    distinct objects (the builder removes duplicates first).
    """
    labels = np.asarray(labels, dtype=object)
    is_test = np.asarray(is_test, dtype=bool)
    split = np.where(is_test, "test", "train").astype(object)
    share = val_fraction / (1 - test_fraction)
    rng = np.random.default_rng(seed)
    for cls in sorted(set(labels[~is_test]), key=str):
        members = rng.permutation(np.flatnonzero((labels == cls) & ~is_test))
        split[members[: int(round(share * len(members)))]] = "val"
    return split


def freeze_test_split(root: str | Path, labels: pd.Series, names: pd.Series, *, fraction: float = 0.15,
                      seed: int = 0) -> Path:
    """Draw a source's test set once and write it to ``root/split.csv``; refuse to replace one.

    Stratified by class: within each class the names are shuffled (seeded) and the first
    ``round(fraction * n)`` kept. Draw it from the whole catalogue, before any filter, so that no
    build setting chooses which galaxies are tested.

    Raises
    ------
    ConfigError
        If ``root`` already has a split file (a frozen test set is never redrawn silently), or
        ``fraction`` is not in (0, 1).
    """
    from core.io import atomic_write_text  # noqa: PLC0415

    path = Path(root) / SPLIT_FILE
    if path.exists():
        raise ConfigError(f"{path} exists; a frozen test set is not redrawn. Delete it first to draw a new one.")
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be in (0, 1); got {fraction!r}. Use e.g. 0.15.")
    table = pd.DataFrame({"name": pd.Series(names, dtype=str).str.strip().to_numpy(),
                          "label": pd.Series(labels, dtype=str).to_numpy()}).drop_duplicates("name")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in sorted(table["label"].unique()):
        members = table.loc[table["label"] == cls, "name"].to_numpy()
        chosen += list(rng.permutation(members)[: int(round(fraction * len(members)))])
    out = pd.DataFrame({"name": sorted(chosen), "split": "test"})
    return atomic_write_text(path, out.to_csv(index=False))
