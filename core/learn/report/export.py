"""The comparison on disk: CSV (inert in spreadsheets), a standalone LaTeX document and a self-contained
HTML report, written by :func:`write_report` (``python -m core compare``)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from core.io import REPORT, atomic_write_json, atomic_write_text, check_replaceable
from core.learn.report.figures import FIGURE_TITLES, figures
from core.learn.report.tables import (
    FAMILIES,
    best_model,
    comparable,
    experiment_protocol,
    in_model_order,
    mcnemar_table,
    model_label,
    paired_tests,
    per_class_recall,
    per_class_table,
    runs_table,
    summary_table,
)
from core.learn.report.text import (
    METRIC_LABELS,
    best_note,
    comparison_title,
    format_p,
    report_notes,
    run_name,
    summary_cells,
    verdict_lines,
)
from core.runs import Run

# All ten characters that LaTeX gives a meaning to, in one pass (so the backslashes added for
# one are never escaped again); a line break would end the table row's paragraph. The non-ASCII
# signs of the tables and verdicts become LaTeX's own, so the file needs no inputenc or fontenc, and
# < and > print as themselves (not ¡ and ¿ in the default OT1 font encoding).
_LATEX_SPECIALS = str.maketrans({
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "\n": " ", "\r": " ",
    "<": r"$<$", ">": r"$>$", "±": r"$\pm$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "–": "--",
    "—": "---", "·": r"\textperiodcentered{}", "→": r"$\rightarrow$",
})

# The only packages summary.tex loads (tests/test_report.py checks it and compiles it when pdflatex is there).
LATEX_PACKAGES = ("booktabs",)

#: What a spreadsheet reads as the start of a formula (or a DDE command) in a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_csv(table: pd.DataFrame) -> str:
    """``table`` as CSV (no index) that a spreadsheet opens as plain text: every text cell and
    header starting with one of :data:`FORMULA_STARTS` gets a leading ``'`` (OWASP's CSV injection
    advice), so a galaxy, class, model or dataset named ``=HYPERLINK(...)`` stays a name. Numbers
    are left alone: ``-0.5`` is a number, not a formula."""

    def inert(value: object) -> object:
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value

    safe = table.rename(columns=inert)
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column].dtype):
            safe[column] = safe[column].map(inert)
    return safe.to_csv(index=False)


def latex_escape(text: str) -> str:
    r"""``text`` as literal LaTeX text: a model label ``$\input{/etc/passwd}$`` is printed, not run.

    Examples
    --------
    >>> print(latex_escape(r"$\input{x}$ 50% a_b ~^ --models"))
    \$\textbackslash{}input\{x\}\$ 50\% a\_b \textasciitilde{}\textasciicircum{} -{}-models
    """
    # "--" and "---" are dashes to TeX: a command's "--models" must print as two hyphens.
    text = re.sub(r"-(?=-)", "-\x00", str(text).replace("\x00", "")).translate(_LATEX_SPECIALS).replace("\x00", "{}")
    # Any other character outside ASCII would need inputenc and a font that has it: a placeholder instead.
    return "".join(c if ord(c) < 128 else "?" for c in text)


def latex_table(summary: pd.DataFrame, *, best: str | None = None,
                caption: str = "Test-set comparison (mean ± std over runs, 95 % interval in brackets).") -> str:
    """A ``booktabs`` LaTeX table of the summary: metrics by row (accuracy, then its n), models by column under
    their display names; the accuracy of ``best`` (significantly better than every other network) in bold."""
    models = list(summary.index)
    cells = summary_cells(summary)
    out = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\caption{{{latex_escape(caption)}}}",
           r"\begin{tabular}{l" + "r" * len(models) + "}", r"\toprule",
           "Metric & " + " & ".join(latex_escape(model_label(m)) for m in models) + r" \\", r"\midrule"]
    for label, row in cells.iterrows():
        texts = [latex_escape(row[m]) for m in models]
        if label == METRIC_LABELS["accuracy"] and best in models:
            texts[models.index(best)] = rf"\textbf{{{texts[models.index(best)]}}}"
        out.append(f"{latex_escape(label)} & " + " & ".join(texts) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def latex_tests_table(tests: pd.DataFrame) -> str:
    """The paired tests as a ``booktabs`` table: pair, family, n, accuracy difference, uncorrected and
    Holm-corrected p, with display names."""
    out = [r"\begin{table}[ht]", r"\centering", r"\small",
           r"\caption{Paired tests between models. p: uncorrected; Holm: corrected within its family "
           r"(pairs of networks; each network against the baseline).}",
           r"\begin{tabular}{llrrrr}", r"\toprule",
           r"Pair & Family & n & Difference & p & Holm \\", r"\midrule"]
    for row in tests.itertuples():
        pair = f"{model_label(row.model_a)} vs {model_label(row.model_b)}"
        out.append(" & ".join([latex_escape(pair), latex_escape(row.family), f"{row.n:,.0f}".replace(",", "{,}"),
                               f"{row.difference:+.3f}", latex_escape(format_p(row.p_value)[4:].strip()),
                               latex_escape(format_p(row.p_holm)[4:].strip())]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def latex_document(summary: pd.DataFrame, tests: pd.DataFrame, *, best: str | None, title: str,
                   notes: list[str]) -> str:
    """``summary.tex``: a standalone document (``pdflatex summary.tex``) with the title (models, dataset,
    protocol), the notes (verdict, what is pooled), the summary table and the paired tests. It loads only
    :data:`LATEX_PACKAGES`; each table can be pasted into slides as it is."""
    lines = [
        "% galaxy-morph model comparison: a standalone LaTeX document; compile with `pdflatex summary.tex`.",
        f"% Packages needed: {', '.join(LATEX_PACKAGES)} (in TeX Live's texlive-latex-recommended).",
        "% To paste a table into slides, copy from \\begin{table} to \\end{table} and load the same packages.",
        r"\documentclass{article}",
        *(rf"\usepackage{{{package}}}" for package in LATEX_PACKAGES),
        r"\begin{document}",
        rf"\section*{{{latex_escape(title)}}}",
        *(latex_escape(note) + "\n" for note in notes),
        latex_table(summary, best=best),
    ]
    if not tests.empty:
        lines.append(latex_tests_table(tests))
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def write_report(runs: list[Run], out_dir: str | Path, *, title: str | None = None,
                 pool_datasets: bool = False, excluded: list[Run] | tuple[Run, ...] = ()) -> dict[str, Path]:
    """Write the comparison into ``out_dir``: CSV tables, a LaTeX document and a self-contained HTML report.

    Files: ``runs.csv`` (one row per run), ``summary.csv`` (mean, std, interval and n per model),
    ``per_class.csv``, ``mcnemar.csv`` (per split and seed, uncorrected), ``tests.csv`` (the combined,
    Holm-corrected test per model pair), ``summary.tex`` (standalone: ``pdflatex summary.tex``),
    ``report.html`` (plotly.js inlined once, so the file opens offline), and ``report.json``, which
    marks the folder as a report this tool may rewrite. Every file names the protocol; the title
    (default :func:`comparison_title`) heads the LaTeX and HTML. ``out_dir`` must be absent, empty or
    such a report: nothing else is overwritten.

    Raises
    ------
    GalaxyMorphError
        If none of the runs has finished, they come from several datasets and ``pool_datasets`` is
        off, or ``out_dir`` holds anything but a report.
    """
    out = Path(out_dir)
    check_replaceable(out, kind=REPORT)
    done = in_model_order(comparable(runs, pool_datasets=pool_datasets))
    title = title or comparison_title(done, excluded=excluded)
    summary = summary_table(done, pool_datasets=pool_datasets)
    tests = paired_tests(done)
    best = best_model(tests, list(summary.index))
    notes = report_notes(done, summary, excluded=excluded)
    experiment = experiment_protocol(done)
    tables = {"runs.csv": runs_table(done), "summary.csv": summary.reset_index(),
              "per_class.csv": per_class_table(done).assign(protocol=experiment),
              "mcnemar.csv": mcnemar_table(done).assign(protocol=experiment, corrected=False),
              "tests.csv": tests.assign(protocol=experiment)}
    # The marker goes first, so a report cut off half-way is still known as ours next time.
    paths = {"report.json": atomic_write_json(out / "report.json", {
        "written_by": "galaxy-morph compare", "title": title, "protocol": experiment, "runs": [r.id for r in done],
        "left_out": [r.id for r in excluded]})}
    for name, table in tables.items():
        paths[name] = atomic_write_text(out / name, inert_csv(table))
    paths["summary.tex"] = atomic_write_text(out / "summary.tex", latex_document(summary, tests, best=best, title=title,
                                                                                 notes=notes))
    paths["report.html"] = atomic_write_text(out / "report.html", _html(title, notes, done, summary, tests,
                                                                        tables["mcnemar.csv"], best))
    return paths


_TEST_COLUMNS = {"model_a": "Model A", "model_b": "Model B", "family": "Holm family", "n": "Test galaxies (n)",
                 "acc_a": "Accuracy A", "acc_b": "Accuracy B", "difference": "A − B", "method": "Test",
                 "p_value": "p (uncorrected)", "p_holm": "p (Holm-corrected)", "better": "Significantly better"}

_MCNEMAR_COLUMNS = {"split": "Split", "seed": "Seed", "model_a": "Model A", "model_b": "Model B",
                    "n": "Test galaxies (n)", "acc_a": "Accuracy A", "acc_b": "Accuracy B",
                    "b": "A right, B wrong", "c": "A wrong, B right", "p_value": "p (uncorrected)", "method": "Test"}

_RUN_COLUMNS = {"label": "Run", "model": "Model", "seed": "Seed", "split": "Split", "protocol": "Protocol",
                "n_train": "Training galaxies", "n_test": "Test galaxies (n)", "accuracy": "Accuracy",
                "accuracy_lo": "Accuracy low (95 %)", "accuracy_hi": "Accuracy high (95 %)", "macro_f1": "Macro F1",
                "params": "Parameters", "train_seconds": "Train time (s)", "epochs_done": "Epochs", "best_epoch": "Best epoch"}


def readable_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired_tests` for reading: display names, column headings in words, the Holm family spelt out."""
    table = tests.copy()
    for column in ("model_a", "model_b", "better"):
        table[column] = table[column].map(lambda m: "–" if pd.isna(m) else model_label(m))
    table["family"] = table["family"].map(lambda f: FAMILIES.get(f, f))
    return table[list(_TEST_COLUMNS)].rename(columns=_TEST_COLUMNS)


