"""Which early-stopping patience? Judged on validation curves only, without training again.

Every finished run records its validation loss per epoch (``history.csv``). Early stopping with a
smaller patience than the one a run was trained with would have stopped on the same curve, so
:func:`core.learn.training.early_stopping_replay` tells exactly where, and which epoch's weights it
would have restored. This script replays patiences up to the trained one for every finished run
of a runs folder and prints, per model, the mean epochs trained, the best validation loss reached
and the validation accuracy of the restored weights. The test split is never read.

Usage::

    python benchmarks/study_patience.py --runs-dir runs            # every finished run
    python benchmarks/study_patience.py --runs-dir runs --dataset data/datasets/h3

It also checks the replay: with the run's own patience it must give the run's recorded epochs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runs import scan_runs  # noqa: E402
from core.learn.training import early_stopping_replay  # noqa: E402

PATIENCES = (3, 5, 7, 10)


def replay_runs(runs_dir: Path, *, dataset: str | None = None) -> pd.DataFrame:
    """One row per (finished run, patience <= its own): epochs, best epoch, val loss and accuracy there."""
    rows = []
    good, _ = scan_runs(runs_dir)
    for run in good:
        params = run.config.get("params", {})
        if run.status != "finished" or (dataset and run.config.get("dataset", {}).get("path") != dataset):
            continue
        history = run.history
        if history.empty or "val_loss" not in history:
            continue
        losses = history["val_loss"].to_numpy(dtype=float)
        trained_with = int(params.get("patience", 0))
        own = early_stopping_replay(losses, trained_with)
        if own[0] != len(losses):
            raise AssertionError(f"{run.id}: replay with patience {trained_with} stops at {own[0]}, "
                                 f"the run trained {len(losses)} epochs")
        budget_hit = len(losses) == int(params.get("epochs", -1))
        for patience in (p for p in PATIENCES if trained_with == 0 or p <= trained_with):
            epochs, best = early_stopping_replay(losses, patience)
            rows.append({"model": run.model_name, "run": run.id, "patience": patience, "epochs": epochs,
                         "best_epoch": best, "val_loss": losses[best - 1],
                         "val_accuracy": float(history["val_accuracy"].iloc[best - 1]),
                         "budget_hit": budget_hit, "still_improving": budget_hit and own[1] == len(losses)})
    return pd.DataFrame(rows)


def summary(replayed: pd.DataFrame) -> pd.DataFrame:
    """Per model and patience: runs, mean epochs, mean best val loss, mean val accuracy (± sd)."""
    grouped = replayed.groupby(["model", "patience"])
    return pd.DataFrame({
        "runs": grouped["run"].nunique(),
        "epochs": grouped["epochs"].mean().round(1),
        "val_loss": grouped["val_loss"].mean().round(4),
        "val_acc": grouped["val_accuracy"].mean().round(3),
        "val_acc_sd": grouped["val_accuracy"].std().round(3),
    }).reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--dataset", default=None, help="only runs trained on this dataset path")
    args = parser.parse_args(argv)
    replayed = replay_runs(Path(args.runs_dir), dataset=args.dataset)
    if replayed.empty:
        print(f"no finished run with a history in {args.runs_dir}")
        return 1
    print(summary(replayed).to_string(index=False))
    budget = replayed[replayed["patience"] == replayed["patience"].max()]
    per_run = budget.drop_duplicates("run")
    print(f"\nruns that used their whole epoch budget: {int(per_run['budget_hit'].sum())} of {len(per_run)}; "
          f"of those still improving at the last epoch: {int(per_run['still_improving'].sum())}")
    worse = replayed.merge(budget[["run", "val_loss"]], on="run", suffixes=("", "_longest"))
    worse = worse.assign(lost=worse["val_loss"] - worse["val_loss_longest"])
    print("mean validation loss given up against the longest patience, per patience: "
          + ", ".join(f"{p}: {np.mean(g['lost']):.4f}" for p, g in worse.groupby("patience")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
