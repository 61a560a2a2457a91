"""The preview's numbers are the build's: :func:`core.prepare.selection.select` (what the Preprocessing page
shows) against what ``build`` writes in ``manifest.json`` and ``images.parquet``, over random slider
settings, every catalogue choice and every conflict policy, on a generated sample and on shipped
Galaxy Zoo galaxies. The page itself is checked against ``select`` in tests/test_app.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.prepare.builder import build
from core.prepare.selection import REASON_TEXT, select, split_sizes
from core.prepare.quality import compute_metrics
from core.acquire.catalogue import catalogue_prefix, load_source
from core.errors import ConfigError, GalaxyMorphError
from core.acquire.labels import CONFLICT_POLICIES
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import QualityThresholds
from core.spec import BuildSpec, spec_from_argv
from tests.conftest import _copy_gz1


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from core.acquire.sample import ensure_sample

    root = tmp_path_factory.mktemp("preview")
    sample = ensure_sample(root / "sample", n=80, seed=3, n_jobs=1)
    _copy_gz1(root / "gz1", n=40)
    return {"sample": Path(sample), "gz1": root / "gz1", "out": root / "datasets"}


def _catalogues(source: Path) -> list[str]:
    names = load_source(source).table["name"].drop_duplicates()
    return ["auto", "all", *sorted(set(names.map(catalogue_prefix)))[:2]]


def sliders(catalogues: list[str]) -> st.SearchStrategy[dict]:
    """Values the Preprocessing page's widgets can take (their steps and ranges)."""
    return st.fixed_dictionaries({
        # Biased to the lenient half, where most builds have enough images per class to split.
        "crop": st.integers(6, 20).map(lambda i: i * 0.05),
        "min_quality": st.integers(0, 60).map(lambda i: i / 100),
        "min_size": st.integers(0, 10).map(lambda i: i * 4),
        "catalog": st.sampled_from(catalogues),
        "survey": st.sampled_from(["auto", "all"]),
        "exclude_uncertain": st.booleans(),
    })


def _check_preview_is_build(source: Path, out: Path, conflicts: str, values: dict) -> None:
    spec = BuildSpec(
        source=str(source), preprocess=PreprocessConfig(crop=values["crop"], size=16),
        thresholds=QualityThresholds(min_quality=values["min_quality"], min_size=values["min_size"]),
        catalog=values["catalog"], survey=values["survey"], conflicts=conflicts,
        exclude_uncertain=values["exclude_uncertain"], allow_duplicates=True, val_fraction=0.0, test_fraction=0.2,
    )
    try:
        preview = select(spec, compute_metrics(source, n_jobs=1))
    except GalaxyMorphError as exc:
        with pytest.raises(GalaxyMorphError, match=str(exc)[:40].replace("(", r"\(").replace("[", r"\[")):
            build(spec, out=out, n_jobs=1, force=True)
        return
    try:
        folder = build(spec, out=out, n_jobs=1, force=True)
    except GalaxyMorphError as exc:
        # Only a split that cannot be made (a class too small, a test set smaller than the classes) may
        # stop a build the preview showed; the preview refuses it up front, in the build's own words.
        assert any(why in str(exc) for why in ("a train/val/test split needs at least", "keep no galaxy",
                                               "cannot split")), str(exc)
        with pytest.raises(GalaxyMorphError) as refused:
            split_sizes(preview, spec)
        assert str(refused.value) == str(exc)
        return
    manifest = json.loads((folder / "manifest.json").read_text())
    built = {c: sum(manifest["counts"][split][c] for split in manifest["counts"]) for c in manifest["classes"]}
    assert preview.kept_per_class() == built
    # The sizes the page announces before Build are the build's split.
    assert split_sizes(preview, spec) == {split: sum(manifest["counts"][split].values()) for split in ("train", "val", "test")}
    assert "preprocess_error" not in manifest["reasons"]
    assert preview.reasons() == manifest["reasons"]
    assert (preview.catalog, preview.survey, preview.band) == (
        manifest["params"]["catalog"], manifest["survey"], manifest["band"])
    images = pd.read_parquet(folder / "images.parquet")
    left = images[~images["kept"]]
    per_class = pd.crosstab(left["reason"].map(lambda r: r.split(":")[0]), left["label"])
    pd.testing.assert_frame_equal(
        preview.reasons_per_class().sort_index().sort_index(axis=1), per_class.sort_index().sort_index(axis=1),
        check_names=False,
    )
    assert set(preview.table.loc[preview.table["kept"], "name"]) == set(images.loc[images["kept"], "name"])


@pytest.mark.parametrize("conflicts", CONFLICT_POLICIES)
def test_preview_counts_are_the_builds_on_the_sample(sources: dict[str, Path], conflicts: str) -> None:
    @settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(values=sliders(_catalogues(sources["sample"])))
    def check(values: dict) -> None:
        _check_preview_is_build(sources["sample"], sources["out"] / f"sample-{conflicts}", conflicts, values)

    check()


def test_preview_counts_are_the_builds_on_galaxy_zoo(sources: dict[str, Path]) -> None:
    @settings(max_examples=4, deadline=None)
    @given(values=sliders(["auto", "all"]), conflicts=st.sampled_from(CONFLICT_POLICIES))
    def check(values: dict, conflicts: str) -> None:
        _check_preview_is_build(sources["gz1"], sources["out"] / "gz1", conflicts, values)

    check()


