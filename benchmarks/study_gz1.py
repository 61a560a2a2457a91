"""Validation study on the shipped Galaxy Zoo 1 cutouts (``data/gz1``): what makes real images work.

Every figure is a **validation** accuracy: the test split of the seed-0 build (88 galaxies) is
never read. The train + validation galaxies of that build (~494) are cut into ``--folds``
stratified folds; each fold is the validation set once (the others train), and the table shows
the mean and spread over folds, so a difference of one or two galaxies on a 90-galaxy validation
set is not mistaken for an effect. Each fold's figure is the accuracy of the restored best weights
(lowest validation loss) on that fold, as ``train`` selects them.

Usage (long: nice it, the machine is shared)::

    nice -n 10 python benchmarks/study_gz1.py --out /tmp/realacc --only lenet-grey lenet-colour
    nice -n 10 python benchmarks/study_gz1.py --out /tmp/realacc --table   # print the table so far

Results go to ``OUT/study.csv`` (one row per experiment and fold; an experiment that is already
there is skipped, so a killed study resumes; ``--results study-big.csv`` for a second study
running at the same time) and the table of every ``OUT/study*.csv`` to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.builder import build_dataset  # noqa: E402
from core.dataset import Dataset, load_dataset  # noqa: E402
from core.preprocessing import PreprocessConfig  # noqa: E402

# The builder's current defaults for a Galaxy Zoo JPEG source, which each experiment varies.
BASE = {"crop": 0.3, "size": 64, "stretch": "linear", "channels": 3}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One row of the table: a preprocessing variant, a model and training overrides."""

    tag: str
    model: str
    preprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    cosine: bool = False
    rotate: float = 0.0
    crop_radii: float = 0.0
    """> 0: each galaxy's own crop, this many half-light radii on a side (clamped to ``crop_limits``)."""
    crop_limits: tuple[float, float] = (0.15, 0.6)
    train_fraction: float = 1.0
    """< 1: train on this stratified share of each fold's training galaxies (a learning curve)."""
    note: str = ""
    reference: str = ""
    """The experiment it is compared with, fold by fold (default: ``<model>-base``)."""


