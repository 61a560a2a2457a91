"""TrainSpec and BuildSpec are what background jobs are started from and what their records keep."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core import jobs
from core.cli import build_parser
from core.errors import ConfigError
from core.spec import BuildSpec, FetchSpec, ImportSpec, ScrapeSpec, TrainSpec
from tests.test_jobs import data_dir  # noqa: F401 - a fixture: a data folder of its own, its jobs killed after


def test_train_spec_round_trips_through_its_command_line() -> None:
    spec = TrainSpec(dataset="data/datasets/h3", models=("lenet5", "resnet18"), seeds=(0, 2), protocol="equal",
                     folds=5, repeats=2, epochs=7, learning_rate=3e-4, augment=False, xla=True, schedule="cosine",
                     label_smoothing=0.1)
    assert TrainSpec.from_argv(spec.to_argv()) == spec
    assert spec.overrides()["label_smoothing"] == 0.1
    assert TrainSpec.from_argv(spec.to_argv(resume=True)) == spec  # how to run is not what to train
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.digest() == TrainSpec.from_argv(spec.to_argv()).digest()
    assert spec.digest() != spec.__class__(**{**spec.to_dict(), "seeds": (0, 1)}).digest()
    assert spec.n_runs == 2 * 2 * 5 * 2


def test_train_spec_defaults_are_the_command_line_defaults() -> None:
    """`train --dataset D` and TrainSpec(dataset=D) are the same training."""
    args = build_parser().parse_args(["train", "--dataset", "d"])
    assert TrainSpec.from_args(args) == TrainSpec(dataset="d")
    assert TrainSpec(dataset="d").overrides()["epochs"] is None  # each model's own default


@pytest.mark.parametrize("values", [
    None, [], "train", {"models": ["lenet5"]}, {"dataset": "d", "no_such_field": 1},
    {"dataset": "d", "models": 5}, {"dataset": "d", "seeds": ["a"]}, {"dataset": "d", "folds": 2},
    {"dataset": "d", "protocol": "fast"}, {"dataset": "d", "models": []},
])
def test_a_damaged_train_spec_is_refused_with_a_message(values: object) -> None:
    with pytest.raises(ConfigError):
        TrainSpec.from_dict(values)


def _wait_until_ended(job: jobs.Job, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.job_status(job)
        if status != jobs.RUNNING:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job.id} still running after {timeout} s")


def test_a_submitted_job_keeps_its_spec_and_is_found_by_kind(data_dir: Path, tmp_path: Path) -> None:
    from ui.common import job_figures

    spec = TrainSpec(dataset=str(tmp_path / "no-such-dataset"), seeds=(0, 1), folds=3)
    job = jobs.submit(spec, label="train")
    assert _wait_until_ended(job) == jobs.FAILED  # the dataset does not exist: the job says so and ends
    loaded = jobs.load_job(job.id)
    assert loaded.kind == "train"
    assert TrainSpec.from_dict({k: v for k, v in loaded.spec.items() if k != "kind"}) == spec
    assert "no-such-dataset" in jobs.tail_log(loaded)
    # The panel counts every planned run: 3 models x 2 seeds x 3 folds, not models x seeds.
    _, _, figures = job_figures(loaded, jobs.FAILED)
    assert dict(figures)["Run"] == "0 of 18"

    build = jobs.submit(BuildSpec(source=str(tmp_path / "no-such-source")), label="build",
                        out=str(data_dir / "datasets" / "x"))
    _wait_until_ended(build)
    assert sorted(j.kind for j in jobs.list_jobs()) == ["build", "train"]
    assert jobs.load_job(build.id).spec["source"] == str(tmp_path / "no-such-source")


@pytest.mark.parametrize("spec", [["not", "a", "dict"], {"kind": "build", "dataset": "d"}, "x" * 100, 7])
def test_a_crafted_spec_in_a_record_loses_only_the_spec(data_dir: Path, spec: object) -> None:
    job = jobs.start_job(["evaluate", "no-such-run", "--runs-dir", str(data_dir / "runs")], progress_flag=None,
                         spec={"kind": "evaluate"})
    _wait_until_ended(job)
    record = json.loads(job.record_file.read_text())
    record["spec"] = spec
    job.record_file.write_text(json.dumps(record))
    loaded = jobs.load_job(job.id)
    assert loaded.spec is None and loaded.kind == "evaluate"
    assert jobs.job_problem(loaded) is None  # still a trusted job: listed, its log shown


def test_build_command_line_defaults_are_the_spec_defaults() -> None:
    """argparse reads its defaults from BuildSpec: `build` with no option is BuildSpec's defaults."""
    args = build_parser().parse_args(["build"])
    assert BuildSpec.from_args(args, default_source="s", default_size=64) == BuildSpec(source="s")


@pytest.mark.parametrize(("spec", "expected"), [
    (ScrapeSpec(classes=("E", "S0"), out="data/ned", max_pages=2),
     {"command": "scrape", "classes": ["E", "S0"], "out": "data/ned", "max_pages": 2}),
    (FetchSpec(catalog="data/ned/catalog.csv", out="data/ned/images", retry_failed=True),
     {"command": "fetch", "catalog": "data/ned/catalog.csv", "out": "data/ned/images", "retry_failed": True}),
    (ImportSpec(catalog="mine.csv", images="imgs", name="my-galaxies"),
     {"command": "import", "catalog": "mine.csv", "images": "imgs", "name": "my-galaxies"}),
])
def test_the_data_pages_specs_are_command_lines_the_cli_reads(spec, expected) -> None:
    """The Data page starts scrape, fetch and import from specs: their argv parse to the same choices."""
    args = vars(build_parser().parse_args(spec.to_argv()))
    assert {name: args[name] for name in expected} == expected
    assert spec.kind == expected["command"]


def test_a_scrape_spec_needs_classes() -> None:
    with pytest.raises(ConfigError, match="at least one NED class"):
        ScrapeSpec(classes=(), out="x")