def test_spec_round_trips_through_the_command_line(sources: dict[str, Path]) -> None:
    spec = BuildSpec(
        source=str(sources["sample"]), scheme="hubble4", preprocess=PreprocessConfig(crop=0.35, size=48, channels=3),
        thresholds=QualityThresholds(min_quality=0.37, min_size=12, max_saturated=2e-4), catalog="NGC",
        survey="all", conflicts="majority", exclude_dwarfs=True, seed=4, val_fraction=0.1,
    )
    argv = spec.to_argv(out="/tmp/x", force=True)
    assert argv[:3] == ["build", "--source", str(sources["sample"])] and argv[-3:] == ["--out", "/tmp/x", "--force"]
    again = spec_from_argv(BuildSpec, argv)
    assert again == spec and again.digest() == spec.digest()
    assert spec.replace(seed=5).digest() != spec.digest()
    assert spec_from_argv(BuildSpec, ["build", "--source", "s"]) == BuildSpec(source="s")


def test_spec_refuses_what_the_command_line_cannot_say() -> None:
    spec = BuildSpec(source="s", preprocess=PreprocessConfig(percentiles=(1.0, 99.0)))
    with pytest.raises(GalaxyMorphError, match="percentiles"):
        spec.to_argv()
    with pytest.raises(GalaxyMorphError, match="min_quality must be in"):
        QualityThresholds(min_quality=1.5)


def test_a_kept_label_stage_gives_the_same_selection(sources: dict[str, Path]) -> None:
    """The preview keeps select()'s catalogue-only stage while sliders move: same answer, and a stage
    of other label choices is refused rather than silently reused."""
    from core.prepare.selection import label_stage

    source = load_source(sources["sample"])
    metrics = compute_metrics(source, n_jobs=1)
    spec = BuildSpec(source=str(sources["sample"]), scheme="hubble3", catalog="all", survey="all")
    labels = label_stage(spec, source)
    before = labels.candidates.copy()
    for thresholds in (QualityThresholds(), QualityThresholds(min_quality=0.0, min_size=0)):
        moved = spec.replace(thresholds=thresholds)
        pd.testing.assert_frame_equal(select(moved, metrics, source=source, labels=labels).table,
                                      select(moved, metrics, source=source).table)
    pd.testing.assert_frame_equal(labels.candidates, before)  # select() did not write into the kept stage
    with pytest.raises(ConfigError, match="labels were computed for"):
        select(spec.replace(conflicts="majority"), metrics, source=source, labels=labels)


@pytest.mark.parametrize("source_key", ["sample", "gz1"])
def test_preview_images_are_the_built_images(sources: dict[str, Path], source_key: str, tmp_path: Path) -> None:
    """The "after" picture of the preview grid is the array the build saves for that galaxy (to 8-bit
    rounding), and the raw picture is a thumbnail no wider than the grid needs."""
    import io

    import numpy as np
    from PIL import Image

    from core.prepare.dataset import load_dataset
    from ui.services.pictures import THUMBNAIL_SIDE, for_display, preview_pair

    source = sources[source_key]
    spec = BuildSpec(source=str(source), allow_duplicates=True)
    preview = select(spec, compute_metrics(load_source(source), n_jobs=1))
    built = load_dataset(build(spec, out=tmp_path / "built", n_jobs=1))
    kept = preview.table[preview.table["kept"]].head(3)
    assert len(kept) == 3
    for _, row in kept.iterrows():
        raw_png, after_png = preview_pair(row, preview.preprocess)  # what the page shows
        after = np.asarray(Image.open(io.BytesIO(after_png)), dtype=np.float32) / 255
        saved = for_display(built.x[int(np.flatnonzero(built.meta["name"].to_numpy() == row["name"])[0])])
        assert after.shape == saved.shape
        assert np.abs(after - saved).max() <= 0.5 / 255 + 1e-6
        assert max(Image.open(io.BytesIO(raw_png)).size) <= THUMBNAIL_SIDE


def test_a_build_that_keeps_no_galaxy_is_refused_naming_what_removed_them(sources) -> None:
    spec = BuildSpec(source=str(sources["sample"]), preprocess=PreprocessConfig(crop=0.5, size=16),
                     thresholds=QualityThresholds(min_quality=1.0, min_size=0))
    preview = select(spec, compute_metrics(sources["sample"], n_jobs=1))
    assert not preview.table["kept"].any()
    with pytest.raises(GalaxyMorphError, match="these settings keep no galaxy") as refused:
        split_sizes(preview, spec)
    top_reason, n = max(preview.reasons().items(), key=lambda item: item[1])
    assert f"{n:,} {top_reason}" in str(refused.value)
    with pytest.raises(GalaxyMorphError, match="these settings keep no galaxy"):
        build(spec, out=sources["out"] / "none", n_jobs=1)


def test_every_reason_a_build_gives_is_explained() -> None:
    from core.prepare.quality import REASONS

    builder_reasons = {"conflict", "dwarf", "uncertain", "unclassified", "other_catalogue", "no_image",
                       "duplicate_of", "other_survey", "other_band", "preprocess_error"}
    assert set(REASONS) | builder_reasons <= set(REASON_TEXT)

