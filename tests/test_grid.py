"""The grid of training runs on a dask LocalCluster: the bytes of serial training, and a killed worker loses nothing."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.errors import ConfigError
from core.learn.grid import check_threads, format_grid, grid_event, serial_threads, train_runs

distributed = pytest.importorskip("distributed")

TINY = {"epochs": 1, "batch_size": 32, "patience": 0}
TIMINGS = ("train_seconds", "inference_img_per_s")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 rendered galaxies at 32 px, enough for 3 stratified folds of three classes."""
    from core.prepare.builder import build_dataset
    from core.prepare.preprocessing import PreprocessConfig
    from core.acquire.sample import ensure_sample

    root = tmp_path_factory.mktemp("grid")
    sample = ensure_sample(root / "sample", n=120, seed=0)
    return build_dataset(sample, scheme="hubble3", preprocess=PreprocessConfig(size=32), min_quality=0.0,
                         min_size=0, catalog="all", out=root / "datasets" / "tiny", n_jobs=1)


@pytest.fixture(autouse=True)
def _close_clusters():
    from core.parallel import close_dask_clients

    yield
    close_dask_clients()


def _by_experiment(runs_dir: Path) -> dict[tuple[str, int], Path]:
    """Run folders keyed by (model, fold); two folders of one experiment are an error."""
    found: dict[tuple[str, int], Path] = {}
    for config_file in sorted(runs_dir.glob("*/config.json")):
        config = json.loads(config_file.read_text())
        key = (config["model"], config["params"]["fold"])
        assert key not in found, f"two run folders for {key}: {found[key]} and {config_file.parent}"
        found[key] = config_file.parent
    return found


