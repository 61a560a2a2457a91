"""Hostile round two, datasets (issue 22, part B): concurrent writers, torn reads, full disks, staging
that is not ours, leftovers of killed builds, names the file system cannot hold, rebuilds under a
running training.

Every test is named after the audit's row. Every command runs the real ``python -m core`` (or the
real library in a child process) under a timeout, and no command may print a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.prepare.dataset import content_hash, load_dataset
from core.prepare.save import STAGING_MARKER, save_dataset
from tests.conftest import _copy_gz1
from tests.fixture_server import ned_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
BUILD = ["--size", "32", "--min-quality", "0", "--min-size", "0", "--extent", "0", "--catalog", "all", "--jobs", "1"]
TIMEOUT_S = 300


def cli(args: list[str], *, data_dir: Path, timeout: float = TIMEOUT_S, **popen: object) -> subprocess.CompletedProcess[str]:
    """``python -m core ARGS`` under a timeout; its stderr never holds a traceback."""
    env = {**os.environ, "GALAXY_MORPH_DATA_DIR": str(data_dir), "GALAXY_MORPH_RUNS_DIR": str(data_dir / "runs")}
    done = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a refused command (exit 2)."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 real Galaxy Zoo galaxies, their quality metrics cached by a first build."""
    root = tmp_path_factory.mktemp("round2") / "src"
    _copy_gz1(root, n=30)
    done = cli(["build", "--source", root, "--out", root.parent / "first", *BUILD], data_dir=root.parent)
    assert done.returncode == 0, done.stderr
    return root


# A real build (core.prepare.builder.build_dataset, what `build` runs), stopped in the middle of preprocessing:
# it prints "paused" and waits for a line on stdin, holding whatever a build holds at that moment.
_PAUSED_BUILD = textwrap.dedent("""
    import sys
    from core.prepare.builder import build_dataset
    from core.progress import Progress
    from tests.test_hostile_round2_datasets import cli_preprocess

    class PauseInPreprocessing(Progress):
        paused = False

        def update(self, n=1, *, failed=0, **info):
            super().update(n, failed=failed, **info)
            if info.get("step") == "preprocess" and not self.paused:
                self.paused = True
                print("paused", flush=True)
                sys.stdin.readline()

    source, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with PauseInPreprocessing(None, desc="build", stream=None) as progress:
        build_dataset(source, preprocess=cli_preprocess(source), out=out, seed=seed, min_quality=0.0, min_size=0,
                      extent=0, catalog="all", n_jobs=1, progress=progress, force=True)
""")


def cli_preprocess(source: str | Path):
    """What `build --size 32` gives this source."""
    import dataclasses

    from core.prepare.selection import preprocess_defaults
    from core.acquire.catalogue import load_source

    return dataclasses.replace(preprocess_defaults(load_source(source)), size=32)


def paused_build(source: Path, out: Path, *, seed: int) -> subprocess.Popen[str]:
    env = {**os.environ, "GALAXY_MORPH_DATA_DIR": str(out.parent), "GALAXY_MORPH_RUNS_DIR": str(out.parent / "runs")}
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_BUILD, str(source), str(out), str(seed)], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # returns when the build pauses (or dies: then the assert shows why)
    assert line.strip() == "paused", proc.communicate(timeout=TIMEOUT_S)
    return proc


