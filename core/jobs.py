"""Background jobs for the dashboard: ``python -m core <command>`` in a detached process.

Scraping, fetching, building and training take minutes to hours, longer than a browser tab lives.
A job runs in its own session (``start_new_session=True``), so it survives page reloads, browser
closes and even a restart of the dashboard; everything about it lives on disk under
``data_dir/jobs/``:

- ``JOB_ID.json``: the record (command, pid, start time, progress file, log file, spec);
- ``JOB_ID.spec.json``: the spec a job was submitted with (:func:`submit`), which the command reads
  (``python -m core build --spec JOB_ID.spec.json``): a spec travels as a file, not as argv;
- ``JOB_ID.log``: the command's stdout and stderr;
- ``JOB_ID.exit.json``: written by the wrapper process when the command ends (exit code).

The status is derived from those files and the pid, never kept in memory, so any process (a new
dashboard session, the CLI, a test) sees the same answer.

A record is a file anyone with write access to the folder can craft, and the dashboard signals
its pid and shows its log. So a record is trusted only when its command is ``python -m core
<known command>``, its log, exit and progress files lie inside the jobs folder (symlinks
resolved) and its pid still has the start time recorded at launch and, while it lives, the job's
own command line (``python -m core.jobs JOB_ID.exit.json ... -- python -m core ...``: a start
time alone can be copied from ``/proc/PID/stat``); any other record is
``unknown``: listed with the reason (:func:`job_problem`), never signalled, its files not read.

Examples
--------
>>> job = start_job(["sample", "--out", "data/sample", "--n", "200"], label="sample")  # doctest: +SKIP
>>> job_status(job)  # doctest: +SKIP
'running'
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import core
from core.cli import COMMAND_MODULES
from core.errors import GalaxyMorphError
from core.io import RefusedFileError, atomic_write_json, open_regular, read_regular_bytes
from core.paths import data_layout
from core.progress import read_progress
from core.fields import write_spec_file
from core.spec import Spec

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
STOPPED = "stopped"
UNKNOWN = "unknown"
STATUSES = (RUNNING, FINISHED, FAILED, STOPPED, UNKNOWN)

#: The commands a job may run: ``python -m core <command>``.
KNOWN_COMMANDS = tuple(name.rstrip("_") for name in COMMAND_MODULES)
#: A real record is a few hundred bytes; a larger file is not one (and is not read whole).
MAX_RECORD_BYTES = 64_000


class JobError(GalaxyMorphError):
    """A job does not exist or cannot be started or stopped."""


@dataclass(frozen=True)
class Job:
    """What is known about a background job when it was started.

    Attributes
    ----------
    id : str
        ``YYYYmmdd-HHMMSS-xxxx``: sorts by start time.
    label : str
        Short human name shown in the dashboard ("fetch E, S0", "train lenet5").
    command : list of str
        The full argv that was run.
    pid : int
        Process id of the wrapper; it leads its own process group.
    started : float
        Unix time of the start.
    log_file, exit_file, record_file : Path
        Files under ``data_dir/jobs/``.
    progress_file : Path or None
        JSON-lines progress log (``core.progress``) the command writes, if any.
    proc_start : int or None
        The kernel's start time of ``pid`` (Linux), so a recycled pid is not taken for the job.
    spec : dict or None
        The spec the job was submitted with (:func:`submit`: ``{"kind": ..., **spec.to_dict()}``),
        None for a job started from a bare command line.
    """

    id: str
    label: str
    command: list[str]
    pid: int
    started: float
    log_file: Path
    exit_file: Path
    record_file: Path
    progress_file: Path | None = None
    proc_start: int | None = None
    spec: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """The command the job runs (``"build"``, ``"train"``, ...): pages find their jobs by it."""
        return self.command[3] if len(self.command) > 3 else ""

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record stored in ``JOB_ID.json``."""
        return {
            "id": self.id,
            "label": self.label,
            "command": self.command,
            "pid": self.pid,
            "started": self.started,
            "log_file": str(self.log_file),
            "exit_file": str(self.exit_file),
            "progress_file": None if self.progress_file is None else str(self.progress_file),
            "proc_start": self.proc_start,
            "spec": self.spec,
        }