def _experiments() -> list[Experiment]:
    grey = {"channels": 1, "stretch": "asinh", "crop": 0.35}
    old = {"channels": 3, "stretch": "asinh", "crop": 0.35}
    out = [
        # Input, on the cheap model.
        Experiment("lenet-old-grey", "lenet5", grey, note="grey, asinh, crop 0.35 (the old recipe in grey)"),
        Experiment("lenet-old-colour", "lenet5", old, note="colour, asinh, crop 0.35 (the old README recipe)"),
        Experiment("lenet-asinh", "lenet5", {"stretch": "asinh"}, note="asinh instead of linear"),
        Experiment("lenet-base", "lenet5", note="colour, linear, crop 0.3, 64 px"),
        Experiment("lenet-grey", "lenet5", {"channels": 1}, note="grey instead of colour"),
    ]
    for crop in (0.2, 0.25, 0.4, 0.5):
        out.append(Experiment(f"lenet-crop{crop}", "lenet5", {"crop": crop}, note=f"crop {crop}"))
    out += [
        Experiment("lenet-size32", "lenet5", {"size": 32}, note="32-px dataset (no resize in the model)"),
        Experiment("lenet-size96", "lenet5", {"size": 96}, note="96-px dataset, resized to 32 in the model"),
        Experiment("lenet-noaug", "lenet5", train={"augment": False}, note="no augmentation"),
        Experiment("lenet-80ep", "lenet5", train={"epochs": 80}, note="80 epochs"),
        Experiment("lenet-cosine", "lenet5", cosine=True, note="cosine learning-rate decay"),
        Experiment("lenet-cosine80", "lenet5", train={"epochs": 80, "patience": 0}, cosine=True,
                   note="cosine, 80 epochs, no early stop"),
        Experiment("lenet-wd", "lenet5", train={"optimizer": "adamw", "weight_decay": 1e-4}, note="AdamW 1e-4"),
        # The floor: gradient boosting on morphology features (core.baseline), same folds.
        Experiment("baseline-base", "baseline", note="gradient-boosting baseline, colour linear crop 0.3"),
        Experiment("baseline-grey", "baseline", grey, note="gradient-boosting baseline, grey asinh crop 0.35"),
        # Targeted runs of the big models.
        Experiment("resnet-old-grey", "resnet18", grey, note="ResNet-18, grey asinh crop 0.35"),
        Experiment("resnet-base", "resnet18", note="ResNet-18, colour linear crop 0.3"),
        Experiment("resnet-cosine", "resnet18", cosine=True, note="ResNet-18, + cosine"),
        Experiment("alexnet-old-grey", "alexnet", grey, note="AlexNet, grey asinh crop 0.35"),
        Experiment("alexnet-base", "alexnet", note="AlexNet, colour linear crop 0.3"),
        Experiment("alexnet-cosine", "alexnet", cosine=True, note="AlexNet, + cosine"),
        # Second round, on three folds: augmentation, LeNet-5 at 64 px, and the schedule of the big models.
        Experiment("lenet-rotate", "lenet5", rotate=0.5, note="+ free rotation (any angle)"),
        Experiment("lenet-native64", "lenet5", train={"model_options": {"activation": "relu", "pooling": "max",
                                                                        "native_size": True}},
                   note="64-px input, no resize to 32"),
        Experiment("lenet-cos80rot", "lenet5", rotate=0.5, train={"epochs": 80, "optimizer": "adamw",
                   "weight_decay": 1e-4, "schedule": "cosine", "patience": 0},
                   note="AdamW, cosine, 80 epochs, no early stop, free rotation"),
    ]
    constant30 = {"epochs": 30, "schedule": "constant", "patience": 10}
    cosine60 = {"epochs": 60, "schedule": "cosine", "patience": 0}
    cosine40 = {"epochs": 40, "schedule": "cosine", "patience": 0}
    out += [
        Experiment("resnet-constant30", "resnet18", train=constant30,
                   note="ResNet-18, constant lr, 30 epochs, patience 10 (the old default)"),
        Experiment("resnet-cosine60", "resnet18", train=cosine60, reference="resnet-constant30",
                   note="ResNet-18, cosine over 60 epochs, no early stop"),
        Experiment("alexnet-constant30", "alexnet", train=constant30,
                   note="AlexNet, constant lr, 30 epochs, patience 10 (the old default)"),
        Experiment("alexnet-cosine60", "alexnet", train=cosine60, reference="alexnet-constant30",
                   note="AlexNet, cosine over 60 epochs, no early stop"),
        # 60 epochs of both big models would take ~21 of the 25 minutes allowed on ~1,300 galaxies.
        Experiment("resnet-cosine40", "resnet18", train=cosine40, reference="resnet-constant30",
                   note="ResNet-18, cosine over 40 epochs, no early stop (the default)"),
        Experiment("alexnet-cosine40", "alexnet", train=cosine40, reference="alexnet-constant30",
                   note="AlexNet, cosine over 40 epochs, no early stop (the default)"),
        # Third round: a crop that follows each galaxy's size, how much more data would give, label noise.
        Experiment("lenet-radii4", "lenet5", crop_radii=4, note="crop side 4 half-light radii (0.15-0.6 of the frame)"),
        Experiment("lenet-radii6", "lenet5", crop_radii=6, crop_limits=(0.15, 0.8),
                   note="crop side 6 half-light radii (0.15-0.8 of the frame)"),
        Experiment("lenet-half", "lenet5", train_fraction=0.5, note="half of the training galaxies"),
        Experiment("lenet-quarter", "lenet5", train_fraction=0.25, note="a quarter of the training galaxies"),
        Experiment("lenet-smooth0.1", "lenet5", train={"label_smoothing": 0.1}, note="label smoothing 0.1"),
        Experiment("resnet-half", "resnet18", train_fraction=0.5, reference="resnet-cosine40",
                   note="ResNet-18 (default), half of the training galaxies"),
        Experiment("resnet-smooth0.1", "resnet18", train={"label_smoothing": 0.1}, reference="resnet-cosine40",
                   note="ResNet-18 (default), label smoothing 0.1"),
        Experiment("resnet-crop0.2", "resnet18", {"crop": 0.2}, reference="resnet-cosine40",
                   note="ResNet-18 (default), crop 0.2: more pixels on the galaxy"),
    ]
    return out