def readable_mcnemar(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`mcnemar_table` for reading: display names and column headings in words (its p is uncorrected)."""
    table = table.copy()
    for column in ("model_a", "model_b"):
        table[column] = table[column].map(model_label)
    return table[list(_MCNEMAR_COLUMNS)].rename(columns=_MCNEMAR_COLUMNS)


def _html(title: str, notes: list[str], runs: list[Run], summary: pd.DataFrame, tests: pd.DataFrame,
          mcnemar_rows: pd.DataFrame, best: str | None) -> str:
    number = {"float_format": lambda v: f"{v:.4g}", "index": False}
    cells = summary_cells(summary).map(html.escape)
    if best is not None:
        cells.loc[METRIC_LABELS["accuracy"], best] = f"<b>{cells.loc[METRIC_LABELS['accuracy'], best]}</b>"
    cells.columns = [html.escape(model_label(m)) for m in cells.columns]
    said = verdict_lines(runs)
    context = " ".join(html.escape(n) for n in notes if n not in said)
    run_rows = runs_table(runs)
    run_rows["label"] = [run_name(r) for r in runs]
    run_rows["model"] = run_rows["model"].map(model_label)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}.note{color:#555}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<h2>Verdict</h2>" + "".join(f"<p>{html.escape(line)}</p>" for line in said),
             "<h2>Test-set metrics</h2>" + cells.to_html(escape=False),
             f"<p class='note'>{context} {'Bold: ' if best else ''}{html.escape(best_note(best))}</p>",
             "<h2>Recall per class [95 % Wilson interval on the pooled counts]</h2>"
             + per_class_recall(runs).rename(columns=model_label).to_html(),
             "<h2>Paired tests per model pair (Holm-corrected within each family)</h2>"
             + (readable_tests(tests).to_html(**number) if not tests.empty else "<p>No pairs.</p>")]
    include = "inline"
    for name, fig in figures(runs).items():
        parts.append(f"<h2>{html.escape(FIGURE_TITLES.get(name, name))}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
        include = False  # plotly.js is inlined once; later figures reuse it
    parts += ["<h2>Runs</h2>" + run_rows[list(_RUN_COLUMNS)].rename(columns=_RUN_COLUMNS).to_html(**number),
              "<h2>McNemar tests per split and seed (uncorrected p-values)</h2>"
              + (readable_mcnemar(mcnemar_rows).to_html(**number) if not mcnemar_rows.empty
                 else "<p>Fewer than two models share a seed.</p>"),
              "</body></html>"]
    return "\n".join(parts)