def jobs_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir/jobs``, with ``data_dir`` from the settings when not given."""
    return data_layout(data_dir=data_dir).jobs


def start_job(
    args: Sequence[str],
    *,
    label: str | None = None,
    progress_file: str | os.PathLike[str] | None = None,
    progress_flag: str | None = "--progress-file",
    data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stop_grace: float = 30.0,
    spec: Spec | Mapping[str, Any] | None = None,
) -> Job:
    """Start ``python -m core <args>`` in the background and return its record.

    Parameters
    ----------
    args : sequence of str
        The command and its options, e.g. ``["fetch", "--classes", "E"]``.
    label : str, optional
        Name shown in the dashboard; defaults to the command name.
    progress_file : path, optional
        Where the command writes progress events (``core.progress`` JSON lines). Defaults to
        ``jobs/JOB_ID.progress.jsonl`` when ``progress_flag`` is set.
    progress_flag : str or None
        The command's option naming that file, appended to ``args`` with the path; None when
        the command takes no such option (its progress file, if any, is then just recorded).
    data_dir : path, optional
        Root of the jobs folder; the settings' ``data_dir`` by default.
    env : mapping, optional
        Extra environment variables for the command.
    cwd : path, optional
        Working directory of the command; the current one by default, so relative settings
        (``data/``) mean the same thing for the dashboard and the job.
    stop_grace : float
        Seconds a stopped command has to save its work before it is killed.
    spec : spec or mapping, optional
        A spec (:mod:`core.spec`) is written to ``jobs/JOB_ID.spec.json``, which the command reads
        (``--spec FILE`` follows the command name), and kept in the record; a mapping is only kept
        in the record.

    Raises
    ------
    JobError
        If ``args`` does not start with a known command or the process cannot be started.
    """
    args = [str(a) for a in args]
    if not args or args[0] not in KNOWN_COMMANDS:
        raise JobError(
            f"args must start with a command name ({', '.join(KNOWN_COMMANDS)}); got {args[:1]!r}. "
            "Use e.g. ['sample', '--n', '100']."
        )
    folder = jobs_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    log_file = folder / f"{job_id}.log"
    exit_file = folder / f"{job_id}.exit.json"
    record_file = folder / f"{job_id}.json"
    if progress_file is None and progress_flag:
        progress_file = folder / f"{job_id}.progress.jsonl"
    if spec is not None and not isinstance(spec, Mapping):
        args[1:1] = ["--spec", write_spec_file(spec, folder / f"{job_id}.spec.json")]
        spec = {"kind": spec.kind, **spec.to_dict()}
    if progress_flag:
        args += [progress_flag, str(progress_file)]
    command = [sys.executable, "-m", "core", *args]
    wrapper = [sys.executable, "-m", "core.jobs", str(exit_file), str(stop_grace), "--", *command]

    child_env = dict(os.environ)
    # The package must be importable from whatever folder the job runs in.
    root = str(Path(core.__file__).resolve().parent.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH")) if p)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env.update(env or {})
    try:
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                wrapper,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=child_env,
                start_new_session=True,
            )
    except OSError as exc:
        raise JobError(f"could not start {' '.join(command)!r}: {exc}. Check the Python environment.") from exc
    job = Job(
        id=job_id,
        label=label or args[0],
        command=command,
        pid=proc.pid,
        started=time.time(),
        log_file=log_file,
        exit_file=exit_file,
        record_file=record_file,
        progress_file=None if progress_file is None else Path(progress_file),
        proc_start=_proc_start_time(proc.pid),
        spec=None if spec is None else dict(spec),
    )
    atomic_write_json(record_file, job.to_record())
    return job


def submit(spec: Spec, *, label: str | None = None, env: Mapping[str, str] | None = None, **options: Any) -> Job:
    """Start ``python -m core <spec.kind> --spec JOB_ID.spec.json`` in the background.

    The spec travels as a file the command reads (:func:`core.fields.read_spec_file`), never as
    argv. ``options`` are how to run it, not what it does: ``out="data/datasets/x"`` becomes
    ``--out data/datasets/x``, ``force=True`` / ``resume=True`` the bare flag. The record keeps
    the spec, so a page finds its jobs by :attr:`Job.kind` and reads what a job does from
    :attr:`Job.spec` instead of parsing its command line.

    Examples
    --------
    >>> submit(TrainSpec(dataset="data/datasets/h3", seeds=(0, 1)), label="train", resume=True)  # doctest: +SKIP
    """
    args = [spec.kind]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return start_job(args, label=label, spec=spec, env=env)


def load_job(job_id: str, *, data_dir: str | os.PathLike[str] | None = None) -> Job:
    """Read the record of ``job_id``.

    Raises
    ------
    JobError
        If there is no such job or its record is unreadable.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", job_id):
        raise JobError(f"job id must be letters, digits, '_', '-' or '.'; got {job_id!r}. Pick one from list_jobs().")
    record_file = jobs_dir(data_dir) / f"{job_id}.json"
    if not record_file.exists():
        raise JobError(f"no job {job_id!r} in {record_file.parent}. Pick one from list_jobs().")
    try:
        if record_file.stat().st_size > MAX_RECORD_BYTES:
            raise ValueError(f"larger than {MAX_RECORD_BYTES:,} bytes")
        record = json.loads(read_regular_bytes(record_file, max_bytes=MAX_RECORD_BYTES).decode("utf-8"))
        if not isinstance(record, dict):
            raise TypeError(f"a JSON {type(record).__name__}, not an object")
        command, pid, proc_start = record["command"], record["pid"], record.get("proc_start")
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise TypeError("command is not a list of strings")
        # bool is an int to Python; a pid of 0 or -1 would signal whole process groups.
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
            raise ValueError(f"pid must be a whole number > 1, got {pid!r}")
        if proc_start is not None and (isinstance(proc_start, bool) or not isinstance(proc_start, int)):
            raise ValueError(f"proc_start must be a whole number or null, got {proc_start!r}")
        return Job(
            id=str(record["id"]),
            label=str(record["label"]),
            command=command,
            pid=pid,
            started=float(record["started"]),
            log_file=Path(record["log_file"]),
            exit_file=Path(record["exit_file"]),
            record_file=record_file,
            progress_file=Path(record["progress_file"]) if record.get("progress_file") else None,
            proc_start=proc_start,
            spec=_record_spec(record.get("spec"), command),
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise JobError(f"job record {record_file} is unreadable ({exc}). Delete it.") from exc


def _record_spec(spec: Any, command: list[str]) -> dict[str, Any] | None:
    """The record's spec when it is a dictionary of the job's own kind, else None: a damaged or
    crafted spec only loses what the panel shows about the job, never the job itself."""
    if isinstance(spec, dict) and len(command) > 3 and spec.get("kind") == command[3]:
        return spec
    return None


def list_jobs(*, data_dir: str | os.PathLike[str] | None = None) -> list[Job]:
    """Every job with a readable record, newest first."""
    folder = jobs_dir(data_dir)
    if not folder.is_dir():
        return []
    jobs = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        if path.name.endswith(".exit.json"):
            continue
        try:
            jobs.append(load_job(path.stem, data_dir=data_dir))
        except JobError:
            continue  # a record being written or damaged must not hide the other jobs
    return jobs


def job_problem(job: Job) -> str | None:
    """Why the record of ``job`` is not trusted, or None when it is.

    Trusted: the command is ``python -m core <known command>``, the log, exit and progress
    files resolve (symlinks followed) inside the folder holding the record, and the record
    keeps the process start time that :func:`start_job` measured. Whether the pid still has
    that start time is checked when the job is found running (:func:`job_status`).
    """
    command = job.command
    if (len(command) < 4 or not Path(command[0]).name.startswith("python") or command[1:3] != ["-m", "core"]
            or command[3] not in KNOWN_COMMANDS):
        return f"its command is not `python -m core <{'|'.join(KNOWN_COMMANDS)}>`"
    folder = job.record_file.parent.resolve()
    files = {"log": job.log_file, "exit": job.exit_file, "progress": job.progress_file}
    for kind, path in files.items():
        if path is not None and not path.resolve().is_relative_to(folder):
            return f"its {kind} file lies outside the jobs folder {folder}"
    if job.proc_start is None:
        return "it has no process start time, so its pid cannot be told from a recycled one"
    # Anyone can read a process's start time in /proc/PID/stat, so a record that copies it names
    # a live process; only the job's own command line (its exit file carries the job id) proves it.
    argv = _process_argv(job.pid)
    if argv and _proc_start_time(job.pid) == job.proc_start and argv != _wrapper_argv(job, argv):
        return (f"its pid {job.pid} is another process: its command line is not this job's "
                f"`python -m core.jobs {job.record_file.stem}.exit.json ... -- python -m core ...`")
    return None


def _wrapper_argv(job: Job, argv: list[str]) -> list[str] | None:
    """The command line :func:`start_job` gives the wrapper of ``job`` (its stop grace taken from
    ``argv``, the one field the record does not keep), or None if the record cannot have one."""
    if job.id != job.record_file.stem or job.exit_file.name != f"{job.id}.exit.json" or len(argv) < 5:
        return None
    if not Path(argv[0]).name.startswith("python") or argv[0] != job.command[0]:
        return None
    return [argv[0], "-m", "core.jobs", str(job.exit_file), argv[4], "--", *job.command]


def _process_argv(pid: int) -> list[str] | None:
    """The command line of process ``pid`` (empty for a zombie), or None if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", errors="surrogateescape") for part in raw.split(b"\0")[:-1]]


def job_exit(job: Job) -> dict[str, Any] | None:
    """The wrapper's exit record (``returncode``, ``stopped``, ``ended``), or None while running
    (and for a record that is not trusted)."""
    if job_problem(job) is not None:
        return None
    try:
        record = json.loads(read_regular_bytes(job.exit_file, max_bytes=MAX_RECORD_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def job_status(job: Job) -> str:
    """``running``, ``finished`` (exit 0), ``stopped`` (by :func:`stop_job`), ``failed`` or
    ``unknown`` (a record that is not trusted, see :func:`job_problem`).

    A process that vanished without its exit record (killed with SIGKILL, machine reboot) is
    ``failed``; so is a pid now held by another process (its start time differs).
    """
    if job_problem(job) is not None:
        return UNKNOWN
    _reap(job.pid)
    exit_record = job_exit(job)
    if exit_record is not None:
        if exit_record.get("stopped"):
            return STOPPED
        return FINISHED if exit_record.get("returncode") == 0 else FAILED
    if _is_alive(job):
        return RUNNING
    # The wrapper may have written its exit record between the two checks.
    exit_record = job_exit(job)
    if exit_record is not None:
        return job_status(job)
    return FAILED


def job_progress(job: Job) -> dict[str, Any] | None:
    """The latest progress event of the job (see :func:`core.progress.read_progress`); None
    for a record that is not trusted."""
    if job.progress_file is None or job_problem(job) is not None:
        return None
    event = read_progress(job.progress_file)
    return event if isinstance(event, dict) else None


def stop_job(job: Job | str, *, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Ask the job to stop; return False if it was not running.

    The wrapper passes the request on as SIGINT, so the command saves what it finished and a
    stopped job resumes when started again; it is killed after the job's grace period. A record
    that is not trusted (:func:`job_problem`) is never signalled.
    """
    if isinstance(job, str):
        job = load_job(job, data_dir=data_dir)
    if job_status(job) != RUNNING:
        return False
    try:
        os.kill(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise JobError(f"cannot stop job {job.id} (pid {job.pid}): {exc}.") from exc
    return True


def tail_log(job: Job, *, lines: int = 20, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of the job's log (progress bars' carriage returns folded); empty
    for a record that is not trusted, whose "log" may be any file."""
    if lines < 1:
        raise JobError(f"lines must be >= 1; got {lines}. Ask for at least one line.")
    if job_problem(job) is not None:
        return ""
    try:
        with open_regular(job.log_file) as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, RefusedFileError):  # not written yet, or not a regular file (a pipe would block)
        return ""
    # A terminal bar redraws with "\r"; only its last state is worth showing.
    text = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in data.rstrip("\n").split("\n")]
    return "\n".join(text[-lines:])


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may contain spaces, so split after ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def _reap(pid: int) -> None:
    """Collect the wrapper's exit status if this process started it, so no zombie lingers."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_alive(job: Job) -> bool:
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: its start time below says it is not the job
    try:
        state = Path(f"/proc/{job.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False  # gone, or no /proc to tell it from a recycled pid: never take it for the job
    if state == "Z":
        return False
    if job.proc_start is None or _proc_start_time(job.pid) != job.proc_start:
        return False
    argv = _process_argv(job.pid)
    return argv is not None and argv == _wrapper_argv(job, argv)


def _wrap(argv: Sequence[str]) -> int:
    """Run the command after ``--``, then write the exit record.

    On SIGTERM (from :func:`stop_job`) the command gets SIGINT, which the CLI turns into a clean
    stop that keeps finished work (a run is marked ``stopped``); if it is still running after
    the grace period it is killed. Whatever the command left in the process group (worker
    processes) is terminated at the end.
    """
    exit_file, grace, sep, *command = argv
    if sep != "--" or not command:
        raise SystemExit("usage: python -m core.jobs EXIT_FILE GRACE_SECONDS -- COMMAND...")
    stopped = False
    proc: subprocess.Popen[bytes] | None = None

    def _on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopped
        stopped = True
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    proc = subprocess.Popen(command)
    kill_at: float | None = None
    while True:
        try:
            returncode = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stopped:
                kill_at = kill_at or time.monotonic() + float(grace)
                if time.monotonic() > kill_at:
                    proc.kill()
    if returncode < 0:
        # Killed by signal N: record 128 + N as a shell does. CPython can end by re-raising SIGINT
        # even after the CLI handled the interrupt (a KeyboardInterrupt that arrived inside an
        # import leaves that mark), so a clean stop is 130 either way.
        returncode = 128 - returncode
    atomic_write_json(exit_file, {"returncode": returncode, "stopped": stopped, "ended": time.time()})
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgid(0), signal.SIGTERM)
    return returncode


if __name__ == "__main__":
    sys.exit(_wrap(sys.argv[1:]))
