"""Validation study on the shipped Galaxy Zoo 1 cutouts (``data/gz1``): which ResNet, and how each model does.

Everything here is measured on **train + validation only**. The dataset is the one
``python -m core build --source data/gz1`` makes (:func:`default_spec`), so its test galaxies are
the frozen ones of ``data/gz1/split.csv``; they are dropped before any fold is cut and never read.

The train + validation galaxies are cut into ``--folds`` (5) stratified folds by object. For outer
fold ``f``: fold ``f`` is *scored*, fold ``f + 1`` is the inner validation set that picks the epoch
(lowest validation loss, as ``train`` does), and the other folds train. So the fold that scores a
model never chose its epoch. Every model gets the equal protocol's recipe
(:func:`core.learn.training.default_config`), one seed.

The decision rule, fixed in docs/DATA.md ("The validation study") before the runs: ResNet-20
replaces ResNet-18 in the default comparison only if the corrected resampled t-test (Nadeau &
Bengio) of its per-fold accuracy differences against ResNet-18 gives p < 0.05 after Holm over
the variants tried (here one: ResNet-20). Otherwise ResNet-18 stays.

Usage (long: nice it, the machine is shared; a killed study resumes where it stopped)::

    nice -n 10 python benchmarks/study_gz1.py --out /tmp/gz1-study            # run, then print the table
    python benchmarks/study_gz1.py --out /tmp/gz1-study --table               # the table of what has run

Results go to ``OUT/study.csv`` (one row per model and fold) and the table, with exact counts,
to stdout and ``OUT/study.md``.
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

from core.prepare.dataset import Dataset, load_dataset  # noqa: E402
from core.spec import BuildSpec  # noqa: E402
from core.prepare.splits import fold_split, stratified_kfold  # noqa: E402

GZ1 = ROOT / "data" / "gz1"
MODELS = ("lenet5", "alexnet", "resnet18", "resnet20")
"""The equal-recipe models; ResNet-20 against ResNet-18 is the one decision (the variant tried)."""
INCUMBENT, VARIANTS = "resnet18", ("resnet20",)


def default_spec() -> BuildSpec:
    """The spec ``python -m core build --source data/gz1`` builds (the CLI's own parser and defaults)."""
    from core.prepare.selection import preprocess_defaults  # noqa: PLC0415
    from core.acquire.catalogue import load_source  # noqa: PLC0415
    from core.cli import build_parser  # noqa: PLC0415
    from core.config import get_settings  # noqa: PLC0415

    args = build_parser().parse_args(["build", "--source", str(GZ1)])
    return BuildSpec.from_args(args, default_source=str(GZ1), default_size=get_settings().image_size,
                               defaults=preprocess_defaults(load_source(GZ1)))


def study_dataset(out: Path) -> Dataset:
    """The default build of ``data/gz1`` (built once into ``OUT/datasets``, then found again)."""
    from core.prepare.builder import build  # noqa: PLC0415

    return load_dataset(build(default_spec(), out=out / "datasets" / "gz1-default"))


def outer_folds(dataset: Dataset, *, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, fold)``: the train + validation rows of ``dataset`` and their stratified fold (test rows left out)."""
    rows = np.flatnonzero(dataset.split != "test")
    labels = dataset.meta["label"].to_numpy(dtype=object)[rows]
    return rows, stratified_kfold(labels, dataset.names[rows], k=k, seed=seed)


def fold_dataset(dataset: Dataset, *, fold: int, k: int, seed: int) -> Dataset:
    """Outer fold ``fold``: that fold as ``test`` (scored), the next as ``val`` (picks the epoch), the rest ``train``.

    Only train + validation rows of the build are in it; its test galaxies are not.
    """
    rows, folds = outer_folds(dataset, k=k, seed=seed)
    meta = dataset.meta.iloc[rows].reset_index(drop=True).assign(split=fold_split(folds, k=k, fold=fold))
    manifest = {**dataset.manifest, "content_hash": f"{dataset.content_hash}-study-fold{fold}of{k}s{seed}"}
    return dataclasses.replace(dataset, x=dataset.x[rows], meta=meta, manifest=manifest)


def run_fold(dataset: Dataset, model: str, *, fold: int, k: int, seed: int, out: Path) -> dict[str, Any]:
    """Train ``model`` on outer fold ``fold`` under the equal protocol; one result row."""
    import keras  # noqa: PLC0415

    from core import runs  # noqa: PLC0415
    from core.learn import training  # noqa: PLC0415

    data = fold_dataset(dataset, fold=fold, k=k, seed=seed)
    config = training.default_config(model, seed=seed)
    run_dir = runs.create_run(out / "runs", model=model, seed=seed, params=config.to_dict(), dataset_path=data.path,
                              dataset_hash=data.content_hash, extra={"study_fold": fold, "study_folds": k,
                                     "protocol_differences": training.protocol_differences(config)})
    started = time.monotonic()
    result = training.train(data, config, run_dir=run_dir)
    keras.backend.clear_session()
    predictions = pd.read_csv(run_dir / "predictions.csv")
    wrong = predictions[predictions["true"] != predictions["pred"]]
    split = data.split
    return {"model": model, "fold": fold, "seed": seed, "n_train": int((split == "train").sum()),
            "n_val": int((split == "val").sum()), "n_scored": len(predictions),
            "correct": int(len(predictions) - len(wrong)), "errors": len(wrong), **error_pairs(wrong),
            "accuracy": result.metrics["accuracy"], "best_epoch": result.metrics["best_epoch"],
            "epochs_done": result.metrics["epochs_done"], "train_seconds": result.metrics["train_seconds"],
            "seconds": round(time.monotonic() - started, 1), "run": run_dir.name}


#: The three confusions of the gz1 scheme, as result columns: how many errors mix up each pair of classes.
PAIRS = {"errors_e_edgeon": ("E", "EdgeOn"), "errors_e_spiral": ("E", "Spiral"),
         "errors_edgeon_spiral": ("EdgeOn", "Spiral")}


def error_pairs(wrong: pd.DataFrame) -> dict[str, int]:
    """Misclassified rows (``true``, ``pred``) counted per unordered pair of classes (:data:`PAIRS`)."""
    return {column: int((wrong["true"].isin(pair) & wrong["pred"].isin(pair)).sum()) for column, pair in PAIRS.items()}


def decision(results: pd.DataFrame, *, k: int) -> list[str]:
    """The pre-registered rule applied: each variant against the incumbent, paired over the folds both ran."""
    from core.learn.metrics import corrected_resampled_t, holm  # noqa: PLC0415

    by_model = results.pivot_table(index="fold", columns="model", values="accuracy")
    tests = []
    for variant in VARIANTS:
        if variant not in by_model or INCUMBENT not in by_model:
            continue
        paired = by_model[[variant, INCUMBENT]].dropna()
        if len(paired) < 2:
            continue
        rows = results[results["model"] == variant]
        ratio = float(rows["n_scored"].sum() / rows["n_train"].sum())
        tests.append((variant, len(paired), corrected_resampled_t(paired[variant] - paired[INCUMBENT],
                                                                  test_train_ratio=ratio)))
    if not tests:
        return ["No decision yet: fewer than two folds where both ResNets ran."]
    adjusted = holm([t.p_value for _, _, t in tests])
    lines = []
    for (variant, n, test), p_holm in zip(tests, adjusted):
        adopt = p_holm < 0.05 and test.mean > 0
        lines.append(
            f"{variant} − {INCUMBENT}: {test.mean:+.3f} accuracy over {n} paired folds (95 % corrected interval "
            f"{test.low:+.3f} to {test.high:+.3f}), corrected resampled t p = {test.p_value:.3f}, Holm p = {p_holm:.3f} "
            f"over {len(tests)} variant(s): **{'adopt ' + variant if adopt else 'keep ' + INCUMBENT}**"
            + ("" if n == k else f" (on {n} of {k} folds: partial)") + ".")
    return lines


#: The epoch-budget rule of docs/MODELS.md ("The epoch budget"), written before the check: a model asks for
#: more epochs only when its mean best validation epoch is in the last 10 % of the budget.
EPOCH_BUDGET, LATE_SHARE = 30, 0.10


def epoch_budget(results: pd.DataFrame, *,
                 extra_best_epochs: dict[str, list[int]] | None = None) -> list[str]:
    """Step 1 of the epoch-budget rule per model: the mean best epoch (lowest validation loss) over its study
    folds and any ``extra_best_epochs`` (e.g. the default ``train`` runs' own validation split), and whether
    it reaches the last 10 % of the 30-epoch budget (then step 2, a 45-epoch run, decides)."""
    late = EPOCH_BUDGET * (1 - LATE_SHARE)
    lines = []
    asking = []
    models = [m for m in MODELS if m in set(results["model"]) or m in (extra_best_epochs or {})]
    for model in models:
        best = [int(b) for b in results.loc[results["model"] == model, "best_epoch"]]
        best += list((extra_best_epochs or {}).get(model, []))
        mean = float(np.mean(best))
        asks = mean >= late
        asking += [model] if asks else []
        said = f"≥ {late:g}: asks for more epochs" if asks else f"< {late:g}: the budget suffices"
        lines.append(f"- {model}: best epochs {best}, mean {mean:.1f} ({said})")
    if asking:
        verdict = (f"{', '.join(asking)} reach the last 10 % of the budget: a 45-epoch run on the same folds "
                   "decides (step 2); until then 30 stays.")
    else:
        verdict = f"No model reaches the last 10 % of the budget: {EPOCH_BUDGET} epochs stay."
    return [f"Epoch budget (step 1 of the rule in docs/MODELS.md): {verdict}", *lines]


def default_split_best_epochs(runs_dir: Path) -> dict[str, list[int]]:
    """Best epochs of the finished equal-protocol runs in ``runs_dir`` trained on a default build's own split
    (no folds): validation evidence for the epoch budget beside the study's folds."""
    from core.runs import iter_runs  # noqa: PLC0415

    best: dict[str, list[int]] = {}
    for run in iter_runs(runs_dir):
        params = run.config.get("params", {})
        epoch = run.metrics.get("best_epoch") if run.status == "finished" else None
        if (run.model_name in MODELS and params.get("protocol") == "equal" and not params.get("folds")
                and params.get("split_seed") is None and isinstance(epoch, int)):
            best.setdefault(run.model_name, []).append(epoch)
    return best


def table(results: pd.DataFrame, dataset: Dataset | None, *, k: int,
          extra_best_epochs: dict[str, list[int]] | None = None) -> str:
    """The study table in Markdown, with the exact counts it rests on, and the decision."""
    lines = []
    complete = all((results["model"] == m).sum() == k for m in MODELS)
    if not complete:
        lines.append(f"**PARTIAL**: not every model has run all {k} folds (folds per model below).\n")
    if dataset is not None:
        trainval = dataset.meta[dataset.split != "test"]
        counts = ", ".join(f"{c} {n}" for c, n in trainval["label"].value_counts().sort_index().items())
        lines.append(f"Default build of data/gz1: {len(trainval)} train + validation galaxies ({counts}); its "
                     f"{int((dataset.split == 'test').sum())} test galaxies (frozen in data/gz1/split.csv) never read. "
                     f"{k} stratified folds; per outer fold: 1 fold scored, 1 fold picks the epoch, {k - 2} train.\n")
    lines += ["| model | folds | accuracy, pooled over scored folds | mean ± sd over folds | errors: E ↔ EdgeOn "
              "| E ↔ Spiral | EdgeOn ↔ Spiral | best epoch (mean) | train min / fold |",
              "|---|---|---|---|---|---|---|---|---|"]
    for model in [m for m in MODELS if m in set(results["model"])]:
        rows = results[results["model"] == model]
        correct, n, errors = (int(rows[c].sum()) for c in ("correct", "n_scored", "errors"))
        spread = f"{rows['accuracy'].std(ddof=1):.3f}" if len(rows) > 1 else "— (1 fold)"
        shares = [f"{int(rows[c].sum())}/{errors} ({rows[c].sum() / errors:.0%})" if errors else "0/0" for c in PAIRS]
        lines.append(f"| {model} | {len(rows)} | {correct / n:.3f} ({correct}/{n}) | {rows['accuracy'].mean():.3f} ± "
                     f"{spread} | {' | '.join(shares)} | {rows['best_epoch'].mean():.1f} "
                     f"| {rows['train_seconds'].mean() / 60:.1f} |")
    lines += ["", *decision(results, k=k), "", *epoch_budget(results, extra_best_epochs=extra_best_epochs)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/gz1-study"))
    parser.add_argument("--folds", type=int, default=5, help="stratified folds of the train + validation galaxies")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seed", type=int, default=0, help="seeds the folds and the training")
    parser.add_argument("--table", action="store_true", help="print the table of the results so far and exit")
    parser.add_argument("--default-runs", type=Path,
                        help="a runs folder of `train` on the default build's own split: their best "
                             "validation epochs join the epoch-budget check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "study.csv"
    results = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    built = args.out / "datasets" / "gz1-default"
    if args.table:  # the dataset the results came from, as it is (None: counts left out)
        dataset = load_dataset(built) if built.exists() else None
    else:
        dataset = study_dataset(args.out)
    if not args.table:
        # Fold by fold, every model: a study stopped early still has paired folds.
        for fold in range(args.folds):
            for model in args.models:
                if not results.empty and ((results["model"] == model) & (results["fold"] == fold)
                                          & (results["seed"] == args.seed)).any():
                    continue
                row = run_fold(dataset, model, fold=fold, k=args.folds, seed=args.seed, out=args.out)
                results = pd.concat([results, pd.DataFrame([row])], ignore_index=True)
                results.to_csv(csv, index=False)
                logging.info("%s fold %d: %.3f (%d/%d) in %.0f s", model, fold, row["accuracy"], row["correct"],
                             row["n_scored"], row["seconds"])
    results = results[results["seed"] == args.seed] if not results.empty else results
    extra = default_split_best_epochs(args.default_runs) if args.default_runs else None
    text = (table(results, dataset, k=args.folds, extra_best_epochs=extra) if not results.empty
            else "No results yet.")
    (args.out / "study.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
