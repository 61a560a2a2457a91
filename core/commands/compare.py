"""``python -m core compare RUN...``: side-by-side table, CSV, LaTeX and a self-contained HTML report."""

from __future__ import annotations

import argparse
import shutil


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command."""
    parser = subparsers.add_parser(
        "compare",
        help="compare runs: intervals, Holm-corrected paired tests, CSV / standalone LaTeX / HTML report",
        description="Compare finished runs (folders, ids or unique id prefixes; default: every finished run in "
                    "the registry), one dataset and protocol at a time. Prints a side-by-side table with 95 % "
                    "intervals and the verdict for every model pair, and writes runs.csv, summary.csv, per_class.csv, "
                    "mcnemar.csv, tests.csv, summary.tex and report.html into --out (into --out/DATASET-HASH/ "
                    "per dataset when the runs come from several).",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to compare (default: all finished runs)")
    parser.add_argument("--runs-dir", default=None, help="run registry folder (default: the runs_dir setting)")
    parser.add_argument("--out", default="reports/compare", help="output folder (default: reports/compare)")
    parser.add_argument("--dataset", default=None,
                        help="with no RUN: only runs trained on this dataset folder")
    parser.add_argument("--pool-datasets", action="store_true",
                        help="compare runs of different datasets or protocols in one table (off: one report each)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the runs, print the table and the verdicts per dataset, write the report files."""
    import sys
    from pathlib import Path

    from core.errors import GalaxyMorphError, shorten_message
    from core.io import REPORT, check_replaceable, out_of_space_as_error
    from core.learn.report import by_dataset, dataset_name, deduplicate, finished
    from core.runs import resolve_run, scan_runs, split_damaged

    check_replaceable(args.out, kind=REPORT)  # before any table is printed: the report could not be written
    # A run that cannot be read stops the comparison: leaving it out would change the result
    # without anyone noticing.
    problems: list[str] = []
    if args.runs:
        runs = []
        for ref in args.runs:
            try:
                run = resolve_run(ref, runs_dir=args.runs_dir)
                run.metrics  # noqa: B018 - reads and checks metrics.json now, before any output
                runs.append(run)
            except GalaxyMorphError as exc:
                problems.append(str(exc))
    else:
        good, damaged = scan_runs(args.runs_dir)
        problems = [message for _, message in damaged]
        runs = [r for r in good if r.status == "finished"]
        if args.dataset:
            wanted = str(Path(args.dataset).resolve())
            runs = [r for r in runs if r.config.get("dataset", {}).get("path") == wanted]
    if problems:
        more = f" (and {len(problems) - 1} more run(s) that cannot be read)" if len(problems) > 1 else ""
        raise GalaxyMorphError(problems[0] + more)
    # Damaged predictions or history leave that run out, said on stderr; the others are compared.
    runs, unusable = split_damaged(runs)
    for _, message in unusable:
        print(f"damaged, left out: {shorten_message(message)}", file=sys.stderr)
    if not runs:
        raise GalaxyMorphError("no runs to compare. Train some with `python -m core train --dataset ...`.")
    groups = by_dataset(deduplicate(finished(runs)))
    _flag_changed_datasets([r for group in groups.values() for r in group])
    if args.pool_datasets or len(groups) == 1:
        groups = {"all": [r for group in groups.values() for r in group]}
    outs = [Path(args.out) if len(groups) == 1 else Path(args.out) / dataset_name(group) for group in groups.values()]
    # On a full disk a report folder this call created goes with the error: no partial report is left.
    created = not Path(args.out).exists()
    with out_of_space_as_error(args.out, cleanup=lambda: shutil.rmtree(args.out, ignore_errors=True) if created else None):
        _write_reports(args, groups, outs)
    return 0


def _write_reports(args: argparse.Namespace, groups: dict, outs: list) -> None:
    from pathlib import Path

    from core.io import REPORT, atomic_write_json, check_replaceable
    from core.learn.report import dataset_name, write_report

    if len(groups) > 1:
        for out in outs:
            check_replaceable(out, kind=REPORT)
        # One report per dataset inside --out, which is marked as a report folder too, so the
        # next compare into it is allowed.
        atomic_write_json(Path(args.out) / "report.json", {
            "written_by": "galaxy-morph compare", "runs": [r.id for group in groups.values() for r in group],
            "reports": [out.name for out in outs]})
    for group, out in zip(groups.values(), outs):
        if len(groups) > 1:
            print(f"\n=== dataset {dataset_name(group)} ({group[0].config.get('dataset', {}).get('path')}) ===")
        _print_comparison(group, pool_datasets=args.pool_datasets)
        paths = write_report(group, out, pool_datasets=args.pool_datasets)
        print(f"\nwrote {', '.join(sorted(paths))} to {out}")


def _flag_changed_datasets(runs: list) -> None:
    """Say which runs were trained on a dataset folder that has been rebuilt since: their figures
    describe data that is no longer there (they are still compared, as trained)."""
    import sys

    from core.prepare.provenance import dataset_change

    for run in runs:
        problem = dataset_change(run)
        if problem is not None:
            print(f"warning: dataset changed: {problem}", file=sys.stderr)


def _print_comparison(runs: list, *, pool_datasets: bool) -> None:
    from core.learn.report import (best_model, comparison_title, format_p, format_summary, mcnemar_table, model_label,
                             paired_tests, per_class_recall, pooled_note, summary_table, verdict_lines)

    summary = summary_table(runs, pool_datasets=pool_datasets)
    tests = paired_tests(runs)
    print(comparison_title(runs))
    print(format_summary(summary, best=best_model(tests, list(summary.index))))
    print(f"\nRecall per class [95 % Wilson interval on the pooled counts; {pooled_note(runs)}]:")
    print(per_class_recall(runs).rename(columns=model_label).to_string())
    if tests.empty:
        return
    print("\nVerdict:")
    for line in verdict_lines(runs):
        print(f"  {line}")
    print("\nPaired tests per model pair:")
    for row in tests.itertuples():
        print(f"  {model_label(row.model_a)} vs {model_label(row.model_b)} [{row.family}]: {row.method}, n = {row.n:,.0f}, "
              f"uncorrected {format_p(row.p_value)}, Holm-corrected {format_p(row.p_holm)}")
    print("\nMcNemar per split and seed (shared test galaxies; uncorrected p-values):")
    for row in mcnemar_table(runs).itertuples():
        print(f"  {row.split} seed {row.seed}: {model_label(row.model_a)} vs {model_label(row.model_b)}: b={row.b} "
              f"c={row.c} {format_p(row.p_value)} ({row.method})")
