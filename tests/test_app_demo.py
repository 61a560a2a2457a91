"""AppTest of what a demo shows (issue 13): no re-runs while nothing runs, job figures, icons, counts.

A real training job (``core.jobs`` starting ``python -m core train``) on the test world's tiny
dataset, in a data folder of its own so its job and run records stay out of the other tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.testing.v1 import AppTest

from tests.conftest import MODELS
from tests.test_app import APP, _metric, _open, app  # noqa: F401 - app is a fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def auto_reruns(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The intervals of every ``run_every`` timer a script run asks the browser to start.

    A spy on Streamlit's message queue (it still enqueues every message): AppTest has no
    browser, so this is where a fragment's timer shows.
    """
    seen: list[float] = []
    enqueue = ForwardMsgQueue.enqueue

    def spy(self: ForwardMsgQueue, msg: object) -> None:
        if msg.WhichOneof("type") == "auto_rerun":  # type: ignore[attr-defined]
            seen.append(msg.auto_rerun.interval)  # type: ignore[attr-defined]
        enqueue(self, msg)

    monkeypatch.setattr(ForwardMsgQueue, "enqueue", spy)
    return seen


@pytest.fixture
def own_world(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """The world's sample and dataset in a data folder of its own, with an empty runs folder."""
    data_dir, runs_dir = tmp_path / "data", tmp_path / "runs"
    data_dir.mkdir()
    for name in ("sample", "datasets"):
        (data_dir / name).symlink_to(world["data"] / name, target_is_directory=True)
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(runs_dir))
    yield {"data": data_dir, "runs": runs_dir, "dataset": world["dataset"]}


def _wait_for_exit(pid: int) -> None:
    """Block until the job's wrapper (our child) has exited; no sleeping."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # already reaped by core.jobs' own status check


def test_training_page_reruns_only_while_a_job_runs(own_world: dict[str, Path], auto_reruns: list[float]) -> None:
    from core import jobs

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    _open(at, "training")
    assert auto_reruns == [], "nothing is running, yet the page asked for timed re-runs"

    job = jobs.start_job(["train", "--dataset", str(own_world["dataset"]), "--models", "lenet5", "--seeds", "0",
                          "--epochs", "1", "--batch-size", "16"], label="train lenet5")
    try:
        at.session_state["train_job"] = job.id
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert auto_reruns, "a running job's panel must redraw itself"
        text = " ".join(p.proto.text for p in at.get("progress"))
        assert ":material/hourglass_top:" in text and "running" in text
        assert _metric(at, "Run") == "0 of 1" or "epoch" in text
    finally:
        _wait_for_exit(job.pid)

    auto_reruns.clear()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert jobs.job_status(job) == jobs.FINISHED, jobs.tail_log(job)
    assert auto_reruns == [], "the job has ended, yet the page still asks for timed re-runs"
    panel = next(p.proto.text for p in at.get("progress") if "train lenet5" in p.proto.text)
    # The label and summary are shown as text: Markdown's punctuation arrives escaped.
    assert panel.replace("\\", "").startswith(
        ":material/check_circle: **train lenet5** — finished · LeNet-5 seed 0, epoch 1 of 1")
    assert _metric(at, "Run") == "1 of 1"
    assert _metric(at, "Epoch") == "1/1"
    batches = _metric(at, "Batch")
    assert re.fullmatch(r"(\d+)/\1", batches), batches
    assert re.fullmatch(r"\d+:\d\d", _metric(at, "Elapsed")), "a finished job shows how long it took"


def test_no_emoji_in_the_dashboard() -> None:
    """Status icons are Material icons: emoji show as empty boxes where no emoji font is installed."""
    emoji = re.compile("[\U0001F000-\U0001FFFF\u2600-\u27BF\u2B00-\u2BFF\u23E9-\u23FA]")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for folder in ("pages", "ui") for path in sorted((ROOT / folder).glob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if emoji.search(line)]
    assert not found, found


def test_job_panel_says_starting_then_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job with no progress yet is "starting …", not 0/?; a finished one shows its count and elapsed
    time, in values short enough for five metrics side by side at 1280 px."""
    from core import jobs
    from ui.common import job_figures

    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    job = jobs.start_job(["sample", "--out", str(tmp_path / "data" / "tiny"), "--n", "6"], label="sample")
    try:
        # Python is still importing: no event yet (or the first one, 0 of an unknown total).
        fraction, summary, figures = job_figures(job, jobs.job_status(job))
        assert (fraction, summary) == (0.0, "starting …")
        assert dict(figures)["Done"] == "—"
    finally:
        _wait_for_exit(job.pid)
    assert jobs.job_status(job) == jobs.FINISHED, jobs.tail_log(job)
    fraction, summary, figures = job_figures(job, jobs.FINISHED)
    values = dict(figures)
    done = int(values["Done"].replace(",", ""))
    assert done >= 6 and fraction == 1.0
    assert values["Elapsed"] != "—" and re.fullmatch(r"\d+:\d\d", values["Elapsed"])
    assert all(len(v) <= 8 for v in values.values()), values


def _chart(at: AppTest, title_start: str) -> dict[str, dict[str, float]]:
    """``{trace name: {x: y}}`` of the chart whose title starts with ``title_start``."""
    import json

    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec["layout"].get("title", {})
        if str(title.get("text", "") if isinstance(title, dict) else title).startswith(title_start):
            return {str(t.get("name")): dict(zip(map(str, _array(t["x"])), map(float, _array(t["y"]))))
                    for t in spec["data"]}
    raise AssertionError(f"no chart titled {title_start!r}")