EXPERIMENTS = {e.tag: e for e in _experiments()}


def dataset_for(preprocess: dict[str, Any], out: Path) -> Path:
    """The seed-0 build of ``data/gz1`` with ``BASE`` updated by ``preprocess`` (cached by the builder)."""
    params = {**BASE, **preprocess}
    config = PreprocessConfig(**params)
    name = "gz1-" + "-".join(f"{k}{v}" for k, v in sorted(params.items()))
    # extent=0: every variant keeps the same galaxies (same split, same folds), so a small crop is
    # judged with the big galaxies it cuts, not on a set without them.
    return build_dataset(ROOT / "data" / "gz1", preprocess=config, extent=0, out=out / "datasets" / name)


def fold_dataset(dataset: Dataset, fold: int, folds: int) -> Dataset:
    """Train+val of ``dataset`` with fold ``fold`` as validation (and as the "test" that train() scores).

    The dataset's own test rows are dropped here, so nothing downstream can read them.
    """
    keep = dataset.meta["split"].to_numpy() != "test"
    meta = dataset.meta[keep].reset_index(drop=True)
    x = dataset.x[keep]
    rng = np.random.default_rng(1234)
    assign = np.empty(len(meta), dtype=int)
    for label in sorted(meta["label"].unique()):
        idx = np.flatnonzero(meta["label"].to_numpy() == label)
        rng.shuffle(idx)
        assign[idx] = np.arange(len(idx)) % folds
    in_fold = assign == fold
    split = np.where(in_fold, "val", "train")
    meta = meta.assign(split=split)
    scored = meta[in_fold].assign(split="test")
    manifest = {**dataset.manifest, "content_hash": f"{dataset.content_hash}-fold{fold}of{folds}"}
    return Dataset(path=dataset.path, x=np.concatenate([x, x[in_fold]]),
                   meta=pd.concat([meta, scored], ignore_index=True), classes=dataset.classes, manifest=manifest)


def adaptive_crops(dataset: Dataset, radii: float, limits: tuple[float, float]) -> np.ndarray:
    """The dataset's images again, each cropped to ``radii`` of its own half-light radius (a side
    that follows the galaxy's size, so every galaxy fills the input alike), image centre, ``BASE``.

    The radii are the quality metrics the build already measured (cached with the source).
    """
    from core.parallel import run_parallel
    from core.quality import compute_metrics

    metrics = compute_metrics(ROOT / "data" / "gz1").set_index("path")
    sizes = metrics.loc[dataset.meta["path"], ["source_radius_px", "min_side"]].to_numpy(dtype=float)
    crops = np.clip(radii * sizes[:, 0] / sizes[:, 1], *limits)
    return np.stack(list(run_parallel(_crop_to, [(str(path), float(crop))
                                                 for path, crop in zip(dataset.meta["path"], crops)])))


def _crop_to(task: tuple[str, float]) -> np.ndarray:
    """One image of :func:`adaptive_crops`: ``BASE`` with its own crop, at the image centre."""
    from core.images import read_image
    from core.preprocessing import preprocess

    path, crop = task
    return preprocess(read_image(path), PreprocessConfig(**{**BASE, "crop": crop, "centre": "none"}))


def training_share(data: Dataset, fraction: float, *, seed: int) -> Dataset:
    """``data`` with only ``fraction`` of each class's training galaxies (validation and test kept)."""
    rng = np.random.default_rng(seed)
    split = data.meta["split"].to_numpy()
    labels = data.meta["label"].to_numpy()
    keep = np.ones(len(split), dtype=bool)
    for label in data.meta["label"].unique():
        idx = np.flatnonzero((split == "train") & (labels == label))
        keep[rng.permutation(idx)[int(round(fraction * len(idx))):]] = False
    return dataclasses.replace(data, x=data.x[keep], meta=data.meta[keep].reset_index(drop=True))


def _rotation_patch(turns: float) -> Any:
    """Patch ``core.training.augmentation`` to add a free rotation of up to ``turns`` x 360° (study only)."""
    import keras

    from core import training

    original = training.augmentation

    def augmentation(config: Any) -> list[Any]:
        layers = original(config)
        if config.augment:
            layers.append(keras.layers.RandomRotation(turns, fill_mode="reflect", seed=config.seed + 3, name="aug_rot"))
        return layers

    training.augmentation = augmentation
    return original


