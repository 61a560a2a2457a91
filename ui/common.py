"""Widgets and styling shared by the dashboard's pages (the UI layer; ``core`` never imports this).

Colours live in :mod:`ui.palette`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import jobs

from core.learn import report
from core.config import Settings, get_settings
from core.acquire.counts import SourceCounts
from core.errors import GalaxyMorphError
from core.io import read_jsonl
from core.progress import format_duration
from core.runs import DAMAGED
from core.spec import TrainSpec, spec_from_argv
from ui.services import sources as source_service


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and escaping all of
# them also disarms what Streamlit adds on top (``$`` maths, ``:red[...]`` directives, raw HTML).
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def md(value: object) -> str:
    """``value`` as literal text inside Markdown (any ``st.markdown``, caption, label or message).

    A galaxy name such as ``![b](http://host/x.png)`` would otherwise make every browser that
    shows it fetch that address; names, classes, model labels and paths come from files and
    users, so none of them is trusted as Markdown.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _one_line(value))


def md_code(value: object) -> str:
    """``value`` as an inline code span (monospace, nothing inside it interpreted)."""
    text = _one_line(value)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _one_line(value: object) -> str:
    # A line break would end the paragraph the value sits in, and a space next to the ``**``
    # around it would keep the bold from closing.
    return re.sub(r"[\r\n]+", " ", str(value)).strip()


def settings() -> Settings:
    """The settings, read now (tests point ``GALAXY_MORPH_DATA_DIR`` at a tmp folder)."""
    return get_settings()


def model_label(model: str) -> str:
    """``lenet5`` -> ``LeNet-5`` (:func:`core.learn.report.model_label`: the HTML report names models alike)."""
    return report.model_label(model)


def source_kind(path: Path | str) -> str:
    """A human name for the kind of source a folder is (built-in sample, NED cache, import)."""
    return source_service.source_kind(path).label


def acknowledge(source_path: Path | str | None) -> None:
    """Show the credit its kind asks for (the SDSS / Galaxy Zoo one) under a source's images."""
    credit = source_service.credit(source_path)
    if credit:
        st.caption(credit)


def bind(widget_key: str, state_key: str) -> None:
    """Before drawing a widget, give it the canonical value ``state_key`` (set by any selector)."""
    if state_key in st.session_state and st.session_state.get(widget_key) != st.session_state[state_key]:
        st.session_state[widget_key] = st.session_state[state_key]


def adopt(widget_key: str, state_key: str, then: Callable[[], None] | None = None) -> None:
    """Widget callback: make the widget's new value the canonical ``state_key``."""
    st.session_state[state_key] = st.session_state[widget_key]
    if then is not None:
        then()


def stop_with(message: str, *, kind: str = "info") -> None:
    """Show what to do next and end the page here (an empty state)."""
    getattr(st, kind)(message)
    st.stop()


# The keyboard's focus ring: thick and amber, unlike the selected page's shaded background, so a
# Tab press shows where it landed in both themes.
_FOCUS_STYLE = """<style>
:focus-visible, a:focus-visible, button:focus-visible, [role="tab"]:focus-visible, [role="option"]:focus-visible {
  outline: 3px solid #E69F00 !important; outline-offset: 2px !important; }
</style>"""


def focus_style() -> None:
    """Draw a visible keyboard focus on every control (the router calls it once per run)."""
    st.html(_FOCUS_STYLE)


def page_header(title: str, caption: str) -> None:
    """The page title with a one-line explanation of what the page is for."""
    st.title(title)
    st.caption(caption)


def _count(value: object) -> int:
    """A progress count from a progress file: a whole number >= 0, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def damaged_notice(items: Iterable[tuple[object, str]], *, what: str, key: str) -> None:
    """List run folders or datasets that cannot be read, with what to do, as plain text.

    ``items`` are ``(folder, message)``; nothing is shown when there are none.
    """
    rows = [{what: Path(str(folder)).name, "problem": message} for folder, message in items]
    if not rows:
        return
    st.warning(f"{len(rows)} {what} folder{'s' if len(rows) > 1 else ''} cannot be read; the table says which "
               "file is damaged and what to do.")
    st.dataframe(rows, hide_index=True, width="stretch", key=key)


def changed_dataset_notice(items: Iterable[tuple[object, str]], *, key: str) -> None:
    """Warn about runs whose dataset folder was rebuilt or altered after training.

    ``items`` are ``(run folder, message)``; nothing is shown when there are none.
    """
    rows = [{"run": Path(str(folder)).name, "problem": message} for folder, message in items]
    if not rows:
        return
    were = "runs were" if len(rows) > 1 else "run was"
    st.warning(f"{len(rows)} finished {were} trained on a dataset that has changed since: their images "
               "and classifications are not shown. Retrain them, or rebuild the old parameters under "
               "another dataset name.")
    st.dataframe(rows, hide_index=True, width="stretch", key=key)


def damaged_runs(table: pd.DataFrame) -> list[tuple[str, str]]:
    """``(folder, message)`` of the damaged rows of :func:`core.runs.list_runs`'s table."""
    if table.empty:
        return []
    bad = table[table["status"] == DAMAGED]
    return list(zip(bad["path"], bad["problem"]))


