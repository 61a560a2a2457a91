"""Hostile and careless files read back from disk (issue 8, section 3): part of the hostile corpus.

Three tables, each row one crafted or damaged file:

- job records in ``data/jobs/`` next to a real live ``sleep`` process: an untrusted record is listed
  as ``unknown`` (or not at all when unreadable), its "log" is never read and the process is never
  signalled;
- damaged dataset and run files under ``train``, ``evaluate`` and ``compare`` through the real CLI
  entry point: exit 2, one line naming the file, nothing written;
- paths that climb out of the image or source folder in ``import`` and ``load_source``: refused
  per row with the reason, the other rows kept.

The dashboard rows open the real pages (AppTest) on a copy of the session's ``world``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core import jobs
from core.cli import main

FITS = Path(__file__).parent / "data" / "ned" / "img" / "NGC_4486_I_IIIaF_dss2.fits.gz"
HOSTNAME = Path("/etc/hostname")
JOB_ID = "20260101-000000-beef"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time: equal trees mean nothing changed."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


# --------------------------------------------------------------------------- job records


def _start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat, read here independently of core.jobs."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that no job started: the pid a crafted record points at."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def jobs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "jobs"
    folder.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.log").write_text("outside-secret\n")
    (tmp_path / "outside" / "exit.json").write_text('{"returncode": 0, "stopped": false, "ended": 0}')
    (tmp_path / "outside" / "progress.jsonl").write_text('{"done": 7, "total": 9, "status": "running"}\n')
    return folder


def _record(folder: Path, pid: int) -> dict[str, Any]:
    """A record as start_job writes it, for ``pid``: trusted until a case changes it."""
    return {
        "id": JOB_ID, "label": "train lenet5", "pid": pid, "started": time.time(),
        "command": [sys.executable, "-m", "core", "train", "--dataset", "data/datasets/x"],
        "log_file": str(folder / f"{JOB_ID}.log"), "exit_file": str(folder / f"{JOB_ID}.exit.json"),
        "progress_file": str(folder / f"{JOB_ID}.progress.jsonl"), "proc_start": _start_time(pid),
    }


def _symlinked_log(folder: Path, record: dict[str, Any]) -> None:
    (folder / "innocent.log").symlink_to(HOSTNAME)
    record["log_file"] = str(folder / "innocent.log")


def _huge(folder: Path, record: dict[str, Any]) -> None:
    record["label"] = "x" * 100_000


Change = Callable[[Path, dict[str, Any]], None]


def _set(**fields: Any) -> Change:
    def change(folder: Path, record: dict[str, Any]) -> None:
        for key, value in fields.items():
            record[key] = value(folder, record) if callable(value) else value
    return change


def _outside(name: str) -> Callable[[Path, dict[str, Any]], str]:
    """A file in the test's ``outside`` folder (beside ``data/``), as a record field value."""
    return lambda folder, record: str(folder.parent.parent / "outside" / name)

# (case, change to the record, expected status or "unreadable", problem or load error matched)
JOB_CASES: list[tuple[str, Change, str, str]] = [
    ("log is /etc/hostname", _set(log_file=str(HOSTNAME)), "unknown", "log file lies outside the jobs folder"),
    ("log climbs out with ..", _set(log_file=lambda f, r: str(f / ".." / ".." / "outside" / "secret.log")),
     "unknown", "log file lies outside"),
    ("log is a symlink to /etc/hostname", _symlinked_log, "unknown", "log file lies outside"),
    ("progress file outside", _set(progress_file=_outside("progress.jsonl")), "unknown", "progress file lies outside"),
    ("exit file outside says finished", _set(exit_file=_outside("exit.json")), "unknown", "exit file lies outside"),
    ("proc_start null, live pid", _set(proc_start=None), "unknown", "no process start time"),
    ("shell command", _set(command=["/bin/sh", "-c", "kill -9 -1"]), "unknown", "command is not `python -m core"),
    ("unknown core command", _set(command=[sys.executable, "-m", "core", "evil"]), "unknown", "command is not"),
    ("other python module", _set(command=[sys.executable, "-m", "http.server"]), "unknown", "command is not"),
    # Trusted record, but the pid now belongs to another process (recycled): not running.
    ("proc_start of another process", _set(proc_start=lambda f, r: r["proc_start"] + 1), "failed", ""),
    ("pid 0 (own process group)", _set(pid=0), "unreadable", "pid must be a whole number > 1"),
    ("pid -1 (every process)", _set(pid=-1), "unreadable", "pid must be a whole number > 1"),
    ("pid true", _set(pid=True), "unreadable", "pid must be a whole number > 1"),
    ("pid as text", _set(pid=lambda f, r: str(r["pid"])), "unreadable", "pid must be a whole number > 1"),
    ("proc_start as text", _set(proc_start="123"), "unreadable", "proc_start must be a whole number or null"),
    ("command as text", _set(command="python -m core train"), "unreadable", "command is not a list of strings"),
    ("record larger than 64 kB", _huge, "unreadable", "larger than 64,000 bytes"),
]


