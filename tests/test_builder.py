"""The dataset builder end to end on the synthetic sample, against the sample's truth table."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import core.prepare.builder
import core.prepare.selection
import core.images
import core.prepare.preprocessing
import core.acquire.measure
import core.prepare.quality
from core.prepare.builder import build_dataset
from core.prepare.selection import select_candidates, split_by_object
from core.prepare.quality import compute_metrics
from core.acquire.catalogue import load_source
from core.cli import main
from core.prepare.dataset import load_dataset
from core.errors import GalaxyMorphError
from core.acquire.labels import get_scheme
from core.prepare.preprocessing import PreprocessConfig
from core.acquire.sample import generate_sample

SMALL = PreprocessConfig(size=16)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_sample(tmp_path_factory.mktemp("sample") / "sample", n=260, seed=3, n_jobs=2)


@pytest.fixture(scope="module")
def truth(sample: Path) -> pd.DataFrame:
    return pd.read_csv(sample / "truth.csv", keep_default_na=False)


@pytest.fixture(scope="module")
def built(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("datasets") / "all"
    return build_dataset(sample, preprocess=SMALL, catalog="all", out=out, n_jobs=2)


def _expected_label(truth: pd.DataFrame) -> pd.Series:
    return pd.Series(truth["hubble3"].to_numpy(), index=truth["name"])


def test_manifest_agrees_with_the_truth_table(built, truth):
    ds = load_dataset(built)
    meta, images = ds.meta, ds.images_table()
    expected = _expected_label(truth)
    assert ds.classes == ["E", "S0", "Spiral"]
    assert ds.x.shape == (len(meta), 16, 16, 1) and ds.x.dtype == np.float32
    assert np.isfinite(ds.x).all() and ds.x.min() >= 0 and ds.x.max() <= 1
    # Every kept image has its true class (conflicting objects were dropped, not guessed).
    assert (meta["label"].to_numpy() == expected.loc[meta["name"]].to_numpy()).all()
    # Counts per split and class are those truth predicts for the kept names.
    predicted = pd.crosstab(meta["split"], expected.loc[meta["name"]].to_numpy())
    for split, counts in ds.manifest["counts"].items():
        assert counts == {c: int(predicted.loc[split].get(c, 0)) for c in ds.classes}
    assert meta["name"].is_unique
    # Every object of the catalogue is a candidate, kept or with its reason.
    assert set(images["name"]) == set(truth["name"])
    assert (images.loc[images["kept"], "reason"] == "").all() and (images.loc[~images["kept"], "reason"] != "").all()
    assert sum(ds.manifest["reasons"].values()) == int((~images["kept"]).sum())
    unclassified = set(truth.loc[expected.to_numpy() == "unclassified", "name"])
    assert set(images.loc[images["reason"] == "unclassified", "name"]) == unclassified - set(
        images.loc[images["reason"] == "conflict", "name"]
    )


def test_no_galaxy_in_two_splits(built, truth):
    meta = load_dataset(built).meta
    split_of = dict(zip(meta["name"], meta["split"]))
    pairs = truth.loc[truth["duplicate_of"] != "", ["name", "duplicate_of"]]
    assert len(pairs) > 0
    for name, original in pairs.itertuples(index=False):
        assert not (name in split_of and original in split_of), (name, original)
    images = pd.read_parquet(built / "images.parquet")
    duplicates = images[images["reason"].str.startswith("duplicate_of:")]
    assert set(duplicates["name"]) | set(duplicates["reason"].str.removeprefix("duplicate_of:")) <= set(
        pairs["name"]
    ) | set(pairs["duplicate_of"])


def test_conflicting_types_are_dropped_and_counted(built, sample):
    manifest = load_dataset(built).manifest
    catalogue = pd.read_csv(sample / "catalog.csv", keep_default_na=False)
    scheme = get_scheme("hubble3")
    labels = catalogue.assign(label=scheme.classify_many(catalogue["classification"]))
    disagreeing = labels.groupby("name")["label"].nunique()
    assert manifest["conflicts"]["conflicts"] == int((disagreeing > 1).sum())
    assert manifest["reasons"].get("conflict", 0) == manifest["conflicts"]["dropped"]
    assert manifest["conflicts"]["rows"] == len(catalogue)


def test_sample_warts_rejected_at_their_known_rates(built, truth):
    images = pd.read_parquet(built / "images.parquet").merge(truth[["name", "wart"]], on="name")
    judged = images[
        ~images["reason"].isin(["unclassified", "conflict", "other_catalogue", "no_image", "other_survey", "other_band"])
    ]
    judged = judged[~judged["reason"].str.startswith("duplicate_of:")]
    rejected = judged.groupby("wart")["kept"].apply(lambda kept: 1 - kept.mean())
    reasons = judged.groupby("wart")["reason"].agg(lambda r: r.value_counts().index[0])
    assert rejected["none"] <= 0.05, rejected  # clean images: at least 95 % kept at the default thresholds
    for wart, reason in (("blank", "blank"), ("saturated", "saturated"), ("thumbnail", "too_small")):
        if wart in rejected:
            assert rejected[wart] >= 0.8 and reasons[wart] == reason, (wart, rejected[wart], reasons[wart])
    assert rejected["low_snr"] >= 0.6
    assert rejected.get("nan_region", 1.0) >= 0.6


def test_second_build_is_a_cache_hit_without_reading_images(built, sample, monkeypatch, caplog):
    before = {p.name: p.stat().st_mtime_ns for p in built.iterdir()}

    def no_reading(*args, **kwargs):
        raise AssertionError("a cache hit must not read images")

    monkeypatch.setattr(core.images, "read_image", no_reading)
    with caplog.at_level(logging.INFO, logger="core.prepare.builder"):
        again = build_dataset(sample, preprocess=SMALL, catalog="all", out=built, n_jobs=1)
    assert again == built
    assert "cache hit" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in built.iterdir()} == before


def test_metrics_cache_measures_only_new_or_changed_files(sample, tmp_path, monkeypatch):
    source = tmp_path / "src"
    shutil.copytree(sample, source, ignore=shutil.ignore_patterns(".cache"))
    measured = _record_measured_paths(monkeypatch)
    first = compute_metrics(source, n_jobs=1)
    n_images = len(load_source(source).table["path"].dropna().unique())
    assert len(first) == len(measured) == n_images
    assert (source / ".cache" / "metrics.parquet").exists()
    measured.clear()
    changed = first["path"].iloc[5]
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))
    second = compute_metrics(source, n_jobs=1)
    assert measured == [changed]
    pd.testing.assert_frame_equal(
        first.drop(columns="path").reset_index(drop=True), second.drop(columns="path").reset_index(drop=True)
    )


def test_corrupt_and_missing_files_are_recorded_and_the_rest_builds(sample, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(sample, source, ignore=shutil.ignore_patterns(".cache"))
    table = load_source(source).table
    ngc = table[table["name"].str.startswith("NGC ") & (table["classification"] == "E0")]
    broken, gone = ngc["name"].iloc[0], ngc["name"].iloc[1]
    Path(ngc["path"].iloc[0]).write_bytes(b"SIMPLE  = this is not a FITS file")
    Path(ngc["path"].iloc[1]).unlink()
    out = build_dataset(source, preprocess=SMALL, catalog="NGC", survey="all", out=tmp_path / "ds", n_jobs=1)
    images = pd.read_parquet(out / "images.parquet").set_index("name")
    for name in (broken, gone):
        assert images.loc[name, "reason"] == "unreadable" and not images.loc[name, "kept"]
        assert images.loc[name, "read_error"] != ""
    assert "not found" in images.loc[gone, "read_error"] or "No such file" in images.loc[gone, "read_error"]
    ds = load_dataset(out)
    assert len(ds.meta) > 50 and broken not in set(ds.meta["name"])
    other = set(images.index[images["reason"] == "other_catalogue"])
    assert other and not any(name.startswith("NGC") for name in other)
    assert all(name.startswith("NGC") for name in ds.meta["name"])


def test_an_image_that_fails_preprocessing_is_left_out_with_its_reason(sample, tmp_path, monkeypatch):
    real = core.prepare.preprocessing.preprocess
    victim = load_source(sample).table.query("name.str.startswith('NGC ') and classification == 'E1'")
    victim_path = Path(victim["path"].iloc[0])

    def failing(image, config, **kwargs):
        if Path(image.path) == victim_path:
            raise ValueError("crop leaves the image")
        return real(image, config, **kwargs)

    monkeypatch.setattr(core.prepare.preprocessing, "preprocess", failing)
    out = build_dataset(sample, preprocess=SMALL, out=tmp_path / "ds", n_jobs=1)
    images = pd.read_parquet(out / "images.parquet").set_index("name")
    name = victim["name"].iloc[0]
    assert images.loc[name, "reason"] == "preprocess_error" and not images.loc[name, "kept"]
    assert images.loc[name, "read_error"] == "crop leaves the image"
    ds = load_dataset(out)
    assert name not in set(ds.meta["name"]) and len(ds.meta) == int(images["kept"].sum())
    assert ds.manifest["reasons"]["preprocess_error"] == 1


def test_a_class_with_no_images_is_a_clear_error(sample, tmp_path):
    mapping = tmp_path / "three.json"
    mapping.write_text(json.dumps({"classes": ["Ell", "Disc", "Ring"], "map": {"E.*": "Ell", "S.*": "Disc", "ZZZ": "Ring"}}))
    with pytest.raises(GalaxyMorphError, match=r"class 'Ring' has 0 kept image\(s\).*Lower --min-quality"):
        build_dataset(sample, scheme=str(mapping), preprocess=SMALL, catalog="all", out=tmp_path / "x", n_jobs=1)
    assert not (tmp_path / "x").exists()


def test_duplicates_keep_the_selected_catalogues_name(tmp_path):
    root = tmp_path / "dup"
    root.mkdir()
    arcsec = 1 / 3600
    (root / "catalog.csv").write_text(
        "name,classification,file,ra,dec\n"
        f"2MASX J00000000+0000000,E1,a.fits,10.0,5.0\n"
        f"NGC 1,E1,b.fits,{10 + arcsec},5.0\n"
        "NGC 2,Sb,c.fits,20.0,5.0\n"
        "NGC 3,Sb,,30.0,5.0\n"
        "NGC 4,Pec,d.fits,40.0,5.0\n"
    )
    source = load_source(root)
    for catalog in ("NGC", "all"):
        candidates, _ = select_candidates(source, scheme=get_scheme("hubble3"), catalog=catalog)
        reasons = dict(zip(candidates["name"], candidates["reason"]))
        assert reasons["NGC 1"] == "" and reasons["NGC 2"] == ""
        assert reasons["NGC 3"] == "no_image" and reasons["NGC 4"] == "unclassified"
        assert reasons["2MASX J00000000+0000000"] == ("other_catalogue" if catalog == "NGC" else "duplicate_of:NGC 1")


def test_split_is_stratified_by_object_and_seeded():
    labels = pd.Series(["E"] * 100 + ["S0"] * 40 + ["Spiral"] * 20)
    split = split_by_object(labels, seed=0, val_fraction=0.15, test_fraction=0.15)
    table = pd.crosstab(labels, split)
    assert table.loc["E", "test"] == 15 and table.loc["S0", "test"] == 6 and table.loc["Spiral", "test"] == 3
    assert table.loc["E", "val"] == 15 and table.loc["Spiral", "train"] == 14
    assert (split_by_object(labels, seed=0, val_fraction=0.15, test_fraction=0.15) == split).all()
    assert not (split_by_object(labels, seed=1, val_fraction=0.15, test_fraction=0.15) == split).all()
    no_val = split_by_object(labels, seed=0, val_fraction=0.0, test_fraction=0.2)
    assert set(no_val) == {"train", "test"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction \\+ test_fraction must be < 1"),
        ({"test_fraction": 1.5}, "test_fraction must be in \\[0, 1\\)"),
        ({"catalog": "XYZ"}, "catalog 'XYZ' matches no name"),
        ({"conflicts": "vote"}, "conflicts must be one of"),
        ({"label_from": "guess"}, "label_from must be one of"),
    ],
)
def test_bad_parameters_are_user_errors(sample, tmp_path, kwargs, message):
    with pytest.raises(GalaxyMorphError, match=message):
        build_dataset(sample, preprocess=SMALL, out=tmp_path / "x", n_jobs=1, **kwargs)


def test_cli_builds_and_reports(sample, tmp_path, capsys):
    out = tmp_path / "cli-ds"
    argv = ["build", "--source", str(sample), "--size", "16", "--catalog", "NGC", "--scheme", "seed6",
            "--label-from", "requested", "--conflicts", "first", "--jobs", "1", "--out", str(out), "--survey", "all"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"dataset: {out}" in stdout and "catalogue: NGC" in stdout and "left out:" in stdout
    manifest = load_dataset(out).manifest
    assert manifest["params"]["label_from"] == "requested" and manifest["classes"][-1] == "SB"
    assert manifest["conflicts"]["policy"] == "first" and manifest["conflicts"]["dropped"] == 0


def test_cli_bad_scheme_exits_2_with_one_line(sample, capsys):
    assert main(["build", "--source", str(sample), "--scheme", "hubble9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: scheme must be one of")


def test_preprocessing_reuses_stored_metrics_with_identical_output(built, sample, tmp_path, monkeypatch):
    real = core.prepare.preprocessing.preprocess
    given: list[object] = []

    def measuring_again(image, config, **kwargs):
        given.append(kwargs.pop("metrics"))
        return real(image, config, **kwargs)

    monkeypatch.setattr(core.prepare.preprocessing, "preprocess", measuring_again)
    again = build_dataset(sample, preprocess=SMALL, catalog="all", out=tmp_path / "again", n_jobs=1, force=True)
    reused, measured = load_dataset(built), load_dataset(again)
    assert len(given) == len(reused.meta) and all(isinstance(m, dict) and "background_level" in m for m in given)
    # The sky and centre stored by measure_quality are exactly those preprocess would measure.
    assert (reused.meta["name"].to_numpy() == measured.meta["name"].to_numpy()).all()
    np.testing.assert_array_equal(reused.x, measured.x)


def test_a_new_quality_version_measures_every_image_again(sample, tmp_path, monkeypatch):
    source = tmp_path / "src"
    shutil.copytree(sample, source, ignore=shutil.ignore_patterns(".cache"))
    first = compute_metrics(source, n_jobs=1)
    measured = _record_measured_paths(monkeypatch)
    compute_metrics(source, n_jobs=1)
    assert measured == []
    monkeypatch.setattr(core.acquire.measure, "QUALITY_VERSION", core.acquire.measure.QUALITY_VERSION + 1)
    compute_metrics(source, n_jobs=1)
    assert sorted(measured) == sorted(first["path"])
    assert "pixel_scale_arcsec" in first and (first.loc[first["read_error"] == "", "pixel_scale_arcsec"] > 0).all()


def test_thresholds_default_to_the_spec_and_are_recorded(built):
    from core.acquire.measure import QUALITY_VERSION
    from core.prepare.quality import QualityThresholds

    params = load_dataset(built).manifest["params"]
    library = inspect.signature(core.prepare.quality.apply_quality_filter).parameters
    assert library["thresholds"].default is None  # QualityThresholds() inside: its defaults are the only ones
    assert library["crop"].default == PreprocessConfig.crop
    for name, value in QualityThresholds().to_dict().items():
        assert params[name] == value
    assert params["quality_version"] == QUALITY_VERSION


def test_extent_and_min_snr_change_what_is_kept(built, sample, tmp_path):
    images = pd.read_parquet(built / "images.parquet")
    judged = images[images["reason"].isin(["", "galaxy_exceeds_crop", "low_snr", "low_quality"])]
    out = build_dataset(
        sample, preprocess=SMALL, catalog="all", out=tmp_path / "strict", n_jobs=1, extent=2.5, min_snr=60
    )
    strict = pd.read_parquet(out / "images.parquet").set_index("name").loc[judged["name"]]
    radius, snr = strict["source_radius_frac"], strict["snr"]
    # Rule order: low_snr before galaxy_exceeds_crop; both follow the given thresholds exactly.
    assert ((strict["reason"] == "low_snr") == (snr < 60)).all()
    exceeds = (snr >= 60) & (strict["quality"] >= 0.5) & (2.5 * radius > 0.25)
    assert ((strict["reason"] == "galaxy_exceeds_crop") == exceeds).all() and exceeds.any()
    params = load_dataset(out).manifest["params"]
    assert params["extent"] == 2.5 and params["min_snr"] == 60.0
    with pytest.raises(GalaxyMorphError, match="extent must be a non-negative number"):
        build_dataset(sample, preprocess=SMALL, out=tmp_path / "bad", extent=-1)
    assert not (tmp_path / "bad").exists()


def test_duplicates_keep_the_catalogues_name_then_the_better_image(tmp_path):
    arcsec = 1 / 3600
    root = tmp_path / "dup"
    root.mkdir()
    (root / "catalog.csv").write_text(
        "name,classification,file,ra,dec\n"
        f"NGC 1,E1,a.fits,10.0,5.0\n"
        f"NGC 2,E1,b.fits,{10 + arcsec},5.0\n"
        f"2MASX J00400000+0500000,E1,c.fits,{10 - arcsec},5.0\n"
        "NGC 3,Sb,d.fits,20.0,5.0\n"
    )
    candidates, _ = select_candidates(load_source(root), scheme=get_scheme("hubble3"), catalog="all")
    reasons = dict(zip(candidates["name"], candidates["reason"]))
    assert reasons == {"NGC 1": "", "NGC 2": "", "2MASX J00400000+0500000": "duplicate_of:NGC 1", "NGC 3": ""}
    group = candidates.set_index("name")["duplicate_group"]
    assert group["NGC 1"] == group["NGC 2"] == group["2MASX J00400000+0500000"] >= 0 and group["NGC 3"] == -1

    def judged(quality: dict[str, float], kept: dict[str, bool]) -> dict[str, str]:
        frame = candidates.assign(
            quality=candidates["name"].map(quality).fillna(0.0),
            kept=candidates["name"].map(kept).fillna(False).astype(bool),
        )
        frame["reason"] = np.where(frame["reason"] != "", frame["reason"], np.where(frame["kept"], "", "low_snr"))
        resolved = core.prepare.selection.resolve_duplicates(frame)
        assert (resolved.loc[resolved["reason"].str.startswith("duplicate_of:"), "kept"] == False).all()  # noqa: E712
        return dict(zip(resolved["name"], resolved["reason"]))

    both_pass = judged({"NGC 1": 0.7, "NGC 2": 0.9}, {"NGC 1": True, "NGC 2": True, "NGC 3": True})
    assert both_pass["NGC 2"] == "" and both_pass["NGC 1"] == "duplicate_of:NGC 2"
    assert both_pass["2MASX J00400000+0500000"] == "duplicate_of:NGC 2" and both_pass["NGC 3"] == ""
    # An image that passes the filter beats a higher-scored one that fails it.
    one_passes = judged({"NGC 1": 0.6, "NGC 2": 0.9}, {"NGC 1": True, "NGC 2": False})
    assert one_passes["NGC 1"] == "" and one_passes["NGC 2"] == "duplicate_of:NGC 1"
    # Equal images: the catalogue's order decides.
    assert judged({"NGC 1": 0.8, "NGC 2": 0.8}, {"NGC 1": True, "NGC 2": True})["NGC 2"] == "duplicate_of:NGC 1"


def test_a_bad_image_under_one_name_no_longer_loses_its_galaxy(built, truth):
    # The sample gives some galaxies a second name of another catalogue; with catalog="all" and
    # neither name in the most common catalogue, the image that passes the filter is kept.
    images = pd.read_parquet(built / "images.parquet").set_index("name")
    pairs = truth.loc[truth["wart"] == "duplicate", ["name", "duplicate_of"]]
    checked = 0
    for extra, first in pairs.itertuples(index=False):
        group = images.loc[[extra, first]]
        if group["duplicate_group"].min() < 0 or group["reason"].isin(["unclassified", "conflict"]).any():
            continue
        winners = group[group["reason"] == ""]
        assert len(winners) <= 1
        if len(winners) == 1:
            loser = (set(group.index) - set(winners.index)).pop()
            assert images.loc[loser, "reason"] == f"duplicate_of:{winners.index[0]}"
            checked += 1
    assert checked > 0


def test_galaxy_zoo_cutouts_are_centred_on_the_image_by_default(tmp_path):
    auto = PreprocessConfig()
    assert core.prepare.selection.resolve_centre(auto, "gz1").centre == "none"
    assert core.prepare.selection.resolve_centre(auto, "sample").centre == "auto"
    assert core.prepare.selection.resolve_centre(PreprocessConfig(centre="peak"), "gz1").centre == "peak"
    root = tmp_path / "gz1"
    (root / "images").mkdir(parents=True)
    gz1 = Path(__file__).resolve().parents[1] / "data" / "gz1"
    catalogue = pd.read_csv(gz1 / "catalog.csv").groupby("classification").head(12)
    for file in catalogue["file"]:
        shutil.copy(gz1 / file, root / file)
    catalogue.to_csv(root / "catalog.csv", index=False)
    out = build_dataset(root, preprocess=SMALL, out=tmp_path / "ds", n_jobs=1, val_fraction=0.2, test_fraction=0.2)
    manifest = load_dataset(out).manifest
    assert manifest["source_kind"] == "gz1" and manifest["params"]["preprocess"]["centre"] == "none"


def test_crop_in_arcsec_judges_each_image_by_its_own_crop_fraction(sample, tmp_path):
    metrics = compute_metrics(sample, n_jobs=1)
    frame = metrics[metrics["read_error"] == ""].head(3).copy().assign(reason="")
    frame["pixel_scale_arcsec"] = [1.0, 0.25, np.nan]  # the last has no WCS
    frame["min_side"] = 100.0
    frame["source_radius_frac"] = 0.1
    frame["snr"], frame["saturated_fraction"], frame["finite_fraction"] = 100.0, 0.0, 1.0
    frame["blank"] = False
    candidates = frame[["path", "reason"]]
    measured = frame.drop(columns="reason")
    config = PreprocessConfig(crop=0.5, crop_arcsec=30.0)
    thresholds = core.prepare.quality.QualityThresholds()
    judged = core.prepare.selection._apply_quality(candidates, measured, config=config, thresholds=thresholds)
    # 30" over 100 px of 1" is a 0.3 crop; of 0.25" a 1.2 crop; no WCS: crop=0.5 as preprocessing does.
    np.testing.assert_allclose(judged["crop_fraction"], [0.3, 1.2, 0.5])
    assert list(judged["reason"]) == ["", "", ""]
    tight = core.prepare.selection._apply_quality(candidates, measured, config=config, thresholds=dataclasses.replace(thresholds, extent=2.0))
    assert list(tight["reason"]) == ["galaxy_exceeds_crop", "", ""]


def test_cli_passes_thresholds_and_centre(sample, tmp_path, capsys):
    out = tmp_path / "cli-thresholds"
    argv = ["build", "--source", str(sample), "--size", "16", "--catalog", "all", "--jobs", "1", "--out", str(out),
            "--min-snr", "40", "--extent", "1.5", "--centre", "peak"]
    assert main(argv) == 0
    assert "min_snr=40" in capsys.readouterr().out
    params = load_dataset(out).manifest["params"]
    assert params["min_snr"] == 40.0 and params["extent"] == 1.5 and params["preprocess"]["centre"] == "peak"
    assert params["min_quality"] == core.prepare.quality.QualityThresholds().min_quality


def _record_measured_paths(monkeypatch) -> list[str]:
    """Let the builder measure as usual, and list every image path it measures."""
    measured: list[str] = []
    real = core.acquire.measure._measure_chunk

    def counting(items):
        measured.extend(path for path, _, _ in items)
        return real(items)

    monkeypatch.setattr(core.acquire.measure, "_measure_chunk", counting)
    return measured


def test_dwarfs_and_uncertain_types_are_left_out_on_request(tmp_path):
    root = tmp_path / "types"
    root.mkdir()
    (root / "catalog.csv").write_text(
        "name,classification,file\n"
        "NGC 1,dE2,a.fits\n"
        "NGC 2,E?,b.fits\n"
        "NGC 3,Sb:,c.fits\n"
        "NGC 4,S?,d.fits\n"
        'NGC 5,"SA(s)ab;LINER Sy1.8",e.fits\n'
        'NGC 6,"E+0-1 pec;NLRG Sy",f.fits\n'
        "NGC 7,dSph,g.fits\n"
    )
    source = load_source(root)

    def reasons(**options: bool) -> dict[str, str]:
        candidates, _ = select_candidates(source, scheme=get_scheme("hubble3"), **options)
        return dict(zip(candidates["name"], candidates["reason"]))

    assert reasons() == {f"NGC {i}": "" for i in (1, 2, 3, 5, 6, 7)} | {"NGC 4": "unclassified"}
    assert reasons(exclude_dwarfs=True, exclude_uncertain=True) == {
        "NGC 1": "dwarf", "NGC 2": "uncertain", "NGC 3": "uncertain", "NGC 4": "unclassified",
        "NGC 5": "", "NGC 6": "", "NGC 7": "dwarf",
    }


def test_build_lists_the_type_strings_its_scheme_drops(sample, tmp_path, capsys):
    out = tmp_path / "cli-unclassified"
    argv = ["build", "--source", str(sample), "--size", "16", "--catalog", "all", "--jobs", "1", "--out", str(out),
            "--exclude-dwarfs", "--exclude-uncertain"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    manifest = load_dataset(out).manifest
    assert manifest["params"]["exclude_dwarfs"] is True and manifest["params"]["exclude_uncertain"] is True
    listed = {row["type"]: row["objects"] for row in manifest["unclassified_types"]}
    images = pd.read_parquet(out / "images.parquet")
    dropped = images.loc[images["reason"] == "unclassified", "classification"].str.strip().value_counts()
    assert listed == {str(k): int(v) for k, v in dropped.items()} and len(listed) >= 3
    counts = list(listed.values())
    assert counts == sorted(counts, reverse=True)
    top, n = next(iter(listed.items()))
    assert f"unclassified by hubble3 (objects per type string): {top!r} {n}" in stdout


def _without_positions(sample: Path, root: Path) -> Path:
    """The sample's catalogue with its ra/dec columns removed, as a scraped NED catalogue has none."""
    root.mkdir()
    shutil.copytree(sample / "images", root / "images", copy_function=os.link)  # a source's images are its own
    catalogue = pd.read_csv(sample / "catalog.csv", keep_default_na=False).drop(columns=["ra", "dec"])
    catalogue.to_csv(root / "catalog.csv", index=False)
    return root


