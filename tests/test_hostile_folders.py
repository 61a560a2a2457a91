"""Hostile and careless output folders: the tool replaces only what it wrote (issue 8, part 1).

Each CLI case runs the real ``python -m core`` in a subprocess against a small real world (30
shipped Galaxy Zoo galaxies as a source, a dataset built from it, a sample, a user's folder) and
asserts the exit code, the one-line message, and that nothing outside the folder the command
may write was created, changed or deleted (a snapshot of the whole tree before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.prepare.dataset import is_dataset, load_dataset
from core.prepare.save import (STAGING_MARKER, STALE_AFTER_S, DatasetBusyError, dataset_writer,
                               save_dataset)
from core.errors import ConfigError
from core.io import check_folder_name
from tests.conftest import _copy_gz1

ROOT = Path(__file__).resolve().parent.parent
BUILD = ["--size", "32", "--min-quality", "0", "--min-size", "0", "--extent", "0", "--catalog", "all", "--jobs", "1"]


# --- the world every case starts from --------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/src`` (30 real galaxies), ``data/datasets/ds`` built from it, ``data/sample`` (12 galaxies),
    ``mine/thesis.tex`` and an imported-looking ``data/ned`` (catalog.csv + images/, no marker)."""
    from core.prepare.builder import build_dataset
    from core.acquire.sample import generate_sample

    root = tmp_path_factory.mktemp("base")
    _copy_gz1(root / "data" / "src", n=30)
    build_dataset(root / "data" / "src", preprocess=_cli_preprocess(root / "data" / "src"), min_quality=0.0,
                  min_size=0, extent=0, catalog="all", n_jobs=1, out=root / "data" / "datasets" / "ds")
    generate_sample(root / "data" / "sample", n=12, seed=0, n_jobs=1)
    (root / "mine").mkdir()
    (root / "mine" / "thesis.tex").write_text("\\section{keep me}\n")
    (root / "data" / "ned" / "images").mkdir(parents=True)
    (root / "data" / "ned" / "catalog.csv").write_text("name,classification,file\nNGC 1,E,images/NGC_1.fits\n")
    (root / "data" / "ned" / "images" / "NGC_1.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
    return root


@pytest.fixture
def world(base: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`base` (source paths differ, so its dataset counts as built with other parameters)."""
    root = tmp_path / "w"
    shutil.copytree(base, root, symlinks=True)
    return root


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root`` with its kind, mode and content hash."""
    state: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            kind: object = ("link", os.readlink(path))
        elif path.is_dir():
            kind = ("dir", oct(info.st_mode))
        else:
            kind = ("file", oct(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
        state[path.relative_to(root).as_posix()] = kind
    return state


def changed(before: dict[str, object], after: dict[str, object]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def cli(args: list[str], *, data_dir: Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GALAXY_MORPH_DATA_DIR": str(data_dir), "GALAXY_MORPH_RUNS_DIR": str(data_dir / "runs")}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, umask=umask)


# --- the corpus ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile command: ``argv`` (``{w}`` is the world's root), a setup, the exit code, the message
    (a regex on stderr) and the only paths it may change (prefixes relative to the world)."""

    id: str
    argv: list[str]
    rc: int
    message: str = ""
    setup: Callable[[Path], None] | None = None
    may_change: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = field(default=None)


def _build(out: str, *extra: str) -> list[str]:
    return ["build", "--source", "{w}/data/src", "--out", out, *BUILD, *extra]


def _put(rel: str, text: str) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        (w / rel).write_text(text)
    return setup


def _symlink_to_dataset(w: Path) -> None:
    (w / "link").symlink_to(w / "data" / "datasets" / "ds")


def _fake_manifest(w: Path) -> None:
    fake = w / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({"title": "my own manifest"}))
    (fake / "x.npy").write_bytes(b"mine")


def _cli_preprocess(source: Path):
    """What `build --size 32` gives this source: its kind's defaults (colour cutouts differ) at 32 px."""
    import dataclasses

    from core.prepare.selection import preprocess_defaults
    from core.acquire.catalogue import load_source

    return dataclasses.replace(preprocess_defaults(load_source(source)), size=32)


def _own_dataset(w: Path) -> None:
    """A dataset built by this tool from the world's own source, so parameters can match."""
    from core.prepare.builder import build_dataset

    build_dataset(w / "data" / "src", preprocess=_cli_preprocess(w / "data" / "src"), min_quality=0.0, min_size=0,
                  extent=0, catalog="all", n_jobs=1, out=w / "own")


def _seed_is(seed: int) -> Callable[[Path], None]:
    def check(w: Path) -> None:
        assert json.loads((w / "own" / "manifest.json").read_text())["params"]["seed"] == seed
    return check


def _sample_n_is(n: int) -> Callable[[Path], None]:
    def check(w: Path) -> None:
        assert json.loads((w / "data" / "sample" / "SAMPLE.json").read_text())["n"] == n
    return check


def _import(catalog: str, out: str, *extra: str) -> list[str]:
    return ["import", "--catalog", catalog, "--images", "{w}/data/src/images", "--out", out, *extra]


def _prior_import(w: Path) -> None:
    from core.acquire.importer import import_source

    other = w / "data" / "src" / "other.csv"
    other.write_text((w / "data" / "src" / "catalog.csv").read_text())
    import_source(other, w / "data" / "src" / "images", out=w / "imp")


CASES = [
    # build: the data-loss reports of issue 8
    Case("build-into-users-folder", _build("{w}/mine"), 2, r"--out .*mine is not empty and is not a dataset this "
         r"tool wrote \(it holds thesis.tex\).*Choose a new or empty folder"),
    Case("build-into-source-parent", _build("{w}/data"), 2, r"--out .*data contains .*src, which this command reads"),
    Case("build-into-source-itself", _build("{w}/data/src"), 2, r"--out .*src is .*src, which this command reads"),
    Case("build-into-datasets-folder", _build("{w}/data/datasets"), 2,
         r"holds other dataset folders.*Give a folder of its own, e.g. .*datasets/NAME"),
    Case("build-into-images-folder", _build("{w}/data/src/images"), 2, r"is not a dataset this tool wrote"),
    Case("build-onto-a-file", _build("{w}/mine/thesis.tex"), 2, r"--out must be a folder; got the file"),
    Case("build-through-a-symlink", _build("{w}/link"), 2, r"is a symbolic link", setup=_symlink_to_dataset),
    Case("build-into-a-sample", _build("{w}/data/sample"), 2, r"holds a sample, not a dataset"),
    Case("build-into-a-fake-manifest", _build("{w}/fake"), 2, r"is not a dataset this tool wrote", setup=_fake_manifest),
    Case("build-over-dataset-with-notes", _build("{w}/data/datasets/ds", "--force"), 2,
         r"is a dataset but also holds files this tool did not write \(notes.txt\)",
         setup=_put("data/datasets/ds/notes.txt", "my notes")),
    Case("build-over-dataset-other-params", _build("{w}/data/datasets/ds"), 2,
         r"holds a dataset made with other parameters. Pass --force to replace it"),
    Case("build-over-own-dataset-force", _build("{w}/own", "--seed", "1", "--force"), 0, r"", setup=_own_dataset,
         may_change=("own", "data/src/.cache"), check=_seed_is(1)),
    Case("build-over-own-dataset-other-seed", _build("{w}/own", "--seed", "1"), 2,
         r"holds a dataset made with other parameters", setup=_own_dataset, check=_seed_is(0)),
    Case("build-same-params-is-a-cache-hit", _build("{w}/own"), 0, r"", setup=_own_dataset),
    Case("build-into-empty-folder", _build("{w}/empty"), 0, r"", setup=lambda w: (w / "empty").mkdir(),
         may_change=("empty", "data/src/.cache"), check=lambda w: load_dataset(w / "empty")),
    # sample
    Case("sample-into-users-folder", ["sample", "--out", "{w}/mine", "--n", "5"], 2,
         r"out .*mine is not empty and is not a sample this tool wrote \(it holds thesis.tex\)"),
    Case("sample-over-a-fetched-source", ["sample", "--out", "{w}/data/ned", "--n", "5"], 2,
         r"is not a sample this tool wrote \(it holds catalog.csv, images\)"),
    Case("sample-if-missing-into-users-folder", ["sample", "--out", "{w}/mine", "--n", "5", "--if-missing"], 2,
         r"is not a sample this tool wrote \(it holds thesis.tex\)"),
    Case("sample-over-a-dataset", ["sample", "--out", "{w}/data/datasets/ds", "--n", "5"], 2,
         r"holds a dataset, not a sample"),
    Case("sample-other-n-needs-force", ["sample", "--out", "{w}/data/sample", "--n", "5"], 2,
         r"holds a sample made with other parameters. Pass --force"),
    Case("sample-other-n-with-force", ["sample", "--out", "{w}/data/sample", "--n", "5", "--force", "--workers", "1"],
         0, r"", may_change=("data/sample",), check=_sample_n_is(5)),
    # import
    Case("import-into-users-folder", _import("{w}/data/src/catalog.csv", "{w}/mine"), 2,
         r"is not empty and is not an imported source this tool wrote \(it holds thesis.tex\)"),
    Case("import-over-its-own-catalogue", _import("{w}/data/src/catalog.csv", "{w}/data/src"), 2,
         r"is not an imported source this tool wrote \(it holds .cache, GZ1.json, SOURCE.md and 2 more"),
    Case("import-over-other-import", _import("{w}/data/src/catalog.csv", "{w}/imp"), 2,
         r"holds an imported source made with other parameters. Pass --force", setup=_prior_import),
    Case("import-again-same-inputs", _import("{w}/data/src/other.csv", "{w}/imp"), 0, r"", setup=_prior_import,
         may_change=("imp/catalog.csv", "imp/import_report.json")),
    *[Case(f"import-name-{label}", ["import", "--catalog", "{w}/data/src/catalog.csv", "--images",
                                    "{w}/data/src/images", f"--name={name}"], 2, r"name must be letters, digits")
      for label, name in (("dot", "."), ("dotdot", ".."), ("slash", "a/b"), ("dash", "-rf"), ("space", "my set"),
                          ("empty", ""))],
    # compare and run folders
    Case("compare-into-users-folder", ["compare", "--out", "{w}/mine"], 2,
         r"--out .*mine is not empty and is not a comparison report this tool wrote"),
    Case("compare-into-a-dataset", ["compare", "--out", "{w}/data/datasets/ds"], 2,
         r"holds a dataset, not a comparison report"),
    Case("train-runs-into-a-dataset", ["train", "--dataset", "{w}/data/datasets/ds", "--models", "lenet5",
                                       "--runs-dir", "{w}/data/datasets/ds"], 2,
         r"runs_dir .*ds holds things that are not runs \(images.parquet, manifest.json, meta.parquet and 1 more\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_output_folder(case: Case, world: Path) -> None:
    if case.setup is not None:
        case.setup(world)
    before = snapshot(world)
    done = cli([a.replace("{w}", str(world)) for a in case.argv], data_dir=world / "data")
    after = snapshot(world)

    assert done.returncode == case.rc, done.stderr[-2000:]
    if case.rc == 2:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert __import__("re").search(case.message, lines[0]), lines[0]
    outside = {p for p in changed(before, after) if not any(p == m or p.startswith(m + "/") for m in case.may_change)}
    assert outside == set(), f"written or deleted outside {case.may_change}: {sorted(outside)[:10]}"
    assert (world / "mine" / "thesis.tex").read_text() == "\\section{keep me}\n"
    if case.check is not None:
        case.check(world)


# --- the folder-name validator the dashboard and import share ----------------------------------------


@pytest.mark.parametrize("name", [".", "..", "../x", "a/b", "-rf", "my set", "", "a" * 101, "x..y", "tab\tname",
                                  "nul\x00name", "ünï"])
def test_bad_folder_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"name must be letters, digits.*got "):
        check_folder_name(name)


@pytest.mark.parametrize("name", ["sample-hubble3", "ds_1", "a.b", "A" * 100])
def test_good_folder_names_pass(name: str) -> None:
    assert check_folder_name(name) == name


def test_a_name_with_spaces_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match="Spaces are not allowed: use '_'"):
        check_folder_name("my set")


# --- a save killed with kill -9, and the next run -----------------------------------------------------

_STALLED_SAVE = textwrap.dedent("""
    import sys
    import numpy as np, pandas as pd
    from core.prepare.save import save_dataset

    class Stall:
        '''images table whose writing reports the staging folder, then waits for a line on stdin.'''
        def reset_index(self, drop=False):
            return self
        def to_parquet(self, path, index=False):
            print(path, flush=True)
            sys.stdin.readline()

    meta = pd.DataFrame({"name": ["a", "b"], "label": ["E", "E"], "y": [0, 0], "split": ["train", "test"]})
    save_dataset(sys.argv[1], x=np.zeros((2, 4, 4, 1), np.float32), meta=meta, classes=["E"], manifest={},
                 images=Stall())
""")


def _stalled_save(out: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_SAVE, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    staging = Path(proc.stdout.readline().strip()).parent.parent  # the file is written in <staging>/new/
    return proc, staging


def _age(path: Path) -> None:
    """Date ``path`` back past the grace period (what an hour of waiting would do)."""
    old = path.stat().st_mtime - 2 * STALE_AFTER_S
    os.utime(path, (old, old))


def test_a_killed_save_leaves_staging_that_the_next_build_of_the_target_removes(base: Path, tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    proc, staging = _stalled_save(datasets / "ds")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert staging.name.startswith(".ds.") and staging.name.endswith(".tmp") and staging.is_dir()
    assert not (datasets / "ds").exists()
    (datasets / "mine.txt").write_text("not ours")
    other = cli([a.replace("{w}", str(base)) for a in _build(str(datasets / "new"))], data_dir=tmp_path)
    assert other.returncode == 0, other.stderr
    assert staging.is_dir()  # another target's build leaves it alone
    done = cli([a.replace("{w}", str(base)) for a in _build(str(datasets / "ds"))], data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in datasets.iterdir()) == ["ds", "mine.txt", "new"]


def test_a_live_save_is_never_cleaned_even_when_old(tmp_path: Path) -> None:
    proc, staging = _stalled_save(tmp_path / "ds")
    try:
        _age(staging)
        with pytest.raises(DatasetBusyError, match="another build is writing the dataset .*ds"):
            with dataset_writer(tmp_path / "ds"):
                pass
        assert staging.is_dir()
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert is_dataset(tmp_path / "ds") and not staging.exists()


def _staging(folder: Path, *, target: str) -> Path:
    folder.mkdir()
    (folder / STAGING_MARKER).write_text(json.dumps({"written_by": "galaxy-morph dataset save", "target": target}))
    return folder


def test_only_the_tools_own_staging_of_the_same_target_is_removed(tmp_path: Path) -> None:
    stale = _staging(tmp_path / ".ds.abcd_123.tmp", target="ds")
    (stale / "x.npy").write_bytes(b"partial")
    other_target = _staging(tmp_path / ".ds2.efgh_456.tmp", target="ds2")
    foreign = _staging(tmp_path / ".ds.ijkl_789.tmp", target="ds")
    (foreign / "thesis.tex").write_text("keep")
    unmarked = [tmp_path / ".ds.mnop_012.tmp", tmp_path / ".ds.tmp", tmp_path / "ds.abcd_123.tmp",
                tmp_path / ".ds.ABCD1234.tmp", tmp_path / ".ds.old-abcd_123.tmp"]
    for folder in unmarked:
        folder.mkdir()
        (folder / "x.npy").write_bytes(b"mine")
    lying = _staging(tmp_path / ".ds.qrst_345.tmp", target="other")  # a marker naming another target
    for folder in (stale, other_target, foreign, lying, *unmarked):
        _age(folder)
    with dataset_writer(tmp_path / "ds"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (other_target, foreign, lying, *unmarked))


def test_a_save_killed_between_the_renames_gets_its_dataset_back(tmp_path: Path) -> None:
    x = np.zeros((2, 4, 4, 1), np.float32)
    meta = pd.DataFrame({"name": ["a", "b"], "label": ["E", "E"], "y": [0, 0], "split": ["train", "test"]})
    save_dataset(tmp_path / "ds", x=x, meta=meta, classes=["E"], manifest={})
    staging = _staging(tmp_path / ".ds.abcd_123.tmp", target="ds")
    (tmp_path / "ds").rename(staging / "old")  # where a save without RENAME_EXCHANGE puts it aside
    with dataset_writer(tmp_path / "ds"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"] and is_dataset(tmp_path / "ds")


def test_a_dataset_being_written_by_another_writer_is_not_written_twice(tmp_path: Path) -> None:
    import threading

    x = np.zeros((2, 4, 4, 1), np.float32)
    meta = pd.DataFrame({"name": ["a", "b"], "label": ["E", "E"], "y": [0, 0], "split": ["train", "test"]})
    save_dataset(tmp_path / "ds", x=x, meta=meta, classes=["E"], manifest={})
    first = load_dataset(tmp_path / "ds").content_hash
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            save_dataset(tmp_path / "ds", x=x + 1, meta=meta, classes=["E"], manifest={})
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    with dataset_writer(tmp_path / "ds"):
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], DatasetBusyError), errors
    assert load_dataset(tmp_path / "ds").content_hash == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# --- the user's umask -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640),
                                                      (0o002, 0o775, 0o664)])
def test_built_dataset_keeps_the_umask(base: Path, tmp_path: Path, umask: int, folder: int, file: int) -> None:
    out = tmp_path / "datasets" / "ds"
    done = cli([a.replace("{w}", str(base)) for a in _build(str(out))], data_dir=tmp_path, umask=umask)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == folder
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(
        ["images.parquet", "manifest.json", "meta.parquet", "x.npy"], file)


# --- the dashboard's dataset name ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", "../x", "-rf", "my set", ""])
def test_preprocessing_page_refuses_a_bad_dataset_name(world_app: Path, name: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    data_dir = world_app / "data"
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(world_app / "runs"))
    before = snapshot(data_dir)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/preprocessing.py")
    at.run()
    at.text_input(key="pp_dataset_name").set_value(name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # The message is shown as text: Markdown's punctuation arrives escaped, the characters are the same.
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any(e.startswith("dataset name must be letters, digits") and repr(name) in e for e in errors), errors
    assert at.button(key="pp_build").disabled
    assert "pp_build_job" not in at.session_state
    assert {p for p in changed(before, snapshot(data_dir)) if ".cache" not in p.split("/")} == set()


def test_preprocessing_page_offers_to_replace_a_taken_name(world_app: Path, base: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(world_app / "data"))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(world_app / "runs"))
    taken = world_app / "data" / "datasets" / "taken"
    shutil.copytree(base / "data" / "datasets" / "ds", taken)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/preprocessing.py")
        at.run()
        assert not [c for c in at.checkbox if c.key == "pp_replace"]
        at.text_input(key="pp_dataset_name").set_value("taken")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        # The only error allowed is the page's own refusal of settings that keep too few of this 12-galaxy
        # sample to split; the taken name itself blocks nothing: the replace box is offered, unticked.
        errors = [e.value for e in at.error]
        refused = any("would be refused" in e for e in errors)
        assert all("would be refused" in e for e in errors), errors
        assert at.checkbox(key="pp_replace").value is False and at.button(key="pp_build").disabled == refused
    finally:
        shutil.rmtree(taken)


@pytest.fixture(scope="module")
def world_app(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/sample`` plus the gz1 source for the dashboard (no runs: the page does not need them)."""
    root = tmp_path_factory.mktemp("app")
    shutil.copytree(base / "data" / "sample", root / "data" / "sample")
    (root / "runs").mkdir()
    return root
