"""Preprocessing defaults per kind of source: colour cutouts build colour, FITS sources stay as they were."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.acquire.sources import COLOUR_CUTOUT_DEFAULTS
from core.prepare.builder import build_dataset
from core.prepare.selection import is_colour_source, preprocess_defaults
from core.acquire.catalogue import load_source
from core.acquire.importer import import_source
from core.cli import main
from core.prepare.dataset import load_dataset
from core.prepare.preprocessing import PreprocessConfig
from core.acquire.sample import generate_sample

GZ1 = Path(__file__).resolve().parents[1] / "data" / "gz1"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 of the shipped JPEGs imported as a user would (`core import`): kind ``imported``, so only the
    images say "cutouts"."""
    own = tmp_path_factory.mktemp("own")
    (own / "images").mkdir()
    catalogue = pd.read_csv(GZ1 / "catalog.csv").groupby("classification").head(8)
    for file in catalogue["file"]:
        shutil.copy(GZ1 / file, own / file)
    catalogue.to_csv(own / "catalog.csv", index=False)
    root = tmp_path_factory.mktemp("data") / "imported" / "mine"
    import_source(own / "catalog.csv", own, out=root)
    return root


def test_jpeg_cutouts_build_colour_with_the_studied_crop_and_stretch(imported, tmp_path):
    source = load_source(imported)
    assert source.kind == "imported" and is_colour_source(source)
    assert preprocess_defaults(source) == PreprocessConfig(**COLOUR_CUTOUT_DEFAULTS)
    out = build_dataset(imported, scheme="gz1", out=tmp_path / "ds", n_jobs=1, val_fraction=0.25, test_fraction=0.25)
    dataset = load_dataset(out)
    params = dataset.manifest["params"]["preprocess"]
    assert (params["channels"], params["crop"], params["stretch"], params["centre"]) == (3, 0.3, "linear", "none")
    assert dataset.x.shape[1:] == (64, 64, 3)
    # gri colour survives: the channels differ (a grey image repeated thrice would not).
    assert abs(dataset.x[..., 0] - dataset.x[..., 2]).mean() > 0.01


def test_an_option_given_on_the_command_line_wins_over_the_source_default(imported, tmp_path, capsys):
    out = tmp_path / "grey"
    assert main(["build", "--source", str(imported), "--scheme", "gz1", "--channels", "1", "--size", "16",
                 "--val", "0.25", "--test", "0.25", "--out", str(out), "--jobs", "1"]) == 0
    params = load_dataset(out).manifest["params"]["preprocess"]
    assert (params["channels"], params["size"], params["crop"], params["stretch"]) == (1, 16, 0.3, "linear")


def test_fits_sources_keep_the_grey_defaults(tmp_path):
    sample = generate_sample(tmp_path / "sample", n=12, seed=1, n_jobs=1)
    source = load_source(sample)
    assert not is_colour_source(source)
    assert preprocess_defaults(source) == PreprocessConfig()
    # Half JPEG is not "most": a mixed folder keeps the FITS defaults.
    mixed = dataclasses.replace(source, table=source.table.assign(
        path=[p if i % 2 else str(p).replace(".fits.gz", ".jpg") for i, p in enumerate(source.table["path"])]))
    assert not is_colour_source(mixed)
