"""``python -m core compare RUN...``: side-by-side table, CSV, LaTeX and a self-contained HTML report."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command."""
    parser = subparsers.add_parser(
        "compare",
        help="compare runs: mean ± std over seeds, McNemar tests, CSV / LaTeX / HTML report",
        description="Compare finished runs (folders, ids or unique id prefixes; default: every finished run in "
                    "the registry). Prints a side-by-side table and writes runs.csv, summary.csv, "
                    "per_class.csv, mcnemar.csv, summary.tex and report.html into --out.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to compare (default: all finished runs)")
    parser.add_argument("--runs-dir", default=None, help="run registry folder (default: the runs_dir setting)")
    parser.add_argument("--out", default="reports/compare", help="output folder (default: reports/compare)")
    parser.add_argument("--dataset", default=None,
                        help="with no RUN: only runs trained on this dataset folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the runs, print the table and the McNemar tests, write the report files."""
    from pathlib import Path

    from core.errors import GalaxyMorphError
    from core.io import REPORT, check_replaceable
    from core.report import format_summary, mcnemar_table, summary_table, write_report
    from core.runs import resolve_run, scan_runs

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
    if not runs:
        raise GalaxyMorphError("no runs to compare. Train some with `python -m core train --dataset ...`.")
    print(format_summary(summary_table(runs)))
    tests = mcnemar_table(runs)
    if not tests.empty:
        print("\nMcNemar (same seed, shared test galaxies):")
        for row in tests.itertuples():
            print(f"  seed {row.seed}: {row.model_a} vs {row.model_b}: b={row.b} c={row.c} "
                  f"p={row.p_value:.3g} ({row.method})")
    paths = write_report(runs, args.out)
    print(f"\nwrote {', '.join(sorted(paths))} to {args.out}")
    return 0
