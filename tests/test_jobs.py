"""Background jobs run real ``python -m core`` subprocesses; waits poll with a deadline, never sleep blindly."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from core import jobs
from core.jobs import JobError



def _wait_for(predicate: Callable[[], bool], *, timeout: float = 90.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    yield tmp_path / "data"
    # A failing test must not leave a detached process behind.
    for job in jobs.list_jobs(data_dir=tmp_path / "data"):
        if jobs.job_status(job) == jobs.RUNNING:
            os.killpg(job.pid, signal.SIGKILL)


def test_job_runs_to_completion_and_leaves_its_record(data_dir: Path) -> None:
    out = data_dir / "sample"
    job = jobs.start_job(
        ["sample", "--out", str(out), "--n", "30", "--seed", "1"], label="tiny sample"
    )

    assert job.record_file == data_dir / "jobs" / f"{job.id}.json"
    record = json.loads(job.record_file.read_text())
    assert record["command"][-2:] == ["--progress-file", str(job.progress_file)]
    assert record["label"] == "tiny sample"

    _wait_for(lambda: jobs.job_status(job) != jobs.RUNNING, what="the sample job to end")
    assert jobs.job_status(job) == jobs.FINISHED, jobs.tail_log(job)
    assert jobs.job_exit(job)["returncode"] == 0
    assert json.loads((out / "SAMPLE.json").read_text())["n"] == 30
    assert len(pd.read_csv(out / "catalog.csv")) >= 30

    final = jobs.job_progress(job)
    assert final is not None and final["status"] == "done"
    assert final["done"] == final["total"] >= 30

    listed = jobs.list_jobs()
    assert [j.id for j in listed] == [job.id]
    assert jobs.load_job(job.id) == listed[0]


def test_failing_command_is_failed_with_its_error_in_the_log(data_dir: Path) -> None:
    job = jobs.start_job(["evaluate", "no-such-run", "--runs-dir", str(data_dir / "runs")], progress_flag=None)
    assert job.progress_file is None

    _wait_for(lambda: jobs.job_status(job) != jobs.RUNNING, what="the bad command to exit")
    assert jobs.job_status(job) == jobs.FAILED
    assert jobs.job_exit(job)["returncode"] == 2
    assert "run 'no-such-run' not found" in jobs.tail_log(job)
    assert jobs.job_progress(job) is None
    assert jobs.stop_job(job) is False


def test_stop_job_terminates_the_process_group(data_dir: Path) -> None:
    job = jobs.start_job(
        ["sample", "--out", str(data_dir / "big"), "--n", "20000"], label="big sample"
    )
    _wait_for(lambda: jobs.job_progress(job) is not None, what="the first progress event")
    assert jobs.job_status(job) == jobs.RUNNING

    assert jobs.stop_job(job.id) is True
    _wait_for(lambda: jobs.job_status(job) != jobs.RUNNING, what="the stopped job to exit")
    assert jobs.job_status(job) == jobs.STOPPED
    assert jobs.job_exit(job)["stopped"] is True
    # The command got SIGINT and stopped cleanly (the CLI's exit code for an interrupt).
    assert jobs.job_exit(job)["returncode"] == 130
    _wait_for(lambda: not _group_alive(job), timeout=10, what="the process group to be gone")


def _group_alive(job: jobs.Job) -> bool:
    jobs.job_status(job)  # reaps the wrapper, which this test process started
    try:
        os.killpg(job.pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_job_killed_without_exit_record_is_failed(data_dir: Path) -> None:
    job = jobs.start_job(["sample", "--out", str(data_dir / "big"), "--n", "20000"])
    _wait_for(lambda: jobs.job_progress(job) is not None, what="the first progress event")

    os.killpg(job.pid, signal.SIGKILL)
    _wait_for(lambda: jobs.job_status(job) != jobs.RUNNING, what="the killed job to vanish")
    assert jobs.job_status(job) == jobs.FAILED
    assert jobs.job_exit(job) is None


def test_tail_log_keeps_last_lines_and_last_state_of_a_redrawn_bar(data_dir: Path) -> None:
    job = jobs.Job(
        id="x",
        label="x",
        command=["python", "-m", "core", "sample"],
        pid=os.getpid(),
        started=0.0,
        log_file=data_dir / "x.log",
        exit_file=data_dir / "x.exit.json",
        record_file=data_dir / "x.json",
        proc_start=0,
    )
    assert jobs.tail_log(job) == ""
    data_dir.mkdir(parents=True)
    job.log_file.write_text("a\nb\nfetch 1/3\rfetch 2/3\rfetch 3/3\nc\n")
    assert jobs.tail_log(job, lines=3) == "b\nfetch 3/3\nc"
    with pytest.raises(JobError, match="lines must be >= 1; got 0"):
        jobs.tail_log(job, lines=0)


def test_bad_inputs_and_damaged_records(data_dir: Path) -> None:
    with pytest.raises(JobError, match="args must start with a command name"):
        jobs.start_job([])
    with pytest.raises(JobError, match="args must start with a command name"):
        jobs.start_job(["--version"])
    with pytest.raises(JobError, match=r"args must start with a command name \(sample, .*\); got \['no-such-command'\]"):
        jobs.start_job(["no-such-command"])
    with pytest.raises(JobError, match="no job 'nope'"):
        jobs.load_job("nope")
    assert jobs.list_jobs() == []

    (data_dir / "jobs").mkdir(parents=True)
    (data_dir / "jobs" / "20260101-000000-dead.json").write_text("{not json")
    with pytest.raises(JobError, match="unreadable"):
        jobs.load_job("20260101-000000-dead")
    good = jobs.start_job(["evaluate", "no-such-run", "--runs-dir", str(data_dir / "runs")], progress_flag=None)
    assert [j.id for j in jobs.list_jobs()] == [good.id]
    _wait_for(lambda: jobs.job_status(good) != jobs.RUNNING, what="the bad command to exit")
