"""Hostile inputs, round two (issue 22, part A): records are claims, files are opened as files.

Each test is one row of the audit's table, named after it (``test_rowNN_...``):

- the served dashboard answers only to its own host names, and may not be framed (rows 1, 17);
- a job record names a pid only if that process's command line is the job's own (row 2);
- named pipes and other non-regular files in place of dataset, run, source and image files are
  refused before they are opened: no command or page hangs (row 3);
- ``import_report.json`` cannot widen a source's confinement (row 4);
- size caps on ``model.keras``'s members, checked in the zip directory (row 8);
- damaged ``predictions.csv`` / ``history.csv`` / ``model.keras`` are listed, not raised (row 10);
- CSV exports are inert in spreadsheets (row 11);
- ``checkpoint/state.json`` names files inside its own folder only (row 15);
- long names are shortened in messages (row 16).

Every command runs in a subprocess under a timeout, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import jobs
from tests.test_browser import _free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
JOB_ID = "20260101-000000-cafe"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALAXY_MORPH_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _core(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m core ARGS`` in a subprocess; a hang past ``timeout`` fails the test."""
    try:
        return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"python -m core {' '.join(args)} hung for {timeout} s: {exc.stderr!r:.2000}")


# --------------------------------------------------------------------------- rows 1 and 17: the server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The real dashboard (``python -m ui.serve``, as ``make run`` starts it) on 127.0.0.1; its port."""
    root = tmp_path_factory.mktemp("served")
    port = _free_port()
    env = _clean_env(GALAXY_MORPH_DATA_DIR=str(root / "data"), GALAXY_MORPH_RUNS_DIR=str(root / "runs"),
                     GALAXY_MORPH_CONFIG=str(root / "none.toml"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.serve", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    wait_until_healthy(proc, f"http://127.0.0.1:{port}", timeout=120)
    yield port
    proc.terminate()
    proc.wait(timeout=20)


def _raw(port: int, request: str) -> tuple[int, dict[str, str]]:
    """Send ``request`` as written to the server; the status code and (lower-case) headers of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request.encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = (headers[name.strip().lower()] + ", " if name.strip().lower() in headers
                                         else "") + value.strip()
    return int(head[0].split()[1]), headers


def _get(port: int, host: str, path: str = "/") -> tuple[int, dict[str, str]]:
    return _raw(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")


def _websocket(port: int, host: str) -> tuple[int, dict[str, str]]:
    """The WebSocket handshake a page served under ``host`` would make (its Origin is that host)."""
    return _raw(port, (
        f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: streamlit\r\n\r\n"
    ))


FOREIGN_HOSTS = ["attacker.example", "attacker.example:{port}", "127.0.0.1.attacker.example:{port}",
                 "localhost.attacker.example", "", "x" * 5000]


def test_row01_foreign_host_header_refused(served: int) -> None:
    """DNS rebinding: a page at attacker.example, resolved to 127.0.0.1, may neither read the dashboard
    nor open its WebSocket (which imports folders and starts or stops jobs)."""
    for host in (h.format(port=served) for h in FOREIGN_HOSTS):
        status, _ = _get(served, host)
        assert status == 403, f"GET / with Host {host[:40]!r} answered {status}"
        status, _ = _get(served, host, "/_stcore/health")
        assert status == 403, f"GET /_stcore/health with Host {host[:40]!r} answered {status}"
        status, headers = _websocket(served, host)
        assert status == 403 and "sec-websocket-accept" not in headers, f"WebSocket with Host {host[:40]!r}: {status}"
    # The control: the names it was started for are served, page and WebSocket alike.
    for host in (f"127.0.0.1:{served}", f"localhost:{served}", "127.0.0.1", f"LOCALHOST:{served}"):
        assert _get(served, host)[0] == 200, host
        assert _websocket(served, host)[0] == 101, host


def test_row17_dashboard_refuses_to_be_framed(served: int) -> None:
    """Clickjacking: no other site may show Stop / Build / Import in a frame."""
    for host, path, status in ((f"127.0.0.1:{served}", "/", 200), (f"localhost:{served}", "/_stcore/health", 200),
                               ("attacker.example", "/", 403)):
        got, headers = _get(served, host, path)
        assert got == status
        assert headers.get("x-frame-options") == "DENY", headers
        assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), headers


# --------------------------------------------------------------------------- row 2: job records


def _start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (anyone may read it), as the crafted record copies it."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _record(folder: Path, job_id: str, pid: int) -> dict[str, object]:
    return {
        "id": job_id, "label": "train lenet5", "pid": pid, "started": time.time(),
        "command": [sys.executable, "-m", "core", "train", "--dataset", "data/datasets/x"],
        "log_file": str(folder / f"{job_id}.log"), "exit_file": str(folder / f"{job_id}.exit.json"),
        "progress_file": str(folder / f"{job_id}.progress.jsonl"), "proc_start": _start_time(pid),
    }


@pytest.fixture
def jobs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "jobs"
    folder.mkdir(parents=True)
    return folder


def _wrapper_lookalike(tmp_path: Path, record: dict[str, object]) -> subprocess.Popen[bytes]:
    """A harmless process whose command line is exactly what start_job runs for ``record``:
    ``python -m core.jobs EXIT_FILE GRACE -- python -m core train ...`` (its ``core.jobs`` sleeps)."""
    package = tmp_path / "lookalike" / "core"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text("import time\ntime.sleep(300)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen([sys.executable, "-m", "core.jobs", str(record["exit_file"]), "30", "--",
                             *record["command"]], cwd=package.parent, env=env)  # type: ignore[misc]


def test_row02_job_record_naming_a_foreign_process_is_not_trusted(jobs_folder: Path, tmp_path: Path) -> None:
    """A record copying a live process's real start time from /proc/PID/stat: the process is not the
    job's own `python -m core` with this job id, so the record is untrusted and nothing is signalled."""
    sleeper = subprocess.Popen(["sleep", "300"])
    other_job = _record(jobs_folder, "20260101-000000-0ther", os.getpid())
    lookalike = _wrapper_lookalike(tmp_path, other_job)  # a real job's process, but of another job id
    try:
        for victim in (sleeper, lookalike):
            record = _record(jobs_folder, JOB_ID, victim.pid)
            (jobs_folder / f"{JOB_ID}.json").write_text(json.dumps(record))
            job = jobs.load_job(JOB_ID)
            assert jobs.job_status(job) == jobs.UNKNOWN
            problem = jobs.job_problem(job)
            assert problem is not None and f"pid {victim.pid} is another process" in problem, problem
            assert jobs.stop_job(JOB_ID) is False
            assert victim.poll() is None, "the process a crafted record named was signalled"

        # The control: the same record for the lookalike's own job id is trusted and stops it.
        record = _record(jobs_folder, "20260101-000000-0ther", lookalike.pid)
        (jobs_folder / "20260101-000000-0ther.json").write_text(json.dumps(record))
        job = jobs.load_job("20260101-000000-0ther")
        assert jobs.job_problem(job) is None and jobs.job_status(job) == jobs.RUNNING
        assert jobs.stop_job(job) is True
        assert lookalike.wait(timeout=30) == -signal.SIGTERM
    finally:
        for proc in (sleeper, lookalike):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