def _array(values: list | dict) -> list:
    """Plotly's JSON writes numeric arrays as ``{"dtype": ..., "bdata": base64}``."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def _number(at: AppTest, label: str) -> int:
    return int(_metric(at, label).replace(",", ""))


def test_home_statistics_and_balance_count_the_same_objects(app: AppTest) -> None:
    """Rows, objects and labelled objects mean one thing, and the per-class bars add up to the labelled objects."""
    seen = {}
    _open(app, "home")
    seen["home"] = (_number(app, "Catalogue rows"), _number(app, "Objects"), _number(app, "Labelled objects"),
                    *_chart(app, "Labelled objects per class").values())
    _open(app, "statistics")
    seen["statistics"] = (_number(app, "Catalogue rows"), _number(app, "Objects"), _number(app, "Labelled objects"),
                          *_chart(app, "Labelled objects per class").values())
    assert seen["home"] == seen["statistics"]
    rows, objects, labelled, per_class = seen["home"]
    assert objects == 120, "the sample has 120 galaxies; aliases are more rows and names, not more objects"
    assert rows > objects
    assert sum(per_class.values()) == labelled and list(per_class) == ["E", "S0", "Spiral"]

    _open(app, "balance")
    assert app.segmented_control(key="balance_policy").value == "drop"
    assert _number(app, "Labelled objects") == labelled
    assert _chart(app, "Objects per class before")["before filters"] == per_class


def test_picking_a_galaxy_after_a_bad_upload_classifies_the_galaxy(app: AppTest) -> None:
    _open(app, "classify")
    app.file_uploader(key="cls_upload").set_value(("notes.png", b"this is not an image", "image/png"))
    app.run()
    assert any("notes.png" in e.value.replace("\\", "") for e in app.error)

    names = app.selectbox(key="cls_name").options
    app.selectbox(key="cls_name").set_value(names[1])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert len([m for m in app.markdown if " → **" in m.body]) == len(MODELS)
    assert app.radio(key="cls_input").value == "galaxy", "picking a galaxy chooses the galaxy"
    assert any("uploaded file is not used" in c.value for c in app.caption), "the page says the upload is set aside"

    app.radio(key="cls_input").set_value("upload")
    app.run()
    assert any("notes.png" in e.value.replace("\\", "") for e in app.error), "the upload is one click away"


def test_every_step_gets_a_display_stretch(world: dict[str, Path]) -> None:
    """Raw, background-subtracted and cropped pixels are counts: clipped to [0, 1] they were white or
    black noise; the display stretch spreads them over the grey levels."""
    import numpy as np
    import pandas as pd

    from core.images import read_image
    from core.prepare.preprocessing import PreprocessConfig, preprocess_steps
    from ui.services.pictures import for_display, step_for_display

    catalogue = pd.read_csv(world["sample"] / "catalog.csv")
    image = read_image(world["sample"] / catalogue["file"].iloc[0])
    for step, array in preprocess_steps(image, PreprocessConfig(size=32)).items():
        shown, caption = step_for_display(step, array)
        assert shown.min() >= 0.0 and shown.max() <= 1.0
        assert caption.startswith(step.replace("_", " "))
        saturated = np.mean((shown <= 0.0) | (shown >= 1.0))
        assert saturated < 0.25, f"{step}: {saturated:.0%} of the pixels are pure black or white"
        assert np.std(shown) > 0.05, f"{step}: flat"
    raw = preprocess_steps(image, PreprocessConfig(size=32))["raw"]
    clipped = for_display(raw)  # what the page showed: half the sky noise below 0, so black
    assert np.mean((clipped <= 0) | (clipped >= 1)) > 0.4, "the raw step needs a stretch at all"


def test_statistics_and_balance_charts_can_be_read(app: AppTest) -> None:
    """Violins per class instead of overlapping histograms, a histogram of the image side instead
    of a width-height diagonal, and the top raw type strings as bars instead of a Sankey."""
    import json

    _open(app, "statistics")
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    redshift = next(s for s in specs if s["layout"]["title"]["text"].startswith("Redshift per class"))
    assert {t["type"] for t in redshift["data"]} == {"violin"}
    assert all(t["spanmode"] == "hard" for t in redshift["data"]), "no density below z = 0"
    sides = next(s for s in specs if s["layout"]["title"]["text"].startswith("Image side"))
    assert {t["type"] for t in sides["data"]} == {"histogram"}

    _open(app, "balance")
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    assert all(t["type"] != "sankey" for s in specs for t in s["data"])
    types = next(s for s in specs if "most common raw NED type strings" in s["layout"]["title"]["text"])
    strings = {y for t in types["data"] for y in _array(t["y"])}
    assert 0 < len(strings) <= 15 and not any(y.startswith("other types") for y in strings)


def test_the_redshift_violins_span_the_bulk_of_the_data_not_its_tail() -> None:
    """A few redshifts of 0.5 among hundreds below 0.1 flattened every violin; the axis now ends near
    the bulk (1.5 times the 95th percentile) and says how many values lie beyond it."""
    from ui.charts import per_class_violin

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"label": ["E", "S0", "Spiral"] * 300, "redshift": rng.uniform(0.001, 0.08, 900)})
    frame.loc[:4, "redshift"] = 0.5
    fig = per_class_violin(frame, column="redshift", classes=["E", "S0", "Spiral"], title="z", y_title="z")
    low, high = fig.layout.yaxis.range
    assert 0.07 < high < 0.13 and low < 0.002
    assert any("5 above" in a.text and "0.5" in a.text for a in fig.layout.annotations)
    plain = per_class_violin(frame.iloc[5:], column="redshift", classes=["E", "S0", "Spiral"], title="z", y_title="z")
    assert plain.layout.yaxis.range is None and not plain.layout.annotations  # no tail: the data's own range
