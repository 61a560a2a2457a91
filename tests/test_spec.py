"""TrainSpec and BuildSpec are what background jobs are started from and what their records keep."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import time
import typing
from pathlib import Path

import pytest

from core import jobs
from core.cli import build_parser
from core.errors import ConfigError
from core.fields import describe, read_spec_file, write_spec_file
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import QualityThresholds
from core.spec import (
    SPEC_KINDS,
    BuildSpec,
    FetchSpec,
    ImportSpec,
    ScrapeSpec,
    TrainSpec,
    spec_from_argv,
)
from tests.test_jobs import data_dir  # noqa: F401 - a fixture: a data folder of its own, its jobs killed after


def test_train_spec_round_trips_through_its_command_line() -> None:
    spec = TrainSpec(dataset="data/datasets/h3", models=("lenet5", "resnet18"), seeds=(0, 2), protocol="equal",
                     folds=5, repeats=2, epochs=7, learning_rate=3e-4, augment=False, xla=True, schedule="cosine",
                     label_smoothing=0.1)
    assert spec_from_argv(TrainSpec, spec.to_argv()) == spec
    assert spec.overrides()["label_smoothing"] == 0.1
    assert spec_from_argv(TrainSpec, spec.to_argv(resume=True)) == spec  # how to run is not what to train
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.digest() == spec_from_argv(TrainSpec, spec.to_argv()).digest()
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
    # The spec travelled as a file the command read, not as flags: argv has --spec and how to run it only.
    spec_file = loaded.command[loaded.command.index("--spec") + 1]
    assert Path(spec_file).parent == jobs.jobs_dir() and read_spec_file(spec_file, TrainSpec) == spec
    assert loaded.command[3:] == ["train", "--spec", spec_file, "--progress-file", str(loaded.progress_file)]
    # The panel counts every planned run: 3 models x 2 seeds x 3 folds, not models x seeds.
    _, _, figures = job_figures(loaded, jobs.FAILED)
    assert dict(figures)["Run"] == "0 of 18"

    build = jobs.submit(BuildSpec(source=str(tmp_path / "no-such-source")), label="build",
                        out=str(data_dir / "datasets" / "x"))
    _wait_until_ended(build)
    assert sorted(j.kind for j in jobs.list_jobs()) == ["build", "train"]
    assert jobs.load_job(build.id).spec["source"] == str(tmp_path / "no-such-source")
    assert build.command[4] == "--spec" and build.command[6:8] == ["--out", str(data_dir / "datasets" / "x")]
    assert "no-such-source" in jobs.tail_log(build)  # the command read the source from the file


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


# ---------------------------------------------------------------------------- one field, written once

def _subparser(command: str):
    parser = build_parser(command)
    return parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001 - argparse keeps its subparsers here


def _leaf_fields(cls: type, prefix: tuple[str, ...] = ()) -> dict[str, dataclasses.Field]:
    hints = typing.get_type_hints(cls, localns={"PreprocessConfig": PreprocessConfig,
                                                "QualityThresholds": QualityThresholds})
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_leaf_fields(hints[f.name], (*prefix, f.name)))
        else:
            out[f.name] = f
    return out


def _field_choices(cls: type, name: str) -> tuple | None:
    """A field's allowed values as the spec sees them: a Literal type's, else option(choices=...)."""
    for owner in (cls, PreprocessConfig, QualityThresholds):
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if name in fields:
            hint = typing.get_type_hints(owner, localns={"PreprocessConfig": PreprocessConfig,
                                                         "QualityThresholds": QualityThresholds})[name]
            for candidate in (hint, *typing.get_args(hint)):
                if typing.get_origin(candidate) is typing.Literal:
                    return typing.get_args(candidate)
            choices = fields[name].metadata.get("choices")
            return choices() if callable(choices) else choices
    raise KeyError(name)


@pytest.mark.parametrize("kind", sorted(SPEC_KINDS))
def test_every_spec_field_is_a_flag_and_every_flag_of_a_choice_is_a_field(kind: str) -> None:
    """The CLI's flags are made from the spec's fields: a new field is a new flag, with its default and choices."""
    cls = SPEC_KINDS[kind]
    actions = {a.dest: a for a in _subparser(kind)._actions}
    fields = _leaf_fields(cls)
    flagless = {name for name, f in fields.items() if not f.metadata.get("cli", True)}
    assert flagless <= {"percentiles", "subtract_background"}  # only what the command line never could say
    for name, f in fields.items():
        if name in flagless:
            assert name not in actions
            continue
        action = actions[name]
        # The field's own default, or None where the command decides it (a source kind's preprocessing).
        own = list(f.default) if isinstance(f.default, tuple) else f.default
        assert action.default is None or action.default == own
        help_text = f.metadata["help"]
        assert (help_text() if callable(help_text) else help_text) in action.help
        default = f.default if f.default is not dataclasses.MISSING else None
        if default not in (None, True, False) and not f.metadata.get("default_help") and kind != "build":
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else (
                f"{default:g}" if isinstance(default, float) else str(default))
            assert f"(default: {shown})" in action.help
        assert tuple(action.choices or ()) == tuple(_field_choices(cls, name) or ())
    run_options = {"help", "spec", "out", "jobs", "force", "replace_trained", "force_while_training", "progress_file",
                   "runs_dir", "resume", "threads", "cache_dir", "prefer", "limit"}
    assert set(actions) - set(fields) <= run_options  # nothing else chooses what the command does


@pytest.mark.parametrize("spec", [
    BuildSpec(source="data/sample", scheme="hubble4", seed=3, exclude_dwarfs=True, val_fraction=0.2,
              preprocess=PreprocessConfig(crop=0.3, size=32, stretch="linear", channels=3, centre="none",
                                          percentiles=(1.0, 99.0)),
              thresholds=QualityThresholds(min_quality=0.2, extent=0.0)),
    TrainSpec(dataset="d", models=("lenet5",), seeds=(0, 1), folds=3, epochs=2, augment=False, schedule="cosine"),
    ScrapeSpec(classes=("E",), out="data/ned", max_pages=2),
    FetchSpec(retry_failed=True),
    ImportSpec(catalog="mine.csv", images="imgs"),
])
def test_a_spec_file_holds_every_field_and_reads_back_as_the_same_spec(spec, tmp_path: Path) -> None:
    """The file a job runs from is the spec's fields, nested configs included, and nothing else."""
    path = write_spec_file(spec, tmp_path / "spec.json")
    values = json.loads(Path(path).read_text())
    assert values.pop("kind") == spec.kind
    assert set(values) == {f.name for f in dataclasses.fields(spec)}
    if isinstance(spec, BuildSpec):
        assert set(values["preprocess"]) == {f.name for f in dataclasses.fields(PreprocessConfig)}
        assert set(values["thresholds"]) == {f.name for f in dataclasses.fields(QualityThresholds)}
    assert read_spec_file(path, type(spec)) == spec
    # And the command reads the same spec from it: `python -m core <kind> --spec FILE`.
    args = build_parser(spec.kind).parse_args([spec.kind, "--spec", path])
    read = type(spec).from_args(args, **({"default_source": "", "default_size": 64} if spec.kind == "build" else {}))
    assert read == spec


