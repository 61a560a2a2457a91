"""The Training page's view of a grid on a dask cluster: where to submit, and which run runs where.

``train`` with the ``dask_scheduler`` setting spreads its runs over a dask cluster
(:mod:`core.learn.grid`) and appends a ``grid`` event (each run's state and worker) to the job's
progress file whenever that changes; this module reads the latest one back. Kept apart from
``pages/training.py`` so that the page only places three calls.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import jobs
from core.config import get_settings
from core.io import read_jsonl
from core.spec import TrainSpec
from ui import common

STATE_LABELS = {"queued": "queued", "running": "running", "finished": "finished", "failed": "failed",
                "skipped": "skipped (finished before)"}


def cluster_toggle(*, key: str) -> bool:
    """A switch for sending the runs to the configured dask cluster; shown only when one is configured."""
    scheduler = get_settings().dask_scheduler
    if not scheduler:
        return False
    return st.toggle(
        f"Spread the runs over the dask cluster {common.md(scheduler)}", value=True, key=key,
        help="Each run (model × fold × repeat × seed) goes to a worker of the cluster set by dask_scheduler; its "
             "workers must see the dataset and runs folders under the same paths. Off: one run after another here. "
             "See docs/SCALING.md.")


def submit(spec: TrainSpec, *, label: str, resume: bool, on_cluster: bool) -> jobs.Job:
    """Start the training job of ``spec``: on the configured cluster, or here when ``on_cluster`` is off."""
    if on_cluster or not get_settings().dask_scheduler:
        return jobs.submit(spec, label=label, resume=resume)
    return jobs.submit(spec, label=label, resume=resume, env={"GALAXY_MORPH_DASK_SCHEDULER": ""})


def latest_grid(job: jobs.Job) -> pd.DataFrame:
    """The runs of the job's latest ``grid`` event: run, state, worker, epoch (empty for a serial job).

    The progress file is the job's, inside the jobs folder, but its lines are still read as
    untrusted: only rows of the expected shape are kept.
    """
    if job.progress_file is None or jobs.job_problem(job) is not None:
        return pd.DataFrame()
    event: dict[str, Any] | None = next(
        (e for e in reversed(read_jsonl(job.progress_file)) if e.get("status") == "grid"), None)
    rows = event.get("runs") if event is not None else None
    if not isinstance(rows, list):
        return pd.DataFrame()
    table = pd.DataFrame([r for r in rows if isinstance(r, dict) and r.get("state") in STATE_LABELS],
                         columns=["run", "state", "worker", "epoch", "epochs"])
    if table.empty:
        return table
    epoch = pd.to_numeric(table["epoch"], errors="coerce")
    epochs = pd.to_numeric(table["epochs"], errors="coerce")
    return pd.DataFrame({
        "Run": table["run"].astype(str),
        "State": table["state"].map(STATE_LABELS),
        "Worker": table["worker"].where(table["worker"].notna(), "—").astype(str),
        "Epoch": [f"{int(e)}/{int(n)}" if pd.notna(e) and pd.notna(n) else "—" for e, n in zip(epoch, epochs)],
    })


def grid_panel(job_id: str, *, key: str) -> None:
    """The grid of a training job on a dask cluster: one row per run with its state and worker, redrawn
    every 2 s while the job runs. Nothing for a serial job."""
    try:
        job = jobs.load_job(job_id)
    except jobs.JobError:
        return
    if job.kind != "train":
        return
    if jobs.job_status(job) == jobs.RUNNING:
        _live_grid_panel(job_id, key=key)
    else:
        _draw_grid(job, key=key)


@st.fragment(run_every=2.0)
def _live_grid_panel(job_id: str, *, key: str) -> None:
    _draw_grid(jobs.load_job(job_id), key=key)


def _draw_grid(job: jobs.Job, *, key: str) -> None:
    table = latest_grid(job)
    if table.empty:
        return
    counts = table["State"].value_counts()
    st.caption("Runs on the dask cluster: " + " · ".join(f"{n} {label}" for label, n in counts.items()))
    st.dataframe(table, hide_index=True, key=key)
