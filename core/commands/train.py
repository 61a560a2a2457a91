"""``python -m core train``: train models on a dataset, one run folder per (model, seed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.learn.registry import FEATURES, entries
from core.spec import DEFAULT_MODELS, TrainSpec


def _models_help() -> str:
    """Every registered model with its display name, the registry's order (read when the parser is built)."""
    networks = ", ".join(f"{e.name} ({e.label})" for e in entries() if e.kind != FEATURES)  # registered ones
    others = ", ".join(f"{e.name} ({e.label}, on hand-made features: a floor for the networks)"
                       for e in entries(FEATURES))
    return f"{networks}; or {others} (default: {' '.join(DEFAULT_MODELS)})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    parser = subparsers.add_parser(
        "train",
        help="train the registered models (LeNet-5, AlexNet, ResNet, ...) on a dataset under one protocol",
        description=(
            "Train every MODEL for every SEED on the dataset's own split, with the same augmentation, class "
            "weights and early stopping, writing runs/RUN_ID/ (config, history, events, checkpoint, model, "
            "test predictions and metrics). A failing model does not stop the others. Options left out use "
            "the protocol's defaults (see docs/MODELS.md, section 'One protocol')."
        ),
    )
    parser.add_argument("--dataset", required=True, help="dataset folder written by `python -m core build`")
    # No argparse `choices`: an unknown name gets the project's one-line error naming every registered model.
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL", help=_models_help())
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="random seeds, one run each (default: 0)")
    parser.add_argument("--protocol", choices=("equal", "tuned"), default="equal",
                        help="equal: one recipe for every model (optimiser, schedule, epochs, batch, augmentation, "
                             "input size, epoch selection; each run records what its architecture cannot go "
                             "without); tuned: per-model recipes (default: equal)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default=None,
                        help="learning-rate schedule (default: per protocol; cosine under equal)")
    parser.add_argument("--folds", type=int, default=0,
                        help="stratified K-fold by object: one run per fold, test fold rotating, validation the next "
                             "fold (default 0: the dataset's own split)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="split seeds 0..R-1: repeated K-fold with --folds, else stratified re-splits (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: per model)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size per device (default: 32)")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default=None, help="default: per model")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: per model")
    parser.add_argument("--weight-decay", type=float, default=None, help="decoupled weight decay (default: per model)")
    parser.add_argument("--no-augment", action="store_true", help="no rotations/flips/shift/zoom during training")
    parser.add_argument("--shift", type=float, default=None, help="largest random shift, fraction of the side (0.05)")
    parser.add_argument("--zoom", type=float, default=None, help="largest random zoom, fraction (0.1)")
    parser.add_argument("--class-weight", choices=("balanced", "none"), default="balanced",
                        help="weight classes against imbalance (default: balanced)")
    parser.add_argument("--label-smoothing", type=float, default=None,
                        help="share of each target spread over all classes, against label noise (default 0)")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs; 0 = off (10)")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPU)")
    parser.add_argument("--xla", action="store_true", help="compile the train step with XLA (jit_compile)")
    parser.add_argument("--distribute", choices=("auto", "none", "mirrored", "multiworker"), default="auto",
                        help="auto: MirroredStrategy when >1 GPU; multiworker needs TF_CONFIG")
    parser.add_argument("--runs-dir", default=None, help="run registry folder (default: the runs_dir setting)")
    parser.add_argument("--resume", action="store_true",
                        help="skip experiments that finished; continue killed/stopped/failed ones from their checkpoint")
    parser.add_argument("--threads", default=None,
                        help="TensorFlow threads per run: a number, or 'share' (each dask worker's share of its "
                             "machine); default: this machine's cores, so a dask grid gives serial training's bytes")
    parser.add_argument("--progress-file", default=None, help="also append every progress event to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, print one line per run, return 1 if any run failed."""
    from core.io import append_jsonl
    from core.learn.experiment import train_spec
    from core.learn.grid import format_grid
    from core.progress import format_duration

    spec = TrainSpec.from_args(args)

    def show(event: dict[str, Any]) -> None:
        if args.progress_file:
            append_jsonl(args.progress_file, event)
        status = event.get("status")
        tty = sys.stderr.isatty()
        if status == "running" and event.get("val_loss") is None:
            if tty:
                sys.stderr.write(f"\r{event['model']} s{event['seed']} epoch {event['epoch']}/{event['epochs']} "
                                 f"batch {event['batch']}/{event['batches']} loss {event['loss']:.4f}   ")
                sys.stderr.flush()
            return
        if status == "running":
            sys.stderr.write(("\r" if tty else "") +
                             f"{event['model']} s{event['seed']} epoch {event['epoch']}/{event['epochs']}: "
                             f"loss {event['loss']:.4f} acc {event['accuracy']:.3f} val_loss {event['val_loss']:.4f} "
                             f"val_acc {event['val_accuracy']:.3f} ({format_duration(event.get('seconds'))})\n")
        elif status == "grid":
            sys.stderr.write(("\r" if tty else "") + format_grid(event) + "\n")
        elif status == "finished":
            sys.stderr.write(f"{event['model']} s{event['seed']}: finished, test accuracy "
                             f"{event.get('test_accuracy', float('nan')):.3f}\n")
        sys.stderr.flush()

    outcomes = train_spec(spec, runs_dir=args.runs_dir, resume=args.resume, progress_callback=show,
                          threads=args.threads)
    for o in outcomes:
        acc = "" if o["accuracy"] is None else f" test accuracy {o['accuracy']:.3f}"
        err = f" ({o['error']})" if o["error"] else ""
        where = "" if o.get("fold") is None else f" fold {o['fold']}"
        where += "" if o.get("split_seed") is None else f" split seed {o['split_seed']}"
        where += f" on {o['worker']}" if o.get("worker") else ""
        print(f"{o['model']} seed {o['seed']}{where}: {o['status']}{acc}{err} -> {o['run_dir']}")
    return 1 if any(o["status"] == "failed" for o in outcomes) else 0
