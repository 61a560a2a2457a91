"""The gradient-boosting baseline: its features measure what they claim, and it writes a run like a CNN's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.learn import report
from core.learn.baseline import BaselineConfig, feature_names, morphology_features, train_baseline_runs
from core.cli import main
from core.prepare.save import save_dataset
from core.errors import ConfigError
from core.runs import list_runs, load_run
from core.acquire.sample import generate_sample

SIZE = 32


def galaxy(*, sigma: float = 3.0, q: float = 1.0, angle: float = 0.0, shift: float = 0.0,
           colour: tuple[float, float, float] = (1.0, 1.0, 1.0), noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A Gaussian galaxy with axis ratio ``q`` on a 32-px stamp, in the given colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    xx = xx - shift
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    image = np.exp(-(u**2 + (v / q) ** 2) / (2 * sigma**2))
    planes = np.stack([c * image for c in colour], axis=-1) + rng.normal(0, noise, (SIZE, SIZE, 3))
    return np.clip(planes, 0, 1).astype(np.float32)


def test_axis_ratio_asymmetry_and_concentration_measure_shape():
    round_, flat = galaxy(q=1.0), galaxy(q=0.25, angle=0.7)
    compact, extended = galaxy(sigma=1.5), galaxy(sigma=5.0)
    offset = galaxy(shift=4.0)
    f = morphology_features(np.stack([round_, flat, compact, extended, offset]))
    assert f.loc[0, "axis_ratio"] == pytest.approx(1.0, abs=0.02)
    # Moments inside r90 cut the major axis a little, and pixels widen the 0.75-px minor axis.
    assert f.loc[1, "axis_ratio"] == pytest.approx(0.25, abs=0.08)
    assert f.loc[0, "asymmetry"] < 0.01 < 0.3 < f.loc[4, "asymmetry"]
    assert f.loc[2, "r50"] < f.loc[3, "r50"] / 2
    # A Gaussian's r80/r20 is sqrt(ln 5 / ln 1.25) ≈ 2.7 at any width, so C = 5 log10(2.7) ≈ 2.2.
    assert f.loc[3, "concentration"] == pytest.approx(5 * np.log10(np.sqrt(np.log(5) / np.log(1.25))), abs=0.3)
    assert list(f.columns) == feature_names(3)


def test_colour_features_only_with_three_channels_and_with_the_right_sign():
    red, blue = galaxy(colour=(0.3, 0.6, 1.0)), galaxy(colour=(1.0, 0.6, 0.3))
    colour = morphology_features(np.stack([red, blue]))
    assert colour.loc[0, "colour_02"] == pytest.approx(np.log(0.3), abs=0.01)
    assert colour.loc[1, "colour_02"] == pytest.approx(np.log(1 / 0.3), abs=0.01)
    grey = morphology_features(np.stack([red, blue]).mean(axis=-1, keepdims=True))
    assert list(grey.columns) == feature_names(1) and not any(c.startswith("colour") for c in grey.columns)


def test_blank_and_malformed_input():
    blank = morphology_features(np.zeros((2, SIZE, SIZE, 1), np.float32))
    assert np.isfinite(blank.to_numpy()).all() and (blank.to_numpy() == 0).all()
    with pytest.raises(ConfigError, match=r"x must have shape \(N, S, S, 1 or 3\)"):
        morphology_features(np.zeros((2, SIZE, SIZE, 2)))
    with pytest.raises(ConfigError, match="max_iter must be a positive integer"):
        BaselineConfig(max_iter=0)


def _dataset(out: Path, n: int = 90) -> Path:
    """Round red galaxies, flat blue discs, round blue galaxies: separable by axis ratio and colour."""
    rng = np.random.default_rng(1)
    y = np.arange(n) % 3
    x = np.stack([
        galaxy(q=[1.0, 0.3, 1.0][k], angle=rng.uniform(0, np.pi), colour=[(1, 0.6, 0.3), (0.3, 0.6, 1), (0.3, 0.6, 1)][k],
               sigma=rng.uniform(2.5, 4), noise=0.03, seed=i)
        for i, k in enumerate(y)
    ])
    split = np.array(["train", "train", "train", "val", "test"] * (n // 5) + ["train"] * (n % 5), dtype=object)
    classes = ["E", "EdgeOn", "Spiral"]
    meta = pd.DataFrame({"name": [f"G{i:03d}" for i in range(n)], "label": np.array(classes)[y], "y": y,
                         "split": split})
    return save_dataset(out, x=x, meta=meta, classes=classes, manifest={"params": {}})


@pytest.fixture(scope="module")
def baseline_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """The dataset, its runs folder and the outcomes of two baseline seeds, trained once for the module
    (boosting 600 trees is most of this file's time)."""
    root = tmp_path_factory.mktemp("baseline")
    dataset = _dataset(root / "ds")
    return dataset, root / "runs", train_baseline_runs(dataset, seeds=[0, 1], runs_dir=root / "runs")


def test_baseline_run_is_a_run_that_compare_reads(baseline_runs):
    dataset, runs_dir, outcomes = baseline_runs
    assert [o["status"] for o in outcomes] == ["finished", "finished"]
    run = load_run(outcomes[0]["run_dir"])
    assert run.model_name == "baseline" and run.status == "finished" and run.classes == ["E", "EdgeOn", "Spiral"]
    assert run.metrics["accuracy"] == 1.0 and run.metrics["n_test"] == 18 and run.metrics["val_accuracy"] == 1.0
    predictions = run.predictions
    assert list(predictions.columns) == ["name", "true", "pred", "prob_E", "prob_EdgeOn", "prob_Spiral"]
    assert (predictions["true"] == predictions["pred"]).all()
    np.testing.assert_allclose(predictions.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)
    assert list(run.history.columns[:5]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    summary = report.summary_table([load_run(o["run_dir"]) for o in outcomes])
    assert list(summary.index) == ["baseline"] and summary.loc["baseline", "n_seeds"] == 2
    assert summary.loc["baseline", "accuracy_mean"] == 1.0
    config = json.loads((run.path / "config.json").read_text())
    assert config["params"]["max_iter"] == 200 and config["dataset"]["content_hash"]
    again = train_baseline_runs(dataset, seeds=[0], runs_dir=runs_dir, resume=True)
    assert again[0]["status"] == "skipped (finished)" and len(list_runs(runs_dir)) == 2


def test_train_command_runs_the_baseline_beside_nothing_else(tmp_path, capsys):
    dataset = _dataset(tmp_path / "ds")
    assert main(["train", "--dataset", str(dataset), "--models", "baseline", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("baseline seed 0: finished test accuracy 1.000 -> ")
    assert list(list_runs(tmp_path / "runs")["model"]) == ["baseline"]
    assert main(["train", "--dataset", str(dataset), "--models", "baseline", "lenet6"]) == 2


def test_the_baseline_trains_on_the_networks_folds_and_is_paired_with_them_fold_by_fold(tmp_path, capsys):
    dataset = _dataset(tmp_path / "ds")
    runs_dir = tmp_path / "runs"
    assert main(["train", "--dataset", str(dataset), "--models", "baseline", "--folds", "3",
                 "--runs-dir", str(runs_dir)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == [f"baseline seed 0 fold {f} split seed 0" for f in range(3)]
    runs = [load_run(p) for p in sorted(runs_dir.iterdir())]
    assert sorted(report.split_key(r) for r in runs) == ["k3 f0 s0", "k3 f1 s0", "k3 f2 s0"]
    # Each galaxy is in exactly one test fold: the pooled predictions cover the dataset once.
    pooled = report.pooled_predictions(runs)["baseline"]
    assert len(pooled) == 90 and pooled["name"].is_unique
    # Resuming finds every fold; the dataset's own split keeps the parameters it had before folds existed.
    again = train_baseline_runs(dataset, seeds=[0], runs_dir=runs_dir, resume=True, folds=3)
    assert [o["status"] for o in again] == ["skipped (finished)"] * 3
    assert "folds" not in BaselineConfig().to_dict()
    with pytest.raises(ConfigError, match="folds must be 0"):
        BaselineConfig(folds=2)


def test_comparison_shows_the_baseline_and_classify_says_it_cannot_classify_an_upload(baseline_runs, tmp_path,
                                                                                     monkeypatch):
    from streamlit.testing.v1 import AppTest

    _, _, outcomes = baseline_runs
    seed0 = Path(outcomes[0]["run_dir"])
    shutil.copytree(seed0, tmp_path / "runs" / seed0.name)  # one seed, as trained alone
    # A tiny built-in sample: without one the router generates the 2,000-galaxy sample first (minutes).
    generate_sample(tmp_path / "data" / "sample", n=6, seed=0, n_jobs=1)
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/comparison.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.markdown[0].value.replace("\\", "").startswith("#### Boosting baseline · ")
    assert "Accuracy" in at.dataframe[0].value.index and list(at.dataframe[0].value.columns) == ["Boosting baseline"]
    at.switch_page("pages/classify.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Only the baseline was trained" in i.value for i in at.info)
