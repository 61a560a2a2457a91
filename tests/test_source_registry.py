"""A new kind of source is one module that writes its folders and one registry entry: the builder's
defaults and the dashboard's source selector, default scheme and sliders all follow the entry."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.acquire import sources
from core.acquire.catalogue import list_sources, load_source
from core.acquire.importer import import_source
from core.acquire.sample import ensure_sample
from core.acquire.sources import SourceKind, register_source_kind
from core.errors import ConfigError
from core.paths import DataLayout
from core.prepare.selection import preprocess_defaults, resolve_scheme, select
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import compute_metrics
from core.prepare.quality import QualityThresholds
from core.spec import BuildSpec
from tests.test_app import APP, _open

MARKER = "SURVEYX.json"


# ----------------------------------------------------------------- the new kind's module, as a test would add it


def write_survey_folder(out: Path, *, sky: Path) -> Path:
    """A source folder of the "survey X" kind: a catalogue and FITS cutouts, with its marker file.
    (Its galaxies come from the synthetic sky ``sky``; a real module would download them.)"""
    shutil.copytree(sky / "images", out / "images")
    shutil.copy2(sky / "catalog.csv", out / "catalog.csv")
    (out / MARKER).write_text(json.dumps({"survey": "X"}))
    return out


SURVEY_X = SourceKind(
    name="surveyx", label="survey X cutouts", marker=f"{MARKER} (written by write_survey_folder)",
    has_marker=lambda root: (root / MARKER).is_file(), folders=lambda layout: [layout.root / "surveyx"],
    default_scheme="hubble4", centred=True, grey_preprocess={"crop": 0.7, "stretch": "sqrt"},
)


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def survey_x() -> Iterator[SourceKind]:
    """The new kind, registered for one test only."""
    register_source_kind(SURVEY_X)
    yield SURVEY_X
    del sources.SOURCE_KINDS[SURVEY_X.name]


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic sample: the sidebar's built-in source, and the galaxies of the survey's folder."""
    return ensure_sample(tmp_path_factory.mktemp("sky") / "sample", n=60, seed=4)


@pytest.fixture
def data_dir(tmp_path: Path, sky: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample").symlink_to(sky, target_is_directory=True)
    write_survey_folder(data / "surveyx", sky=sky)
    return data


# ----------------------------------------------------------------- tests


def test_unregistered_the_folder_is_a_plain_catalogue_folder_with_the_usual_defaults(data_dir: Path) -> None:
    source = load_source(data_dir / "surveyx")
    assert source.kind == "folder"
    assert preprocess_defaults(source) == PreprocessConfig()
    assert [s.root.name for s in list_sources(data_dir)] == ["sample"]


def test_the_builder_takes_the_new_kinds_scheme_centring_and_preprocessing(survey_x: SourceKind, data_dir: Path) -> None:
    source = load_source(data_dir / "surveyx")
    assert source.kind == "surveyx"
    assert preprocess_defaults(source) == PreprocessConfig(crop=0.7, stretch="sqrt")
    # What `python -m core build --source data/surveyx` builds with every option left out: the
    # preprocessing the CLI fills in from the source, the spec's own scheme (none) and centring (auto).
    spec = BuildSpec(source=str(source.root), preprocess=preprocess_defaults(source),
                     thresholds=QualityThresholds(min_quality=0.0, min_size=0), catalog="all")
    assert spec.scheme is None and spec.preprocess.centre == "auto"
    selection = select(spec, compute_metrics(source.root), source=source)
    assert selection.scheme.name == "hubble4"
    assert selection.preprocess == PreprocessConfig(crop=0.7, stretch="sqrt", centre="none")
    assert selection.table["kept"].any()


def test_the_sidebar_lists_the_new_kind_and_takes_its_defaults(survey_x: SourceKind, data_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(data_dir.parent / "runs"))
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    survey = str(DataLayout(data_dir).root / "surveyx")
    selector = app.selectbox(key="sidebar_source")
    assert selector.options == ["sample", "surveyx"]  # shown by folder name
    assert app.session_state["scheme"] == "hubble3"  # the sample's
    selector.set_value(survey)
    app.run()
    assert app.session_state["scheme"] == "hubble4"
    assert any(c.value.startswith("survey X cutouts — ") for c in app.caption)  # the Home page names its kind
    _open(app, "preprocessing")
    assert (app.slider(key="pp_crop").value, app.selectbox(key="pp_stretch").value) == (0.7, "sqrt")


def test_a_kind_is_registered_once_and_must_say_how_to_recognise_its_folders(survey_x: SourceKind) -> None:
    with pytest.raises(ConfigError, match="'surveyx' is registered already"):
        register_source_kind(survey_x)
    with pytest.raises(ConfigError, match="neither has_marker nor looks_like"):
        register_source_kind(SourceKind(name="nameless", label="?", marker="?"))


def test_the_gz1_kind_comes_from_its_marker_file_never_the_folder_name(tmp_path: Path, sky: Path) -> None:
    # A copy of the shipped SDSS / Galaxy Zoo source under another name: E and Spiral galaxies only, so
    # its labels alone (no EdgeOn) would not tell; the marker it carries does.
    shipped = Path(__file__).resolve().parent.parent / "data" / "gz1"
    copy = tmp_path / "my-cutouts"
    (copy / "images").mkdir(parents=True)
    lines = (shipped / "catalog.csv").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines[1:] if line.split(",")[1] in ("E", "Spiral")][:6]
    for row in rows:
        shutil.copy2(shipped / row.rsplit(",", 1)[1], copy / row.rsplit(",", 1)[1])
    (copy / "catalog.csv").write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    shutil.copy2(shipped / sources.GZ1_MARKER, copy / sources.GZ1_MARKER)
    source = load_source(copy)
    assert source.kind == "gz1"
    spec = BuildSpec(source=str(copy), preprocess=preprocess_defaults(source))
    assert resolve_scheme(spec, source).name == "gz1"  # the kind's default scheme
    assert preprocess_defaults(source) == PreprocessConfig(**sources.COLOUR_CUTOUT_DEFAULTS)
    (copy / sources.GZ1_MARKER).unlink()
    assert load_source(copy).kind == "folder"  # without the marker, nothing else makes it Galaxy Zoo

    # The synthetic sample in a folder named gz1 is still the sample; without its own marker, a plain folder.
    renamed = tmp_path / "data" / "gz1"
    shutil.copytree(sky, renamed)
    source = load_source(renamed)
    assert source.kind == "sample"
    assert resolve_scheme(BuildSpec(source=str(renamed)), source).name == "hubble3"
    (renamed / "SAMPLE.json").unlink()
    assert load_source(renamed).kind == "folder"


def test_the_imported_kind_comes_from_the_import_report_never_the_folder_name(tmp_path: Path, sky: Path) -> None:
    # A hand-made folder inside imported/ is not an import; `core import`'s output is, wherever it lives.
    by_hand = tmp_path / "data" / "imported" / "by-hand"
    shutil.copytree(sky, by_hand)
    (by_hand / "SAMPLE.json").unlink()
    assert load_source(by_hand).kind == "folder"
    elsewhere = tmp_path / "elsewhere" / "mine"
    import_source(by_hand / "catalog.csv", by_hand, out=elsewhere)
    assert (elsewhere / "import_report.json").is_file()
    assert load_source(elsewhere).kind == "imported"