COUNTS = ("rows", "objects", "labelled")


def count_metrics(
    counted: SourceCounts, scheme: str, columns: Sequence[Any] | None = None, *, show: Sequence[str] = COUNTS
) -> None:
    """Catalogue rows, objects and labelled objects (or those in ``show``), named and explained
    the same on every page, one per column."""
    dropped = ""
    if counted.conflicts:
        dropped = f" {counted.conflicts:,} listed under conflicting types are left out ({counted.policy})."
    metrics = {
        "rows": ("Catalogue rows", counted.rows,
                 "Lines of the catalogue; a galaxy can have several (aliases, one per image)."),
        "objects": ("Objects", counted.objects,
                    f"Distinct galaxies: {counted.names:,} names, those at the same position counted once."),
        "labelled": ("Labelled objects", counted.labelled,
                     f"Objects the {scheme} scheme puts in one of its classes; the classes add up to it.{dropped}"),
    }
    columns = columns if columns is not None else st.columns(len(show))
    for column, name in zip(columns, show):
        label, value, explanation = metrics[name]
        column.metric(label, f"{value:,}", help=explanation)


def job_table(job_list: Iterable[jobs.Job]) -> list[dict[str, object]]:
    """Rows for a compact table of jobs (label, status, started, progress, and why a record is not trusted)."""
    rows = []
    for job in job_list:
        event = jobs.job_progress(job) or {}
        done, total = event.get("done"), event.get("total")
        rows.append(
            {
                "job": job.label,
                "status": jobs.job_status(job),
                "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(job.started)),
                "progress": f"{done}/{total if total is not None else '?'}" if done is not None else "",
                "failed": event.get("failed", 0),
                "id": job.id,
                "problem": jobs.job_problem(job) or "",
            }
        )
    return rows


STATUS_ICONS = {
    "running": ":material/hourglass_top:",
    "finished": ":material/check_circle:",
    "failed": ":material/error:",
    "stopped": ":material/stop_circle:",
}


def job_panel(job_id: str, *, key: str) -> None:
    """Live progress of one background job: bar, figures, failures, log tail, stop.

    It reads only the job's files, so it works after a reload, from another tab or a new session.
    While the job runs, a fragment redraws the panel every 2 s (the rest of the page does not
    rerun); once it has ended, the panel is drawn once and nothing reruns.
    """
    try:
        job = jobs.load_job(job_id)
    except jobs.JobError as exc:
        st.warning(md(exc))
        return
    problem = jobs.job_problem(job)
    if problem is not None:
        # The record may be crafted: its label and paths are shown as plain text, nothing else.
        st.warning(f"Job {job.id} is not trusted, so it is not shown or stopped from here. Delete its record "
                   "in the jobs folder if you did not start it.")
        st.text(f"{job.label}: {problem}")
        return
    if jobs.job_status(job) == jobs.RUNNING:
        _live_job_panel(job_id, key=key)
    else:
        _draw_job_panel(job, key=key)


@st.fragment(run_every=2.0)
def _live_job_panel(job_id: str, *, key: str) -> None:
    job = jobs.load_job(job_id)
    if jobs.job_status(job) != jobs.RUNNING:
        # The whole page redraws what the job produced, and without this fragment's timer.
        st.rerun()
    _draw_job_panel(job, key=key)


def _draw_job_panel(job: jobs.Job, *, key: str) -> None:
    status = jobs.job_status(job)
    fraction, summary, figures = job_figures(job, status)
    st.progress(fraction, text=f"{STATUS_ICONS[status]} **{md(job.label)}** — {status} · {md(summary)}")
    for column, (label, value) in zip(st.columns(len(figures)), figures):
        column.metric(label, value)
    if status == jobs.RUNNING:
        if st.button("Stop", key=f"{key}_stop", icon=":material/stop_circle:"):
            jobs.stop_job(job)
            st.toast(f"Stopping {md(job.label)}; finished work is kept.")
    elif status == jobs.FAILED:
        exit_record = jobs.job_exit(job)
        code = exit_record["returncode"] if exit_record else "killed"
        reason = failure_line(jobs.tail_log(job, lines=40))
        st.error(f"{md(job.label)} failed (exit {md(code)})" + (f": {md(reason)}" if reason else ". The last lines of "
                 "its log are below."))
    log = jobs.tail_log(job, lines=12)
    if log:
        with st.expander("Log", expanded=status == jobs.FAILED):
            st.code(log, language=None)


