"""Widgets and styling shared by the dashboard's pages (the UI layer; ``core`` never imports this).

Colours live in :mod:`ui.palette`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.catalogue import source_kind as catalogue_kind
from core.config import Settings, get_settings
from core.progress import format_duration
from core.runs import DAMAGED

MODEL_NAMES = {"lenet5": "LeNet-5", "alexnet": "AlexNet", "resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50"}

KIND_NAMES = {
    "sample": "built-in synthetic sample",
    "gz1": "built-in SDSS / Galaxy Zoo 1 sample",
    "ned": "NED cache",
    "imported": "imported folder",
    "folder": "catalogue folder",
}
GZ1_ACKNOWLEDGEMENT = (
    "Images: Sloan Digital Sky Survey (SDSS DR7); labels: Galaxy Zoo 1 (Lintott et al. 2008, "
    "MNRAS 389, 1179; Lintott et al. 2011, MNRAS 410, 166). Funding for the SDSS and SDSS-II has "
    "been provided by the Alfred P. Sloan Foundation, the Participating Institutions, the NSF, "
    "the U.S. DOE, NASA, the Japanese Monbukagakusho, the Max Planck Society and HEFCE."
)


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
    """``lenet5`` -> ``LeNet-5``."""
    return MODEL_NAMES.get(model, model)


def source_kind(path: Path | str) -> str:
    """A human name for the kind of source a folder is (built-in sample, NED cache, import)."""
    return KIND_NAMES.get(catalogue_kind(Path(path)), "catalogue folder")


def acknowledge(source_path: Path | str | None) -> None:
    """Show the SDSS / Galaxy Zoo credit under images of the shipped GZ1 sample."""
    if source_path is not None and Path(source_path).name == "gz1":
        st.caption(GZ1_ACKNOWLEDGEMENT)


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
    """Warn about runs whose dataset folder was rebuilt or altered after training (``(run folder, message)``)."""
    rows = [{"run": Path(str(folder)).name, "problem": message} for folder, message in items]
    if not rows:
        return
    st.warning(f"{len(rows)} finished run{'s were' if len(rows) > 1 else ' was'} trained on a dataset that has "
               "changed since: their images and classifications are not shown. Retrain them, or rebuild the "
               "old parameters under another dataset name.")
    st.dataframe(rows, hide_index=True, width="stretch", key=key)


def damaged_runs(table: pd.DataFrame) -> list[tuple[str, str]]:
    """``(folder, message)`` of the damaged rows of :func:`core.runs.list_runs`'s table."""
    if table.empty:
        return []
    bad = table[table["status"] == DAMAGED]
    return list(zip(bad["path"], bad["problem"]))


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


@st.fragment(run_every=2.0)
def job_panel(job_id: str, *, key: str) -> None:
    """Live progress of one background job: bar, counts, rate, ETA, failures, log tail, stop.

    A fragment that re-renders itself every 2 s (the rest of the page does not rerun); it reads
    only the job's files, so it works after a reload, from another tab or a new session.
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
    status = jobs.job_status(job)
    event = jobs.job_progress(job) or {}
    done, total = _count(event.get("done")), _count(event.get("total")) or None
    icon = {"running": "⏳", "finished": "✅", "failed": "❌", "stopped": "⏹️"}[status]
    fraction = min(1.0, done / total) if total else (1.0 if status == "finished" else 0.0)
    st.progress(fraction, text=f"{icon} **{md(job.label)}** — {status}")
    cols = st.columns(5)
    cols[0].metric("Done", f"{done}" + (f" / {total}" if total else ""))
    cols[1].metric("Rate", f"{float(event.get('rate') or 0):.1f} /s")
    cols[2].metric("ETA", format_duration(event.get("eta")) if status == "running" else "—")
    cols[3].metric("Failed", int(event.get("failed") or 0))
    cols[4].metric("Elapsed", format_duration(time.time() - job.started) if status == "running" else "—")
    if status == "running":
        if st.button("Stop", key=f"{key}_stop", icon=":material/stop_circle:"):
            jobs.stop_job(job)
            st.toast(f"Stopping {md(job.label)}; finished work is kept.")
    elif status == "failed":
        exit_record = jobs.job_exit(job)
        code = exit_record["returncode"] if exit_record else "killed"
        st.error(f"{md(job.label)} failed (exit {md(code)}). The last lines of its log are below.")
    log = jobs.tail_log(job, lines=12)
    if log:
        with st.expander("Log", expanded=status == "failed"):
            st.code(log, language=None)