def dihedral_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the class probabilities averaged over the 8 rotations and reflections of each image
    (test-time augmentation; the study measures whether it is worth adding)."""
    views = [np.rot90(np.transpose(x, (0, 2, 1, 3)) if flip else x, k, axes=(1, 2))
             for flip in (False, True) for k in range(4)]
    proba = np.mean([model.predict(np.ascontiguousarray(v), batch_size=256, verbose=0) for v in views], axis=0)
    return float((proba.argmax(axis=1) == y).mean())


def run_experiment(exp: Experiment, *, out: Path, folds: int, use_folds: int, seed: int) -> list[dict[str, Any]]:
    """Train ``exp`` on the first ``use_folds`` of ``folds`` folds; one result row per fold."""
    import keras

    from core import runs, training

    dataset = load_dataset(dataset_for(exp.preprocess, out))
    if exp.crop_radii:
        dataset = dataclasses.replace(dataset, x=adaptive_crops(dataset, exp.crop_radii, exp.crop_limits))
    rows = []
    for fold in range(min(use_folds, folds)):
        data = fold_dataset(dataset, fold, folds)
        if exp.train_fraction < 1:
            data = training_share(data, exp.train_fraction, seed=fold)
        if exp.model == "baseline":
            rows.append(_baseline_fold(exp, data, fold=fold, seed=seed, out=out))
            continue
        config = training.default_config(exp.model, seed=seed,
                                         **{**exp.train, **({"schedule": "cosine"} if exp.cosine else {})})
        n_train = int((data.split == "train").sum())
        unrotated = _rotation_patch(exp.rotate) if exp.rotate else None
        run_dir = runs.create_run(out / "runs", model=exp.model, seed=seed, params=config.to_dict(),
                                  dataset_path=dataset.path, dataset_hash=data.content_hash)
        started = time.monotonic()
        try:
            result = training.train(data, config, run_dir=run_dir)
            x_val, y_val, _ = data.subset("test")  # the fold (fold_dataset scores it as "test")
            tta = dihedral_accuracy(result.model, x_val, y_val)
        finally:
            if unrotated is not None:
                training.augmentation = unrotated
            keras.backend.clear_session()
        rows.append({"tag": exp.tag, "model": exp.model, "fold": fold, "seed": seed,
                     "val_accuracy": result.metrics["accuracy"], "val_accuracy_tta": tta,
                     "best_epoch": result.metrics["best_epoch"],
                     "epochs_done": result.metrics["epochs_done"], "n_train": n_train,
                     "n_val": int((data.split == "val").sum()), "seconds": round(time.monotonic() - started, 1),
                     "note": exp.note})
        logging.info("%s fold %d: val %.3f (best epoch %d, %.0f s)", exp.tag, fold, rows[-1]["val_accuracy"],
                     rows[-1]["best_epoch"], rows[-1]["seconds"])
    return rows


def _baseline_fold(exp: Experiment, data: Dataset, *, fold: int, seed: int, out: Path) -> dict[str, Any]:
    from core import runs
    from core.baseline import BASELINE_MODEL, BaselineConfig, train_baseline

    config = BaselineConfig(seed=seed)
    run_dir = runs.create_run(out / "runs", model=BASELINE_MODEL, seed=seed, params=config.to_dict(),
                              dataset_path=data.path, dataset_hash=data.content_hash)
    started = time.monotonic()
    metrics = train_baseline(data, config, run_dir=run_dir)
    return {"tag": exp.tag, "model": BASELINE_MODEL, "fold": fold, "seed": seed, "val_accuracy": metrics["accuracy"],
            "best_epoch": 1, "epochs_done": 1, "n_train": int((data.split == "train").sum()),
            "n_val": int((data.split == "val").sum()), "seconds": round(time.monotonic() - started, 1),
            "note": exp.note}


def table(results: pd.DataFrame) -> str:
    """Markdown table: mean ± sd of the fold validation accuracies, and the change against the reference.

    The reference of an experiment is its ``reference`` (default: its model's ``<model>-base``); the
    change is the mean paired difference over the folds both ran (the same validation galaxies),
    which is far less noisy than the difference of two means. "8 views" is the accuracy of the
    probabilities averaged over the 8 rotations and reflections of each validation image.
    """
    lines = ["| experiment | what changed | val accuracy (mean ± sd) | Δ vs reference (same folds) | 8 views "
             "| folds | best epoch | s/fold |",
             "|---|---|---|---|---|---|---|---|"]
    order = [t for t in EXPERIMENTS if t in set(results["tag"])] + sorted(set(results["tag"]) - set(EXPERIMENTS))
    for tag in order:
        rows = results[results["tag"] == tag]
        acc = rows["val_accuracy"]
        known = EXPERIMENTS.get(tag)
        reference = (known.reference if known is not None else "") or f"{tag.split('-')[0]}-base"
        base = results[results["tag"] == reference].set_index("fold")["val_accuracy"]
        paired = rows.set_index("fold")["val_accuracy"].sub(base).dropna()
        delta = "" if tag == reference or paired.empty else f"{paired.mean():+.3f} ({len(paired)}, vs {reference})"
        spread = acc.std(ddof=1) if len(acc) > 1 else 0.0
        views = rows["val_accuracy_tta"].dropna() if "val_accuracy_tta" in rows else pd.Series(dtype=float)
        lines.append(f"| {tag} | {rows['note'].iloc[0]} | {acc.mean():.3f} ± {spread:.3f} | {delta} "
                     f"| {f'{views.mean():.3f}' if len(views) else ''} | {len(rows)} "
                     f"| {rows['best_epoch'].mean():.0f} | {rows['seconds'].mean():.0f} |")
    return "\n".join(lines)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def runs_table(runs_dir: Path) -> str:
    """Markdown table of the finished runs in ``runs_dir``: test accuracy with its Wilson interval, time."""
    from core.runs import iter_runs

    lines = ["| model | test accuracy | 95 % Wilson interval | n test | validation accuracy | epochs (best) | train time |",
             "|---|---|---|---|---|---|---|"]
    for run in iter_runs(runs_dir):
        m = run.metrics
        if not m:
            continue
        n = int(m["n_test"])
        k = int(round(m["accuracy"] * n))
        low, high = wilson(k, n)
        history = run.history
        val = m.get("val_accuracy")
        if val is None and not history.empty:
            val = float(history.loc[history["epoch"] == m["best_epoch"], "val_accuracy"].iloc[0])
        lines.append(f"| {run.model_name} s{run.seed} | {m['accuracy']:.3f} ({k}/{n}) | {low:.2f}–{high:.2f} | {n} "
                     f"| {val:.3f} | {m['epochs_done']} ({m['best_epoch']}) | {m['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/gz1-study"))
    parser.add_argument("--only", nargs="+", default=None, help=f"experiments to run: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--folds", type=int, default=5, help="folds the train+val galaxies are cut into")
    parser.add_argument("--use-folds", type=int, default=None,
                        help="run only the first N folds (same folds as a full run, so results stay paired)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="study.csv",
                        help="results file in OUT (two studies at once need two files; the table reads OUT/study*.csv)")
    parser.add_argument("--table", action="store_true", help="print the table of the results so far and exit")
    parser.add_argument("--runs", type=Path, default=None,
                        help="print the test table (Wilson intervals) of the finished runs in this folder and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.runs is not None:
        print(runs_table(args.runs))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / args.results
    results = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    if not args.table:
        for tag in args.only or list(EXPERIMENTS):
            if tag not in EXPERIMENTS:
                parser.error(f"unknown experiment {tag!r}; known: {', '.join(EXPERIMENTS)}")
            if not results.empty and ((results["tag"] == tag) & (results["seed"] == args.seed)).any():
                continue
            rows = run_experiment(EXPERIMENTS[tag], out=args.out, folds=args.folds,
                                  use_folds=args.use_folds or args.folds, seed=args.seed)
            results = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
            results.to_csv(csv, index=False)
    everything = [pd.read_csv(p) for p in sorted(args.out.glob("study*.csv"))]
    if everything:
        print(table(pd.concat(everything, ignore_index=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