def failure_line(log: str) -> str:
    """The reason a command gave for failing (its last ``error: ...`` line), without the prefix; ``""`` if none.

    Shown wrapped in the error box: in the log's code block a long reason ran off to the right."""
    for line in reversed(log.splitlines()):
        if line.startswith("error: "):
            return line.removeprefix("error: ").strip()
    return ""


def job_figures(job: jobs.Job, status: str) -> tuple[float, str, list[tuple[str, str]]]:
    """What a job panel shows: the fraction done, a one-line summary and ``(label, value)`` figures.

    Training jobs count runs, epochs and batches (their events carry no item count); other jobs
    count items. Values are short, so five of them fit side by side on a 1280-px screen.
    """
    exit_record = jobs.job_exit(job) or {}
    ended = exit_record.get("ended") if status != jobs.RUNNING else None
    elapsed = format_duration((ended or time.time()) - job.started)
    if job.kind == "train":
        return _training_figures(job, status, elapsed)
    event = jobs.job_progress(job) or {}
    done, total = _count(event.get("done")), _count(event.get("total")) or None
    if status == jobs.RUNNING and not done and total is None:
        return 0.0, "starting …", [("Done", "—"), ("Rate", "—"), ("ETA", "—"), ("Failed", "0"),
                                   ("Elapsed", elapsed)]
    fraction = min(1.0, done / total) if total else (1.0 if status == jobs.FINISHED else 0.0)
    step = f" ({event['step']})" if event.get("step") else ""
    summary = f"{done:,} of {total:,} done{step}" if total else f"{done:,} done{step}"
    eta = format_duration(event.get("eta")) if status == jobs.RUNNING else "—"
    rate = event.get("rate")
    rate = f"{rate:.1f}/s" if isinstance(rate, (int, float)) and not isinstance(rate, bool) else "—"
    return fraction, summary, [("Done", f"{done:,}"), ("Rate", rate), ("ETA", eta),
                               ("Failed", f"{_count(event.get('failed')):,}"), ("Elapsed", elapsed)]


def _training_figures(job: jobs.Job, status: str, elapsed: str) -> tuple[float, str, list[tuple[str, str]]]:
    events = [e for e in read_jsonl(job.progress_file) if e.get("epoch") is not None] if job.progress_file else []
    n_runs = _planned_runs(job)
    finished = len({e.get("run_id") for e in events if e.get("status") == "finished"})
    if not events:
        summary = "starting … (loading TensorFlow and the dataset)" if status == jobs.RUNNING else "no epoch recorded"
        return (1.0 if status == jobs.FINISHED else 0.0), summary, [
            ("Run", f"0 of {n_runs}"), ("Epoch", "—"), ("Batch", "—"), ("ETA", "—"), ("Elapsed", elapsed)]
    last = events[-1]
    epoch, epochs = _count(last.get("epoch")), _count(last.get("epochs")) or 1
    batch, batches = _count(last.get("batch")), _count(last.get("batches")) or 1
    current = 0.0 if last.get("status") == "finished" else ((max(epoch, 1) - 1) + batch / batches) / epochs
    fraction = 1.0 if status == jobs.FINISHED else min(1.0, (finished + current) / n_runs)
    eta = "—"
    if status == jobs.RUNNING and fraction > 0:
        spent = time.time() - job.started
        eta = format_duration(spent * (1 - fraction) / fraction)
    run_number = finished if last.get("status") == "finished" or status != jobs.RUNNING else finished + 1
    summary = f"{model_label(str(last.get('model')))} seed {last.get('seed')}, epoch {epoch} of {epochs}"
    return fraction, summary, [("Run", f"{min(run_number, n_runs)} of {n_runs}"), ("Epoch", f"{epoch}/{epochs}"),
                               ("Batch", f"{batch}/{batches}"), ("ETA (at most)", eta), ("Elapsed", elapsed)]


def _planned_runs(job: jobs.Job) -> int:
    """How many runs a training job trains, from the spec its record keeps (its command line for a
    job started without one)."""
    try:
        spec = TrainSpec.from_dict({k: v for k, v in job.spec.items() if k != "kind"}) if job.spec \
            else spec_from_argv(TrainSpec, job.command[3:])
    except (GalaxyMorphError, SystemExit):  # argparse exits on a command line it cannot read
        return 1
    return spec.n_runs