def test_a_spec_the_command_line_cannot_say_travels_as_a_file(tmp_path: Path) -> None:
    spec = BuildSpec(source="s", preprocess=PreprocessConfig(percentiles=(1.0, 99.0)))
    with pytest.raises(ConfigError, match="percentiles=.*have no `build` option.*--spec FILE"):
        spec.to_argv()
    assert spec_from_argv(BuildSpec, BuildSpec(source="s").to_argv(), default_source="x") == BuildSpec(source="s")


def test_spec_and_flags_together_are_refused(tmp_path: Path) -> None:
    path = write_spec_file(BuildSpec(source="s"), tmp_path / "spec.json")
    args = build_parser("build").parse_args(["build", "--spec", path, "--crop", "0.3", "--exclude-dwarfs"])
    with pytest.raises(ConfigError, match=r"--spec .* holds the whole build spec; got also --crop, --exclude-dwarfs"):
        BuildSpec.from_args(args, default_source="", default_size=64)


def test_a_required_field_left_out_is_named() -> None:
    with pytest.raises(ConfigError, match="--dataset is required"):
        TrainSpec.from_args(build_parser("train").parse_args(["train"]))


_GOOD_BUILD = {"kind": "build", "source": "s"}


@pytest.mark.parametrize(("content", "message"), [
    (b"x" * 70_000, "is refused: it is larger than"),
    (b"{not json", "is not JSON"),
    (b"\xff\xfe", "is not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"[" * 60_000, "is not JSON"),
    (b'{"kind": "build", "source": "s", "duplicate_arcsec": 1' + b"0" * 400 + b"}", "must be a finite number"),
    (b'{"kind": "build", "source": "s", "thresholds": {"min_size": 1' + b"0" * 30 + b"}}", "must be a 64-bit integer"),
    (json.dumps({**_GOOD_BUILD, "crop": 0.3}).encode(), r"unknown key\(s\) crop; allowed are source, scheme"),
    (json.dumps({**_GOOD_BUILD, "preprocess": {"crop": 0.3, "sharpen": 1}}).encode(),
     r"preprocess has unknown key\(s\) sharpen"),
    (json.dumps({**_GOOD_BUILD, "preprocess": {"crop": "0.3"}}).encode(), r"preprocess: crop must be a finite number"),
    (json.dumps({**_GOOD_BUILD, "preprocess": {"crop": 1.5}}).encode(), r"crop must be in \(0, 1\]; got 1.5"),
    (b'{"kind": "build", "source": "s", "seed": NaN}', "seed must be a 64-bit integer"),
    (json.dumps({**_GOOD_BUILD, "thresholds": {"min_quality": 1e308 * 10}}).replace("Infinity", "1e999").encode(),
     "min_quality must be a finite number"),
    (json.dumps({**_GOOD_BUILD, "exclude_dwarfs": "yes"}).encode(), "exclude_dwarfs must be true or false"),
    (json.dumps({**_GOOD_BUILD, "conflicts": "vote"}).encode(), "conflicts must be one of 'drop', 'majority', 'first'"),
    (json.dumps({**_GOOD_BUILD, "val_fraction": 0.6, "test_fraction": 0.6}).encode(), "must be < 1"),
    (json.dumps({**_GOOD_BUILD, "preprocess": {"percentiles": [1, 2, 3]}}).encode(), "percentiles must be a list of 2"),
    (json.dumps({**_GOOD_BUILD, "source": None}).encode(), "source must not be null"),
    (json.dumps({"kind": "train", "dataset": "d"}).encode(), "is a 'train' spec; got it for `build`"),
    (json.dumps({"kind": "build"}).encode(), "lacks source"),
])
def test_a_hostile_spec_file_is_refused_in_one_line_naming_it(content: bytes, message: str, tmp_path: Path,
                                                              capsys) -> None:
    path = tmp_path / "crafted.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_spec_file(path, BuildSpec)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    # The command says the same in one line, exit code 2, before reading any source.
    from core.cli import main

    assert main(["build", "--spec", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "crafted.json" in err


def test_a_spec_file_that_is_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="is refused: it is a named pipe"):
        read_spec_file(path, TrainSpec)


@pytest.mark.parametrize("values", [
    {"dataset": "d", "epochs": 0}, {"dataset": "d", "learning_rate": -1e-3}, {"dataset": "d", "shift": 1.5},
    {"dataset": "d", "batch_size": 2.5}, {"dataset": "d", "optimizer": "rmsprop"}, {"dataset": "d", "xla": 1},
    {"dataset": "d", "seeds": [True]}, {"dataset": "d", "models": "lenet5"},
])
def test_a_train_spec_file_out_of_range_is_refused(values: dict) -> None:
    with pytest.raises(ConfigError, match="a train spec"):
        TrainSpec.from_dict(values)


# ---------------------------------------------------------------------------- the dashboard's widgets, too

ROOT = Path(__file__).resolve().parent.parent
WIDGET_CALLS = {"slider", "select_slider", "selectbox", "multiselect", "number_input", "text_input", "toggle",
                "checkbox", "segmented_control", "radio", "pills"}
SPEC_PAGES = ("app.py", "pages/preprocessing.py", "pages/balance.py", "pages/training.py", "pages/data.py")


def _widget_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in WIDGET_CALLS]


def _field_keys(call: ast.Call) -> list[str] | None:
    """The WIDGETS keys a call's ``**state.widget_args(KEY)`` names (an f-string: every key it can be)."""
    from ui import state

    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg is None and isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "widget_args":
            key = value.args[0]
            if isinstance(key, ast.Constant):
                return [key.value]
            prefix = "".join(part.value for part in key.values if isinstance(part, ast.Constant))
            return [k for k in state.WIDGETS if k.startswith(prefix)]
    return None


def test_every_widget_that_sets_a_spec_field_shows_the_fields_label_help_default_and_choices() -> None:
    """A field is written once for the dashboard too: the widgets that make a BuildSpec, a TrainSpec or a
    Data page spec take their label, help, choices and default from the field's declaration
    (``option(help, label=...)``, its type and default), never from a string typed on the page."""
    from ui import state

    for key, (cls, path) in state.WIDGETS.items():
        info = describe(cls, path)
        assert info.label and info.help, (key, path)  # option(label=...) and its help are declared
        assert state.widget_args(key) == {"label": info.label, "help": info.help, "key": key}
        expected = state.DASHBOARD_DEFAULTS.get(key, info.default)
        assert state.field_default(key) == expected, key
    # Each start elsewhere than the field's default is one of these, each with its reason in ui/state.py.
    assert set(state.DASHBOARD_DEFAULTS) == {"data_max_pages", "train_batch"}
    assert state.STRETCHES == describe(BuildSpec, "preprocess.stretch").choices == ("asinh", "log", "sqrt", "linear")
    assert set(state.COLOUR_CHOICES) == set(describe(BuildSpec, "preprocess.channels").choices)
    assert state.field_choices("balance_policy") == describe(BuildSpec, "conflicts").choices
    assert state.field_choices("train_protocol") == ("equal", "tuned")

    seen: set[str] = set()
    for page in SPEC_PAGES:
        for call in _widget_calls(ROOT / page):
            keys = _field_keys(call)
            literal_key = next((k.value.value for k in call.keywords if k.arg == "key"
                                and isinstance(k.value, ast.Constant)), None)
            where = f"{page}:{call.lineno}"
            if keys is None:
                # A widget with its own key may not set a spec field by typing one again.
                assert literal_key not in state.WIDGETS, f"{where}: use **state.widget_args({literal_key!r})"
                continue
            seen.update(keys)
            assert not call.args, f"{where}: the label comes from the field (option(label=...))"
            typed = {k.arg for k in call.keywords if k.arg in ("label", "help", "key")}
            assert not typed, f"{where}: {typed} typed again beside state.widget_args"
            for k in call.keywords:  # a start value is the field's (state.field_default), not a literal
                if k.arg in ("value", "default", "index") and isinstance(k.value, (ast.Constant, ast.List)):
                    assert False, f"{where}: {k.arg}= typed on the page; use state.field_default"
    assert seen == set(state.WIDGETS), sorted(set(state.WIDGETS) ^ seen)