def test_catalog_all_without_positions_is_refused_unless_allowed(sample, tmp_path, capsys):
    root = _without_positions(sample, tmp_path / "nopos")
    with pytest.raises(GalaxyMorphError, match=r"--catalog all needs a position \(ra, dec\).*--allow-duplicates"):
        build_dataset(root, preprocess=SMALL, catalog="all", out=tmp_path / "refused", n_jobs=1)
    assert not (tmp_path / "refused").exists()
    assert main(["build", "--source", str(root), "--catalog", "all", "--size", "16", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --catalog all needs a position") and "could land in two splits" in err[-1]
    # One catalogue needs no positions, also when it is all the source has (the Galaxy Zoo cutouts).
    candidates, _ = select_candidates(load_source(root), scheme=get_scheme("hubble3"), catalog="all")
    only_ngc = candidates[candidates["prefix"] == "NGC"]
    assert core.prepare.selection.check_positions(only_ngc, catalog="all", allow_duplicates=False) == (only_ngc["reason"] == "").sum()
    # Allowing duplicates builds, and says so in the manifest.
    assert build_dataset(root, preprocess=SMALL, catalog="auto", out=tmp_path / "ngc", n_jobs=1).is_dir()
    out = build_dataset(root, preprocess=SMALL, catalog="all", allow_duplicates=True, out=tmp_path / "all", n_jobs=1)
    manifest = load_dataset(out).manifest
    images = pd.read_parquet(out / "images.parquet")
    assert manifest["params"]["allow_duplicates"] is True
    label_side = ["conflict", "unclassified", "other_catalogue", "no_image"]
    assert manifest["objects_without_position"] == int((~images["reason"].isin(label_side)).sum()) > 0
    assert not images["reason"].str.startswith("duplicate_of:").any()  # nothing to find them with


def test_survey_and_band_come_from_the_source_else_the_header():
    table = pd.DataFrame(
        {
            "name": ["NGC 1", "NGC 2", "NGC 3", "NGC 4", "NGC 5"],
            "path": ["a", "b", "c", "d", "e"],
            "survey": ["DSS2", "", None, "SDSS", ""],
            "band": ["IIIaF", "", None, "r", ""],
        }
    )
    metrics = pd.DataFrame(
        {"path": ["a", "b", "c", "d"], "header_survey": ["X", "DSS2 red", "DSS2 red", "Y"], "header_band": ["", "RG610", "RG610", ""]}
    )
    got = core.prepare.selection.image_surveys(table, metrics)
    assert got["survey"].tolist() == ["DSS2", "DSS2 red", "DSS2 red", "SDSS", ""]
    assert got["band"].tolist() == ["IIIaF", "RG610", "RG610", "r", ""]
    mix = core.prepare.selection.survey_mix(got)
    assert mix.values.tolist() == [["DSS2 red", "RG610", 2], ["DSS2", "IIIaF", 1], ["SDSS", "r", 1], ["", "", 1]]
    resolve = core.prepare.selection.resolve_survey
    assert resolve(got) == ("DSS2 red", "RG610")
    assert resolve(got, survey="sdss") == ("SDSS", "r")
    assert resolve(got, survey="all") == ("all", "all")
    assert resolve(got, survey="DSS2", band="all") == ("DSS2", "all")
    assert resolve(got.assign(survey="", band="")) == ("all", "all")  # nothing recorded: nothing to choose
    with pytest.raises(GalaxyMorphError, match=r"survey '2MASS' matches no image.*DSS2 red / RG610 \(2\)"):
        resolve(got, survey="2MASS")
    with pytest.raises(GalaxyMorphError, match="band 'K' matches no image"):
        resolve(got, survey="SDSS", band="K")


def test_one_survey_per_dataset_by_default(built, truth):
    images = pd.read_parquet(built / "images.parquet").merge(truth[["name", "survey"]].rename(columns={"survey": "true"}), on="name")
    manifest = load_dataset(built).manifest
    assert manifest["params"]["survey"] == "auto" and manifest["params"]["band"] == "auto"
    # The sample records its survey in the FITS headers only (SURVEY / FILTER); DSS2 red is its most common.
    assert (manifest["survey"], manifest["band"]) == ("DSS2 red", "RG610")
    measured = ~images["reason"].isin(["conflict", "unclassified", "other_catalogue", "no_image"])
    measured &= ~images["reason"].str.startswith("duplicate_of:") & images["read_error"].eq("")
    assert measured.sum() > 100 and (images.loc[measured, "survey"] == images.loc[measured, "true"]).all()
    kept = images[images["kept"]]
    assert len(kept) > 0 and (kept["true"] == "DSS2 red").all()
    others = images[images["reason"] == "other_survey"]
    assert len(others) > 0 and (others["true"] != "DSS2 red").all()
    mix = {(row["survey"], row["band"]): row["objects"] for row in manifest["survey_mix"]}
    assert set(mix) == {("DSS2 red", "RG610"), ("SDSS r", "r"), ("2MASS K", "Ks"), ("GALEX NUV", "NUV")}
    assert mix[("DSS2 red", "RG610")] == max(mix.values())


def test_cli_survey_filter(sample, tmp_path, capsys):
    out = tmp_path / "sdss"
    argv = ["build", "--source", str(sample), "--size", "16", "--catalog", "all", "--jobs", "1", "--out", str(out),
            "--survey", "sdss r", "--min-quality", "0"]
    assert main(argv) == 0
    assert "survey: SDSS r, band: r (images by survey / band: DSS2 red / RG610 " in capsys.readouterr().out
    ds = load_dataset(out)
    assert ds.manifest["params"]["survey"] == "sdss r" and ds.manifest["survey"] == "SDSS r"
    images = pd.read_parquet(out / "images.parquet")
    assert set(images.loc[images["kept"], "survey"]) == {"SDSS r"}
    assert main(argv[:-4] + ["--survey", "POSS", "--out", str(tmp_path / "none")]) == 2
    assert "error: survey 'POSS' matches no image" in capsys.readouterr().err


def test_a_source_whose_every_file_is_refused_measures_nothing_and_builds_nothing(tmp_path: Path) -> None:
    """Each file lies outside the source folder, so none is read: the metrics table is empty (it used
    to crash merging an untyped empty table) and the build stops with the one-line class message."""
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "catalog.csv").write_text("name,classification,file\nNGC 1,E,../../../etc/hostname\n"
                                        "NGC 2,Sb,/etc/passwd\n")
    assert len(compute_metrics(source, n_jobs=1)) == 0
    with pytest.raises(GalaxyMorphError, match="class 'E' has 0"):
        build_dataset(source, scheme="hubble3", out=tmp_path / "ds", n_jobs=1)
