"""``python -m core evaluate RUN...``: print the test-set metrics of runs (or list the registry)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="print per-run test metrics (accuracy, balanced accuracy, F1, per-class scores, confusion, ECE)",
        description="Print the stored test-set evaluation of each RUN (a run folder, id or unique id prefix). "
                    "Without RUN, list every run in the registry with its status.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run folders or ids (default: list all runs)")
    parser.add_argument("--runs-dir", default=None, help="run registry folder (default: the runs_dir setting)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the metrics; a run that cannot be read is reported (exit 2) and the others still print."""
    from core.errors import GalaxyMorphError
    from core.runs import list_runs, resolve_run

    if not args.runs:
        table = list_runs(args.runs_dir)
        if table.empty:
            print("no runs yet. Train some with `python -m core train --dataset ...`.")
            return 0
        columns = ["id", "status", "accuracy", "balanced_accuracy", "macro_f1", "epochs_done"]
        print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        problems = [p for p in table["problem"] if p]
        for problem in problems:
            print(f"error: {problem}")
        return 2 if problems else 0
    failed = 0
    for ref in args.runs:
        try:
            print(format_run(resolve_run(ref, runs_dir=args.runs_dir)))
        except GalaxyMorphError as exc:
            print(f"error: {exc}")
            failed += 1
    return 2 if failed else 0


def format_run(run) -> str:  # noqa: ANN001 - a core.runs.Run, imported lazily
    """A run's metrics as a short text block; a metric the run did not record shows as ``–``."""
    m = run.metrics
    head = f"{run.id}  ({run.model_name}, seed {run.seed}, status {run.status})"
    if not m:
        return head + "\n  no test metrics yet."

    def f(key: str, spec: str) -> str:
        value = m.get(key)
        return "–" if value is None else format(value, spec)

    lines = [head,
             f"  accuracy {f('accuracy', '.3f')}  balanced accuracy {f('balanced_accuracy', '.3f')}  macro F1 "
             f"{f('macro_f1', '.3f')}  ROC AUC {f('roc_auc_macro', '.3f')}  ECE {f('ece', '.3f')}",
             f"  {f('params', ',')} parameters, trained {f('train_seconds', '.0f')} s over {f('epochs_done', 'd')} epochs "
             f"(best {f('best_epoch', 'd')}), inference {f('inference_img_per_s', '.0f')} img/s, n_test {f('n_test', 'd')}",
             f"  {'class':<14}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>9}"]
    for cls, s in m.get("per_class", {}).items():
        lines.append(f"  {cls:<14}{s['precision']:>10.3f}{s['recall']:>10.3f}{s['f1']:>10.3f}{s['support']:>9d}")
    lines.append("  confusion (rows true, columns predicted): " + " | ".join(
        " ".join(f"{v:d}" for v in row) for row in m.get("confusion", [])))
    return "\n".join(lines)