def resume(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate("\n", timeout=TIMEOUT_S)
    assert "Traceback" not in err, err
    return proc.returncode, err


# --- row 5 -----------------------------------------------------------------------------------------


def test_row05_concurrent_builds_into_one_out_do_not_both_win(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = paused_build(source, out, seed=1)
    try:
        second = cli(["build", "--source", source, "--out", out, *BUILD, "--seed", "2", "--force"], data_dir=tmp_path)
    finally:
        rc, err = resume(first)
    assert "another build is writing the dataset" in one_line_error(second)
    assert rc == 0, err
    assert load_dataset(out).manifest["params"]["seed"] == 1  # the first build's, whole


# --- row 6 -----------------------------------------------------------------------------------------

# Swaps the dataset folder between two versions as fast as it can, then prints how often.
_REBUILDER = textwrap.dedent("""
    import sys
    import numpy as np
    import pandas as pd
    from core.prepare.save import save_dataset

    out, rounds = sys.argv[1], int(sys.argv[2])
    n = 4000
    for i in range(rounds):
        meta = pd.DataFrame({"name": [f"g{j}" for j in range(n)], "label": ["E"] * n, "y": [0] * n,
                             "split": ["train", "val", "test", "train"] * (n // 4)})
        if i % 2:
            meta = meta.iloc[::-1].reset_index(drop=True)
        save_dataset(out, x=np.full((n, 16, 16, 1), i % 2, np.float32), meta=meta, classes=["E"], manifest={})
    print(rounds)
""")


def _tiny_dataset(n: int, value: float) -> dict[str, object]:
    meta = pd.DataFrame({"name": [f"g{j}" for j in range(n)], "label": ["E"] * n, "y": [0] * n,
                         "split": ["train", "val", "test", "train"] * (n // 4)})
    return {"x": np.full((n, 16, 16, 1), value, np.float32), "meta": meta, "classes": ["E"], "manifest": {}}


def test_row06_loads_during_a_rebuild_see_one_version_never_a_mix(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    save_dataset(out, **_tiny_dataset(4000, 1.0))
    writer = subprocess.Popen([sys.executable, "-c", _REBUILDER, str(out), "60"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen, problems = set(), []
    try:
        while writer.poll() is None:
            for mmap in (False, True):
                try:
                    loaded = load_dataset(out, mmap=mmap)
                except Exception as exc:  # noqa: BLE001 - any failure to load is a finding here
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                actual = content_hash(np.asarray(loaded.x), loaded.meta)
                if actual != loaded.content_hash:
                    problems.append("torn: x.npy / meta.parquet of one version, manifest.json of another")
                seen.add(loaded.content_hash)
    finally:
        _, err = writer.communicate(timeout=TIMEOUT_S)
    assert writer.returncode == 0 and "Traceback" not in err, err
    assert not problems, f"{len(problems)} bad loads, e.g. {problems[:3]}"
    assert len(seen) >= 2, "the reader never saw the dataset change: the race was not exercised"
    # A replaced version a reader still held stays in its marked staging folder; the next save removes it.
    save_dataset(out, **_tiny_dataset(8, 0.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_row06_a_dataset_written_before_the_change_still_loads(tmp_path: Path) -> None:
    """The folder layout is unchanged: the four files of a dataset written with plain writes load as they are."""
    parts = _tiny_dataset(8, 0.5)
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "x.npy", parts["x"])
    parts["meta"].to_parquet(old / "meta.parquet", index=False)
    manifest = {"version": 1, "classes": ["E"], "content_hash": content_hash(parts["x"], parts["meta"]), "params": {}}
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_dataset(old)
    assert loaded.x.shape == (8, 16, 16, 1) and loaded.content_hash == manifest["content_hash"]
    assert load_dataset(old, mmap=True).x[0, 0, 0, 0] == np.float32(0.5)


# --- row 12 ----------------------------------------------------------------------------------------


def test_row12_a_users_folder_named_like_staging_is_never_deleted(source: Path, tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    backup = datasets / ".thesis.backup_1.tmp"
    backup.mkdir(parents=True)
    (backup / "manifest.json").write_text(json.dumps({"chapter": 3, "note": "my own manifest"}))
    (backup / "x.npy").write_bytes(b"my own numbers")
    old = backup.stat().st_mtime - 7 * 86400  # a week old: no age rule may take it for a dead save
    os.utime(backup, (old, old))
    before = {p.name: p.read_bytes() for p in backup.iterdir()}
    done = cli(["build", "--source", source, "--out", datasets / "thesis", *BUILD], data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in backup.iterdir()} == before


# --- row 13 ----------------------------------------------------------------------------------------


def test_row13_the_next_build_removes_what_a_killed_build_left_and_only_that(source: Path, tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    killed = paused_build(source, datasets / "ds", seed=1)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=TIMEOUT_S)
    leftovers = sorted(p.name for p in datasets.iterdir() if p.name.startswith(".ds.") and p.name != ".ds.lock")
    # (a killed build's lock file is left too; the next build takes it and removes it)
    assert leftovers, "the killed build left nothing: the test did not kill it mid-preprocessing"
    # Another target's leftover (its build may be alive) and the user's own files stay.
    other = datasets / ".other.abcd_123.tmp"
    other.mkdir()
    (other / STAGING_MARKER).write_text(json.dumps({"written_by": "galaxy-morph dataset save", "target": "other"}))
    (datasets / "notes.txt").write_text("mine")
    done = cli(["build", "--source", source, "--out", datasets / "ds", *BUILD], data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in datasets.iterdir()) == [".other.abcd_123.tmp", "ds", "notes.txt"]


# --- row 14 ----------------------------------------------------------------------------------------


def _fresh_source(tmp_path: Path) -> Path:
    """A source with no metrics cache yet: a command that starts the metrics pass creates one."""
    src = tmp_path / "src"
    _copy_gz1(src, n=30)
    return src


def test_row14_an_out_name_too_long_for_the_file_system_is_one_line_before_any_image_is_read(tmp_path: Path) -> None:
    src = _fresh_source(tmp_path)
    line = one_line_error(cli(["build", "--source", src, "--out", tmp_path / ("d" * 300), *BUILD], data_dir=tmp_path))
    assert "--out" in line and "300 bytes" in line and "allows 255" in line
    assert not (src / ".cache").exists()


def test_row14_an_out_under_a_regular_file_is_one_line_before_any_image_is_read(tmp_path: Path) -> None:
    src = _fresh_source(tmp_path)
    (tmp_path / "notes.txt").write_text("a file")
    line = one_line_error(cli(["build", "--source", src, "--out", tmp_path / "notes.txt" / "ds", *BUILD],
                              data_dir=tmp_path))
    assert "which is a file, not a folder" in line
    assert not (src / ".cache").exists() and (tmp_path / "notes.txt").read_text() == "a file"


def test_row14_a_catalogue_file_name_too_long_is_one_line_naming_the_row(tmp_path: Path) -> None:
    src = _fresh_source(tmp_path)
    catalogue = pd.read_csv(src / "catalog.csv")
    catalogue.loc[3, "file"] = "images/" + "b" * 300 + ".jpg"
    catalogue.to_csv(src / "catalog.csv", index=False)
    line = one_line_error(cli(["build", "--source", src, "--out", tmp_path / "ds", *BUILD], data_dir=tmp_path))
    assert str(catalogue.loc[3, "name"]) in line and "too long" in line
    assert not (src / ".cache").exists()


# --- row 18 ----------------------------------------------------------------------------------------


def test_row18_build_force_is_refused_while_a_training_reads_the_dataset(source: Path, tmp_path: Path) -> None:
    from core import runs

    out = tmp_path / "datasets" / "ds"
    shutil.copytree(source.parent / "first", out)  # what `build` wrote from this source with these options
    trained_on = load_dataset(out).content_hash
    # A run in status "running" whose process (this one) is alive: what `train` writes when it starts.
    runs.create_run(tmp_path / "runs", model="lenet5", seed=0, params={"epochs": 1}, dataset_path=out,
                    dataset_hash=trained_on)
    rebuild = ["build", "--source", source, "--out", out, *BUILD, "--seed", "5", "--force"]
    line = one_line_error(cli(rebuild, data_dir=tmp_path))
    assert "running training" in line and "--force-while-training" in line
    assert load_dataset(out).content_hash == trained_on
    done = cli([*rebuild, "--force-while-training"], data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_dataset(out).content_hash != trained_on


@pytest.fixture(scope="module")
def retrained(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data folder with a finished LeNet-5 run whose dataset was rebuilt (another seed) after training."""
    root = tmp_path_factory.mktemp("retrained")
    out = root / "datasets" / "ds"
    shutil.copytree(source.parent / "first", out)  # what `build` wrote from this source with these options
    trained = cli(["train", "--dataset", out, "--models", "lenet5", "--seeds", "0", "--epochs", "1", "--batch-size", "8"],
                  data_dir=root)
    assert trained.returncode == 0, trained.stderr
    run_id = next(p.name for p in (root / "runs").iterdir() if (p / "config.json").exists())
    rebuilt = cli(["build", "--source", source, "--out", out, *BUILD, "--seed", "5", "--force", "--replace-trained"],
                  data_dir=root)
    assert rebuilt.returncode == 0, rebuilt.stderr
    return root, run_id


def test_row18_compare_flags_a_run_whose_dataset_changed_after_training(retrained: tuple[Path, str],
                                                                        tmp_path: Path) -> None:
    root, run_id = retrained
    done = cli(["compare", run_id, "--out", tmp_path / "report"], data_dir=root)
    assert done.returncode == 0, done.stderr
    flagged = [line for line in (done.stdout + done.stderr).splitlines() if "dataset changed" in line]
    assert len(flagged) == 1 and run_id in flagged[0] and "earlier version" in flagged[0], done.stdout + done.stderr


# --- row 9 -----------------------------------------------------------------------------------------


class FullDisk:
    """A folder on a 64 KiB tmpfs (or, where this process may not mount, one under an 8 KiB file-size limit)."""

    def __init__(self, path: Path, *, mounted: bool) -> None:
        self.path, self.mounted = path, mounted

    def fill(self, leave: int) -> None:
        """Take all but ``leave`` bytes of the tmpfs (nothing to do under a file-size limit)."""
        if self.mounted:
            free = shutil.disk_usage(self.path).free
            (self.path / "filler").write_bytes(b"\0" * max(free - leave, 0))

    def run(self, args: list[str], *, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        def limit() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

        extra: dict[str, object] = {} if self.mounted else {"preexec_fn": limit}
        if env:
            extra["env"] = {**os.environ, "GALAXY_MORPH_DATA_DIR": str(data_dir),
                            "GALAXY_MORPH_RUNS_DIR": str(data_dir / "runs"), **env}
            done = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                                  text=True, timeout=TIMEOUT_S, **extra)
            assert "Traceback" not in done.stderr, done.stderr
            return done
        return cli(args, data_dir=data_dir, **extra)


@pytest.fixture
def full_disk(tmp_path: Path):
    folder = tmp_path / "full"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                                 timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        mounted = False
    try:
        yield FullDisk(folder, mounted=mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def no_space(done: subprocess.CompletedProcess[str], where: Path) -> None:
    line = one_line_error(done)
    assert line.startswith(f"error: no space left on {where}"), line


def leftovers(folder: Path) -> list[str]:
    """What a command left under ``folder``, the test's own filler aside."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != "filler")


def test_row09_build_on_a_full_disk_is_one_line_and_leaves_no_partial_dataset(source: Path, tmp_path: Path,
                                                                               full_disk: FullDisk) -> None:
    out = full_disk.path / "ds"
    no_space(full_disk.run(["build", "--source", source, "--out", out, *BUILD], data_dir=tmp_path), out)
    assert leftovers(full_disk.path) == []


def test_row09_sample_on_a_full_disk_is_one_line_and_leaves_no_partial_sample(tmp_path: Path,
                                                                              full_disk: FullDisk) -> None:
    out = full_disk.path / "sample"
    no_space(full_disk.run(["sample", "--out", out, "--n", "60"], data_dir=tmp_path), out)
    assert leftovers(full_disk.path) == []


def test_row09_import_on_a_full_disk_is_one_line_and_leaves_no_partial_source(source: Path, tmp_path: Path,
                                                                              full_disk: FullDisk) -> None:
    catalogue = pd.read_csv(source / "catalog.csv")
    big = pd.concat([catalogue] * 40, ignore_index=True)  # 1,200 rows: more than the space left
    big["name"] = [f"{n} copy {i}" for i, n in enumerate(big["name"])]
    big["file"] = [Path(f).name for f in big["file"]]  # found by name under --images
    big.to_csv(tmp_path / "catalog.csv", index=False)
    full_disk.fill(leave=4096)
    out = full_disk.path / "imported"
    no_space(full_disk.run(["import", "--catalog", tmp_path / "catalog.csv", "--images", source / "images", "--out", out],
                           data_dir=tmp_path), out)
    assert leftovers(full_disk.path) == []


def test_row09_compare_on_a_full_disk_is_one_line_and_leaves_no_partial_report(retrained: tuple[Path, str],
                                                                               full_disk: FullDisk) -> None:
    root, run_id = retrained
    out = full_disk.path / "report"
    no_space(full_disk.run(["compare", run_id, "--out", out], data_dir=root), out)
    assert leftovers(full_disk.path) == []


def test_row09_train_on_a_full_disk_is_one_line_and_leaves_no_partial_file(source: Path, tmp_path: Path,
                                                                           full_disk: FullDisk) -> None:
    runs_dir = full_disk.path / "runs"
    done = full_disk.run(["train", "--dataset", source.parent / "first", "--models", "lenet5", "--seeds", "0",
                          "--epochs", "1", "--batch-size", "8", "--runs-dir", runs_dir], data_dir=tmp_path)
    no_space(done, runs_dir)
    partial = [name for name in leftovers(full_disk.path) if ".tmp" in name]
    assert partial == []


def test_row09_fetch_on_a_full_disk_is_one_line_and_keeps_what_was_fetched(ned_server, tmp_path: Path,
                                                                           full_disk: FullDisk) -> None:
    names = [f"KRT {n:03d}" for n in range(1, 13)]
    pd.DataFrame({"name": names, "classification": "E"}).to_csv(tmp_path / "catalog.csv", index=False)
    full_disk.fill(leave=12 * 1024)
    out = full_disk.path / "images"
    done = full_disk.run(["fetch", "--catalog", tmp_path / "catalog.csv", "--out", out], data_dir=tmp_path,
                         env={"GALAXY_MORPH_NED_BASE_URL": ned_server.url, "GALAXY_MORPH_REQUEST_INTERVAL": "0.01"})
    no_space(done, out)
    assert [name for name in leftovers(full_disk.path) if ".tmp" in name] == []
