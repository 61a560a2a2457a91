"""``python -m core train``: train models on a dataset, one run folder per (model, seed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.fields import add_spec_options
from core.spec import TrainSpec


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
    add_spec_options(parser, TrainSpec)  # every choice of the training: a TrainSpec field (core.spec)
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