def test_threads_are_checked_and_share_needs_a_cluster(tmp_path):
    assert check_threads("3") == 3 and check_threads("share") == "share" and check_threads(None) is None
    with pytest.raises(ConfigError, match="threads must be a positive integer or 'share'; got 0"):
        check_threads(0)
    with pytest.raises(ConfigError, match="threads='share' divides a dask worker's machine"):
        train_runs(tmp_path / "dataset", models=["lenet5"], seeds=[0], threads="share", scheduler="",
                   runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_the_grid_line_names_each_running_run_and_its_worker():
    rows = [{"run": "lenet5 s0 f0", "run_id": "a", "state": "finished", "worker": "tcp://h:1", "epoch": 2, "epochs": 2},
            {"run": "alexnet s0 f0", "run_id": "b", "state": "running", "worker": "tcp://h:2", "epoch": 1, "epochs": 2},
            {"run": "lenet5 s0 f1", "run_id": "c", "state": "queued", "worker": None, "epoch": None, "epochs": 2}]
    event = grid_event(rows)
    assert event["counts"] == {"queued": 1, "running": 1, "finished": 1, "failed": 0, "skipped": 0}
    assert format_grid(event) == ("grid of 3 runs: 1 queued, 1 running (alexnet s0 f0 on tcp://h:2 epoch 1/2), "
                                  "1 finished")
    assert format_grid({"status": "grid", "runs": "crafted", "counts": None}) == "grid of 0 runs: 0 queued, 0 running, 0 finished"


@pytest.mark.cluster
def test_a_grid_on_a_local_cluster_gives_the_bytes_of_serial_training(dataset, tmp_path):
    from core.learn.training import train_many

    grid = {"models": ["lenet5", "alexnet"], "seeds": [0], "folds": 3, "overrides": TINY}
    serial = train_many(dataset, runs_dir=tmp_path / "serial", **grid)
    events: list[dict] = []
    on_cluster = train_runs(dataset, runs_dir=tmp_path / "dask", scheduler="local:2", progress_callback=events.append,
                            **grid)

    assert [o["status"] for o in serial] == [o["status"] for o in on_cluster] == ["finished"] * 6
    a, b = _by_experiment(tmp_path / "serial"), _by_experiment(tmp_path / "dask")
    assert sorted(a) == sorted(b) and len(a) == 6
    for key in a:
        assert (a[key] / "predictions.csv").read_bytes() == (b[key] / "predictions.csv").read_bytes(), key
        metrics_a, metrics_b = (json.loads((run / "metrics.json").read_text()) for run in (a[key], b[key]))
        for timing in TIMINGS:
            metrics_a.pop(timing), metrics_b.pop(timing)
        assert metrics_a == metrics_b, key
        history_a, history_b = (pd.read_csv(run / "history.csv").drop(columns="seconds") for run in (a[key], b[key]))
        pd.testing.assert_frame_equal(history_a, history_b)
        # The registry records the same run: everything but identity, times, process and where it ran.
        config_a, config_b = (json.loads((run / "config.json").read_text()) for run in (a[key], b[key]))
        for volatile in ("id", "created", "finished", "pid", "host", "timings"):
            config_a.pop(volatile), config_b.pop(volatile)
        assert config_b.pop("threads") == serial_threads() and config_b.pop("worker") in {o["worker"] for o in on_cluster}
        assert config_a == config_b, key
    # Both workers trained, and the progress said which run ran where while it ran.
    workers = {o["worker"] for o in on_cluster}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    grid_events = [e for e in events if e["status"] == "grid"]
    assert grid_events[0]["counts"]["queued"] >= 4
    assert any(r["state"] == "running" and r["worker"] in workers for e in grid_events for r in e["runs"])
    assert grid_events[-1]["counts"]["finished"] == 6
    # The runs' own events reach the caller as in serial training: one finish per run.
    assert len({e["run_id"] for e in events if e["status"] == "finished"}) == 6


@pytest.mark.cluster
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(dataset, tmp_path):
    runs_dir = tmp_path / "runs"
    epochs = 6
    killed: dict[str, int] = {}

    def kill_first_worker_mid_run(event: dict) -> None:
        # The worker writes its pid in the run's config.json; kill it once a checkpoint exists.
        if killed or event.get("status") != "running" or event.get("val_loss") is None or event["epoch"] >= epochs - 2:
            return
        run_dir = runs_dir / event["run_id"]
        pid = json.loads((run_dir / "config.json").read_text())["pid"]
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        killed.update(run_id=event["run_id"], pid=pid, epoch=event["epoch"])

    # Two runs on the dataset's own split (seeds 0 and 1): one to kill, one on the other worker.
    outcomes = train_runs(dataset, models=["lenet5"], seeds=[0, 1], runs_dir=runs_dir, scheduler="local:2",
                          overrides={**TINY, "epochs": epochs}, progress_callback=kill_first_worker_mid_run)

    assert killed, "no epoch ended before the last two: nothing was killed"
    assert [o["status"] for o in outcomes] == ["finished"] * 2, outcomes
    seeds = sorted(json.loads(p.read_text())["seed"] for p in runs_dir.glob("*/config.json"))
    assert seeds == [0, 1] and len(list(runs_dir.iterdir())) == 2
    run_dir = runs_dir / killed["run_id"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["status"] == "finished" and config["pid"] != killed["pid"]
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == list(range(1, epochs + 1))
    # Resumed from its checkpoint: the epochs finished before the kill were not trained again.
    ends = [e["epoch"] for e in map(json.loads, (run_dir / "events.jsonl").read_text().splitlines())
            if e.get("val_loss") is not None]
    assert all(ends.count(epoch) == 1 for epoch in range(1, killed["epoch"] + 1)), ends


@pytest.mark.cluster
def test_workers_that_cannot_see_the_data_are_refused_by_name(dataset, tmp_path):
    from core.learn.grid import check_workers_see_data
    from core.parallel import dask_client

    client = dask_client("local:2")
    workers = sorted(client.scheduler_info()["workers"])
    with pytest.raises(ConfigError, match="cannot read the dataset folder") as missing:
        check_workers_see_data(client, dataset=tmp_path / "elsewhere", dataset_hash="0" * 64, runs_dir=tmp_path)
    assert all(worker in str(missing.value) for worker in workers)
    (tmp_path / "a-file").write_text("not a folder")
    content_hash = json.loads((dataset / "manifest.json").read_text())["content_hash"]
    with pytest.raises(ConfigError, match="cannot write the runs folder .*a-file/runs"):
        check_workers_see_data(client, dataset=dataset, dataset_hash=content_hash, runs_dir=tmp_path / "a-file" / "runs")
    with pytest.raises(ConfigError, match="sees another dataset"):
        check_workers_see_data(client, dataset=dataset, dataset_hash="f" * 64, runs_dir=tmp_path)
    check_workers_see_data(client, dataset=dataset, dataset_hash=content_hash, runs_dir=tmp_path)
    assert not list(tmp_path.glob(".probe-*"))


@pytest.mark.cluster
def test_the_training_page_sends_the_grid_to_the_cluster_and_shows_where_each_run_ran(dataset, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core import jobs

    # Streamlit's script runner makes app.py this process's __main__; put ours back afterwards, or every
    # process spawned later (the cluster tests' dask workers) re-runs the dashboard as its main module.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(dataset.parent.parent))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GALAXY_MORPH_DASK_SCHEDULER", "local:1")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/training.py")
    at.run()
    assert at.toggle(key="train_on_cluster").value is True
    assert at.toggle(key="train_on_cluster").label.replace("\\", "").endswith("dask cluster local:1")
    at.multiselect(key="train_models").set_value(["lenet5"])
    at.number_input(key="train_epochs").set_value(1)
    at.text_input(key="train_seeds").set_value("0, 1")
    at.button(key="train_start").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    job = jobs.load_job(at.session_state["train_job"])
    try:
        os.waitpid(job.pid, 0)
    except ChildProcessError:
        pass  # already reaped by core.jobs' own status check
    assert jobs.job_status(job) == jobs.FINISHED, jobs.tail_log(job)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(frame.value for frame in at.dataframe if "Worker" in frame.value.columns)
    assert table["Run"].tolist() == ["lenet5 s0", "lenet5 s1"]
    assert table["State"].tolist() == ["finished"] * 2 and table["Epoch"].tolist() == ["1/1"] * 2
    assert table["Worker"].str.startswith("tcp://127.0.0.1:").all() and table["Worker"].nunique() == 1
    assert any("2 finished" in caption.value for caption in at.caption)