@pytest.mark.parametrize(("case", "change", "expected", "reason"), JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_a_crafted_job_record_is_never_signalled_nor_its_files_read(
    case: str, change: Change, expected: str, reason: str, jobs_folder: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    outside_before, hostname = _tree(jobs_folder.parent.parent / "outside"), HOSTNAME.read_text()
    record = _record(jobs_folder, sleeper.pid)
    change(jobs_folder, record)
    (jobs_folder / f"{JOB_ID}.json").write_text(json.dumps(record))

    if expected == "unreadable":
        with pytest.raises(jobs.JobError, match=f"job record .* is unreadable \\(.*{reason}"):
            jobs.load_job(JOB_ID)
        assert jobs.list_jobs() == []  # a damaged record hides no other job and shows nothing itself
        with pytest.raises(jobs.JobError):
            jobs.stop_job(JOB_ID)
    else:
        job = jobs.load_job(JOB_ID)
        assert [j.id for j in jobs.list_jobs()] == [JOB_ID]
        assert jobs.job_status(job) == expected
        problem = jobs.job_problem(job)
        assert (problem is None) if not reason else (reason in problem), problem
        assert jobs.stop_job(JOB_ID) is False
        assert jobs.tail_log(job) == "" and jobs.job_progress(job) is None and jobs.job_exit(job) is None
    assert sleeper.poll() is None, "the process a crafted record named was signalled"
    assert _tree(jobs_folder.parent.parent / "outside") == outside_before and HOSTNAME.read_text() == hostname


def test_the_same_record_untouched_is_trusted_and_stops_its_process(jobs_folder: Path, tmp_path: Path) -> None:
    """The control for the table above: the checks, not a broken signal path, keep those processes alive.
    The process has the command line start_job gives a job's wrapper (issue 22, row 2)."""
    from tests.test_hostile_round2_records import _wrapper_lookalike

    lookalike = _wrapper_lookalike(tmp_path, _record(jobs_folder, os.getpid()))
    try:
        (jobs_folder / f"{JOB_ID}.log").write_text("epoch 1/3\n")
        (jobs_folder / f"{JOB_ID}.json").write_text(json.dumps(_record(jobs_folder, lookalike.pid)))
        job = jobs.load_job(JOB_ID)
        assert jobs.job_problem(job) is None and jobs.job_status(job) == jobs.RUNNING
        assert jobs.tail_log(job) == "epoch 1/3"
        assert jobs.stop_job(JOB_ID) is True
        assert lookalike.wait(timeout=30) == -15
    finally:
        if lookalike.poll() is None:
            lookalike.kill()
        lookalike.wait()


# --------------------------------------------------------------------------- damaged datasets and runs


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: max(1, file.stat().st_size // 2)])


def _json_list(file: Path) -> None:
    file.write_text("[1, 2, 3]\n")


def _edit_json(**fields: Any) -> Callable[[Path], None]:
    def edit(file: Path) -> None:
        data = json.loads(file.read_text())
        data.update(fields)
        file.write_text(json.dumps(data))
    return edit


def _npy(array_of: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def rewrite(file: Path) -> None:
        np.save(file, array_of(np.load(file)), allow_pickle=True)
    return rewrite


def _meta(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def rewrite(file: Path) -> None:
        change(pd.read_parquet(file)).to_parquet(file, index=False)
    return rewrite


# (case, file in the dataset, damage, what the message says after "is damaged: ")
DATASET_CASES: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("manifest truncated", "manifest.json", _truncate, "it is not readable JSON"),
    ("manifest a JSON list", "manifest.json", _json_list, "it holds a JSON list, not an object"),
    ("manifest without classes", "manifest.json", _edit_json(classes="E,S"), "'classes' must be a list"),
    ("x.npy truncated", "x.npy", _truncate, "where its header needs"),
    ("x.npy object array (pickle)", "x.npy", _npy(lambda x: x.astype(object)), "must be float32 in C order; got object"),
    ("x.npy float64", "x.npy", _npy(lambda x: x.astype(np.float64)), "got float64"),
    ("x.npy 3-D", "x.npy", _npy(lambda x: x[..., 0]), "its shape must be (N, S, S, 1 or 3)"),
    ("meta.parquet truncated", "meta.parquet", _truncate, "it is not a readable Parquet table"),
    ("meta.parquet missing a row", "meta.parquet", _meta(lambda m: m.iloc[1:]), "rows but x.npy has"),
    ("meta.parquet y as text", "meta.parquet", _meta(lambda m: m.assign(y=m["y"].astype(str))), "'y' column must hold"),
]

# (case, file in the run folder, damage, message after "is damaged: ")
RUN_CASES: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("metrics truncated", "metrics.json", _truncate, "it is not readable JSON"),
    ("metrics a JSON list", "metrics.json", _json_list, "it holds a JSON list"),
    ("metrics accuracy as text", "metrics.json", _edit_json(accuracy="high"), "'accuracy' must be a finite number"),
    ("metrics confusion ragged", "metrics.json", _edit_json(confusion=[[1, 2], [3]]), "'confusion' must be a 3 x 3"),
    ("config truncated", "config.json", _truncate, "it is not readable JSON"),
    ("config a JSON list", "config.json", _json_list, "it holds a JSON list"),
    ("config status unknown", "config.json", _edit_json(status="owned"), "'status' must be one of"),
    ("config seed as text", "config.json", _edit_json(seed="0"), "'seed' must be a whole number; got '0'"),
]


@pytest.fixture
def copied(world: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private copy of the session world (never damage the shared one), runs pointing at its dataset."""
    data, runs_dir = tmp_path / "data", tmp_path / "runs"
    shutil.copytree(world["data"], data, symlinks=True)
    shutil.copytree(world["runs"], runs_dir, symlinks=True, copy_function=_link_models)
    dataset = data / "datasets" / Path(world["dataset"]).name
    for config_file in runs_dir.glob("*/config.json"):
        config = json.loads(config_file.read_text())
        config["dataset"]["path"] = str(dataset.resolve())
        config_file.write_text(json.dumps(config))
    return {"root": tmp_path, "data": data, "runs": runs_dir, "dataset": dataset}


def _link_models(src: str, dst: str) -> None:
    """Models and checkpoints (hundreds of MB, never damaged here) are hard links; the rest real copies."""
    if src.endswith((".keras", ".h5")):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _one_error_line(text: str, file: Path, says: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"error: {file} is damaged: ") and says in lines[0], lines
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(("case", "name", "damage", "says"), DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_train_on_a_damaged_dataset_is_one_line_and_exit_2(
    case: str, name: str, damage: Callable[[Path], None], says: str, copied: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage(copied["dataset"] / name)
    before = _tree(copied["root"])
    code = main(["train", "--dataset", str(copied["dataset"]), "--models", "lenet5", "--epochs", "1",
                 "--runs-dir", str(copied["runs"])])
    captured = capsys.readouterr()
    assert code == 2
    line = _one_error_line(captured.err, copied["dataset"] / name, says)
    assert line.endswith(f"Delete the folder {copied['dataset']} and build the dataset again (`python -m core build`).")
    assert _tree(copied["root"]) == before  # no run folder, nothing else written


def _run_folder(copied: dict[str, Path], model: str = "alexnet") -> Path:
    return next(p.parent for p in copied["runs"].glob(f"*-{model}-*/config.json"))


@pytest.mark.parametrize("command", ["evaluate RUN", "evaluate (list)", "compare RUN", "compare (all)"])
@pytest.mark.parametrize(("case", "name", "damage", "says"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_evaluate_and_compare_on_a_damaged_run_are_one_line_and_exit_2(
    case: str, name: str, damage: Callable[[Path], None], says: str, command: str, copied: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _run_folder(copied)
    damage(run / name)
    out = copied["root"] / "report"
    before = _tree(copied["root"])
    argv = {"evaluate RUN": ["evaluate", run.name], "evaluate (list)": ["evaluate"],
            "compare RUN": ["compare", run.name, _run_folder(copied, "lenet5").name, "--out", str(out)],
            "compare (all)": ["compare", "--out", str(out)]}[command]
    code = main([*argv, "--runs-dir", str(copied["runs"])])
    captured = capsys.readouterr()
    assert code == 2
    line = _one_error_line(captured.out + captured.err, run / name, says)
    assert line.endswith(f"Delete the run folder {run} and train that model again.")
    assert _tree(copied["root"]) == before and not out.exists()
    if command == "evaluate (list)":  # the other runs are still listed
        table = [line for line in captured.out.splitlines() if not line.startswith("error: ")]
        assert sum(" finished " in line for line in table) == 2 and sum(" damaged " in line for line in table) == 1


# --------------------------------------------------------------------------- paths out of the folders


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """An image folder with one real image, and a real image outside it (so only confinement refuses it)."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(FITS, folder / "NGC_1.fits.gz")
    shutil.copy(FITS, tmp_path / "outside.fits.gz")
    (folder / "NGC_7.fits.gz").symlink_to(tmp_path / "outside.fits.gz")  # matched by name
    (folder / "sub" / "hostname.fits").symlink_to(HOSTNAME)
    return folder


# (case, file cell, the reason recorded for the row)
IMPORT_CASES: list[tuple[str, str, str]] = [
    ("climbs to /etc/passwd", "../../../../../../../../etc/passwd", "lies outside the image folder"),
    ("absolute /etc/hostname", str(HOSTNAME), "lies outside the image folder"),
    ("climbs to a real image outside", "../outside.fits.gz", "lies outside the image folder"),
    ("symlink in the folder to /etc/hostname", "sub/hostname.fits", "lies outside the image folder"),
    ("no file cell, name matches a symlink out", "", "'NGC_7.fits.gz' links outside the image folder"),
]


@pytest.mark.parametrize(("case", "file", "reason"), IMPORT_CASES, ids=[c[0] for c in IMPORT_CASES])
def test_import_refuses_files_outside_the_image_folder(
    case: str, file: str, reason: str, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.acquire.catalogue import load_source

    csv = tmp_path / "cat.csv"
    csv.write_text(f"name,classification,file\nNGC 1,E,{images / 'sub' / '..' / 'NGC_1.fits.gz'}\nNGC 7,Sb,{file}\n")
    before = _tree(tmp_path)
    out = tmp_path / "data" / "imported" / "cat"
    assert main(["import", "--catalog", str(csv), "--images", str(images), "--out", str(out)]) == 0
    capsys.readouterr()
    report = json.loads((out / "import_report.json").read_text())
    assert report["matched_rows"] == 1
    assert [r["name"] for r in report["unmatched_rows"]] == ["NGC 7"]
    assert reason in report["unmatched_rows"][0]["reason"]
    # The matched image is placed under the source (issue 22, row 4): a copy of the one in --images.
    assert load_source(out).table["path"].tolist() == [str(out.resolve() / "images" / "NGC_1.fits.gz")]
    assert (out / "images" / "NGC_1.fits.gz").read_bytes() == (images / "NGC_1.fits.gz").read_bytes()
    after = {k: v for k, v in _tree(tmp_path).items() if not k.startswith("data/")}
    assert after == before  # written: only the source folder under data/


# (case, file cell of a crafted catalog.csv in a source folder)
SOURCE_CASES: list[tuple[str, str]] = [
    ("climbs to /etc/hostname", "../../../../../../../../etc/hostname"),
    ("absolute /etc/passwd", "/etc/passwd"),
    ("symlink in the folder to /etc/hostname", "images/hostname.fits"),
    ("imported source, file beside its image folder", "{outside}"),
]


@pytest.mark.parametrize(("case", "file"), SOURCE_CASES, ids=[c[0] for c in SOURCE_CASES])
def test_a_crafted_catalogue_cannot_point_the_builder_outside_its_source(
    case: str, file: str, tmp_path: Path
) -> None:
    from core.prepare.quality import compute_metrics
    from core.acquire.catalogue import load_source

    source = tmp_path / "data" / "imported" / "crafted"
    pictures = tmp_path / "pictures"
    (source / "images").mkdir(parents=True)
    pictures.mkdir()
    shutil.copy(FITS, pictures / "good.fits.gz")
    shutil.copy(FITS, tmp_path / "beside.fits.gz")
    (source / "images" / "hostname.fits").symlink_to(HOSTNAME)
    (source / "import_report.json").write_text(json.dumps({"images": str(pictures.resolve())}))
    cell = file.format(outside=tmp_path / "beside.fits.gz")
    (source / "catalog.csv").write_text(f"name,classification,file\nNGC 1,E,{pictures / 'good.fits.gz'}\nNGC 2,E,{cell}\n")

    table = load_source(source).table
    # import_report.json widens nothing (issue 22, row 4): the image folder it names is outside too.
    assert table["path"].tolist() == [None, None]
    assert table["image_reason"].str.startswith(f"file outside the source folder {source.resolve()} (refused)").all()
    assert compute_metrics(source, n_jobs=1).empty  # the builder reads none of them


# --------------------------------------------------------------------------- the dashboard


APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _app(copied: dict[str, Path], monkeypatch: pytest.MonkeyPatch, page: str) -> Any:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(copied["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(copied["runs"]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _notice(at: Any, what: str = "run") -> pd.DataFrame:
    """The page's table of damaged ``what`` folders (a ``what`` and a ``problem`` column). Runs whose
    dataset is damaged are listed apart, as runs trained on a dataset that changed."""
    frames = [d.value for d in at.dataframe if {what, "problem"} <= set(d.value.columns)]
    assert len(frames) == 1, f"tables of damaged folders: {len(frames)}; warnings: {[w.value for w in at.warning]}"
    assert any("cannot be read" in w.value for w in at.warning)
    return frames[0]


@pytest.mark.parametrize("page", ["home", "training", "comparison", "classify"])
def test_pages_list_a_damaged_run_and_show_the_rest(
    page: str, copied: dict[str, Path], monkeypatch: pytest.MonkeyPatch, sleeper: subprocess.Popen[bytes]
) -> None:
    run = _run_folder(copied)
    _truncate(run / "metrics.json")
    # And a crafted job record for the Training page to follow: a live pid, a log out of the folder.
    folder = copied["data"] / "jobs"
    folder.mkdir()
    record = _record(folder, sleeper.pid)
    record.update(log_file=str(HOSTNAME), proc_start=None)
    (folder / f"{JOB_ID}.json").write_text(json.dumps(record))

    at = _app(copied, monkeypatch, page)
    table = _notice(at)
    assert table["run"].tolist() == [run.name]
    assert table["problem"][0].startswith(f"{run / 'metrics.json'} is damaged: it is not readable JSON")
    if page == "home":
        assert [m.value for m in at.metric if m.label == "Finished runs"] == ["2 of 3"]
    if page == "comparison":
        titles = [m.value.replace("\\", "") for m in at.markdown if m.value.startswith("#### ")]
        assert len(titles) == 1 and titles[0].startswith("#### LeNet-5 vs ResNet-18 · "), titles
    if page == "training":
        assert any(f"Job {JOB_ID} is not trusted" in w.value for w in at.warning)
        assert not [b for b in at.button if b.key == "train_panel_stop"]
        shown = " ".join([c.value for c in at.code] + [t.value for t in at.text])
        assert "lies outside the jobs folder" in shown and HOSTNAME.read_text().strip() not in shown
    assert sleeper.poll() is None


@pytest.mark.parametrize("page", ["home", "training", "comparison", "classify"])
def test_pages_list_a_damaged_dataset(page: str, copied: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _truncate(copied["dataset"] / "x.npy")
    at = _app(copied, monkeypatch, page)
    if page == "classify":  # classification needs only the manifest: it still works
        assert at.selectbox(key="cls_dataset").value == str(copied["dataset"].resolve())
        return
    table = _notice(at, "dataset")
    assert table["dataset"].tolist() == [copied["dataset"].name]
    assert table["problem"][0].startswith(f"{copied['dataset'] / 'x.npy'} is damaged: it has ")
    if page == "home":
        assert [m.value for m in at.metric if m.label == "Saved datasets"] == ["0"]
    if page == "training":
        assert any("No usable dataset yet" in i.value for i in at.info)
