"""Training: pick a dataset, models, epochs and seeds; train in the background; follow and stop it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.learn import device

from core import jobs, runs
from core.errors import GalaxyMorphError
from core.progress import format_estimate
from core.learn import registry
from core.learn.tuning import TUNING_CANDIDATES, describe
from core.spec import TrainSpec
from ui import charts, common, grid, palette, present, session, state
from ui.services import builds, results

session.require_router()

common.page_header(
    "Training",
    # A presentation shows no form: its description would point at controls that are not there.
    "Each run's progress and its loss and accuracy by epoch (solid: training, dashed: validation)."
    if present.presenting() else
    "Train LeNet-5, AlexNet and ResNet on one dataset: the same split, augmentation and seeds for every model; "
    "the protocol below sets each model's optimiser, schedule and stopping. Training runs in the background: "
    "you can close the browser and come back.",
)
datasets, damaged_datasets = builds.checked_datasets()
common.damaged_notice(damaged_datasets, what="dataset", key="train_damaged_datasets")
if not datasets:
    common.stop_with("No usable dataset yet — tune the settings on **Preprocessing preview** and press *Build and save dataset* "
                     "(or run `python -m core build`).")

train_jobs = [j for j in jobs.list_jobs() if j.kind == "train"]
running = [j for j in train_jobs if jobs.job_problem(j) is None and jobs.job_status(j) == jobs.RUNNING]
presenting = present.presenting()  # results only: no form, the runs of the dataset chosen last
PROTOCOL_TEXT = {  # what each of TrainSpec.protocol's choices means here
    "equal": "one recipe for every model, so a difference is the architecture's: AdamW (lr 1e-3, weight decay 1e-4), "
             "a cosine schedule over 30 epochs, early stopping after 10 epochs without a better validation loss, "
             "every model at the dataset's image size.",
    "tuned": "per-model recipes, picked by a nested search with the same budget for every model: each run trains "
             f"every candidate ({'; '.join(describe(c) for c in TUNING_CANDIDATES)}; the equal recipe otherwise) "
             "on its training galaxies and keeps the best on its validation galaxies; only that one is scored on "
             "test. A run costs one equal run per candidate.",
}
gpu = device.nvidia_driver_present()


if presenting:
    dataset = st.session_state.get("train_dataset") if st.session_state.get("train_dataset") in map(str, datasets) \
        else str(datasets[0])
    models, seeds_text, epochs = [], "", None
else:
    with st.container(border=True):
        c1, c2 = st.columns([1, 2])  # three model tags fit the field at 1024 px
        dataset = c1.selectbox(options=[str(p) for p in datasets], format_func=lambda p: Path(p).name,
                               **state.widget_args("train_dataset"))
        # The networks only: the baseline trains from the command line (python -m core train --models baseline).
        models = c2.multiselect(options=list(registry.network_names()), default=list(state.field_default("train_models")),
                                format_func=common.model_label, **state.widget_args("train_models"))
        c1, c2, c3, c4 = st.columns([1, 1, 1, 1.2])
        epochs = c1.number_input(min_value=1, max_value=500, value=state.field_default("train_epochs"),
                                 placeholder="default", **state.widget_args("train_epochs"))
        seeds_text = c2.text_input(value=", ".join(map(str, state.field_default("train_seeds"))),
                                   **state.widget_args("train_seeds"))
        batch = c3.select_slider(options=[16, 32, 64, 128], value=state.field_default("train_batch"),
                                 **state.widget_args("train_batch"))
        if gpu:
            mixed = c4.toggle(value=state.field_default("train_mixed"), **state.widget_args("train_mixed"))
            xla = c4.toggle(value=state.field_default("train_xla"), **state.widget_args("train_xla"))
        else:
            mixed = xla = False  # no GPU here: the options would only slow a CPU down
            c4.caption(f"Device: {common.md(builds.device_label())}. GPU options appear where a GPU is found.")
        c1, c2, c3 = st.columns([1, 1, 1])
        protocols = state.field_choices("train_protocol")
        protocol = c1.selectbox(options=protocols, index=protocols.index(state.field_default("train_protocol")),
                                **state.widget_args("train_protocol"))
        folds = c2.number_input(min_value=0, max_value=10, value=state.field_default("train_folds"),
                                **state.widget_args("train_folds"))
        repeats = c3.number_input(min_value=1, max_value=10, value=state.field_default("train_repeats"),
                                  **state.widget_args("train_repeats"))
        st.caption(f"**Protocol {common.md(protocol)}**: {PROTOCOL_TEXT[protocol]}")
        manifest = builds.dataset_manifest(dataset)
        n_images, side = manifest.get("n_images", "?"), manifest.get("image_shape", ["?"])[0]
        st.caption(
            f"{common.md(n_images)} galaxies of {common.md(side)} px, classes "
            + ", ".join(common.md(c) for c in manifest.get("classes", []))
            # Without a GPU the device is already named beside the batch size.
            + (f" · device: {common.md(builds.device_label())}" if gpu else "")
        )

try:
    seeds = [int(s) for s in seeds_text.replace(" ", "").split(",") if s]
except ValueError:
    seeds = []
    st.error(f"seeds must be whole numbers separated by commas; got {common.md(repr(seeds_text))}. Use e.g. 0, 1, 2.")

if not presenting:
    estimate = builds.training_estimate(dataset, models, protocol=protocol, epochs=int(epochs) if epochs else None,
                                      runs_per_model=len(seeds) * max(1, int(folds)) * int(repeats)) if models and seeds else None
    if estimate is not None:
        st.markdown(f"**Expected time: {format_estimate(estimate)}** on a 2-core CPU under the "
                    f"{common.md(protocol)} protocol (measured speeds, docs/MODELS.md; at most, since early stopping "
                    "can end sooner; a GPU is far faster).")
    busy = bool(running)
    on_cluster = grid.cluster_toggle(key="train_on_cluster")
    buttons = st.container(horizontal=True)
    why_not = "A training job is running: wait for it, or stop it below." if busy else None
    start = buttons.button("Start training", key="train_start", type="primary", icon=":material/play_arrow:",
                           disabled=busy or not (models and seeds), help=why_not)
    resume = buttons.button("Resume unfinished", key="train_resume", icon=":material/replay:",
                            disabled=busy or not (models and seeds),
                            help=why_not or "Skip finished runs of these settings and continue stopped or crashed ones "
                                            "from their checkpoint.")
    if busy:
        buttons.caption(f":material/hourglass_top: Training in progress: {common.md(running[0].label)}")
    if start or resume:
        try:
            spec = TrainSpec(dataset=dataset, models=tuple(models), seeds=tuple(seeds), protocol=protocol,
                             folds=int(folds), repeats=int(repeats), batch_size=int(batch),
                             epochs=int(epochs) if epochs else None, mixed_precision=mixed, xla=xla,
                             shift=0.0 if xla else None, zoom=0.0 if xla else None)
            names = ", ".join(common.model_label(m) for m in models)
            job = grid.submit(spec, label=f"Train {names} × {spec.n_runs // len(models)} run(s)", resume=resume,
                              on_cluster=on_cluster)
        except GalaxyMorphError as exc:
            st.error(common.md(exc))
        else:
            st.session_state["train_job"] = job.id
            st.rerun()  # draw the page again in its busy state (Start disabled)

if "train_job" not in st.session_state and train_jobs:
    st.session_state["train_job"] = train_jobs[0].id  # follow the latest after a reload
if "train_job" in st.session_state:
    st.subheader("Current job")
    common.job_panel(st.session_state["train_job"], key="train_panel")
    grid.grid_panel(st.session_state["train_job"], key="train_grid")


def training_active() -> bool:
    """A training job or a run is in progress: only then do the panels below redraw themselves."""
    job_id = st.session_state.get("train_job")
    if job_id is not None:
        try:
            if jobs.job_status(jobs.load_job(job_id)) == jobs.RUNNING:
                return True
        except jobs.JobError:
            pass
    table = results.runs_table()
    return not table.empty and bool((table["status"] == "running").any())


def runs_panel(*, live: bool) -> None:
    """One progress bar and loss / accuracy curves per run of the current dataset."""
    if live and not training_active():
        st.rerun()  # the whole page draws the final state once, without this fragment's timer
    table = results.runs_table()
    table = table[table["dataset"] == str(Path(dataset).resolve())] if not table.empty else table
    if table.empty:
        st.info("No runs on this dataset yet — press **Start training**.")
        return
    active = table[table["status"].isin(["running", "stale", "stopped", "failed"])]
    recent = pd.concat([active, table[table["status"] == "finished"].tail(6)]).drop_duplicates("id").tail(6)
    for _, row in recent.iterrows():
        run = runs.load_run(row["path"])
        events = run.events()
        last = events[-1] if events else {}
        epochs_total = int(last.get("epochs") or run.config.get("params", {}).get("epochs", 1))
        epoch, batch_i, batches = int(last.get("epoch") or 0), int(last.get("batch") or 0), int(last.get("batches") or 1)
        fraction = 1.0 if row["status"] == "finished" else min(1.0, ((max(epoch, 1) - 1) + batch_i / batches) / epochs_total)
        status_text = {"stale": "interrupted — resume it", "finished": f"finished, test accuracy {row['accuracy']:.3f}"}.get(
            row["status"], row["status"])
        with st.container(border=True):
            model = common.md(common.model_label(row["model"]))
            st.progress(fraction, text=f"**{model}** seed {common.md(row['seed'])} — epoch "
                                       f"{epoch}/{epochs_total} — {status_text}")
            history = run.history
            if history.empty:
                st.caption("Waiting for the first epoch …")
                continue
            color = palette.model_color(row["model"])
            left, right = st.columns(2)
            left.plotly_chart(_curve(history, "loss", color, "Loss (cross-entropy)"), key=f"train_loss_{row['id']}")
            right.plotly_chart(_curve(history, "accuracy", color, "Accuracy"), key=f"train_acc_{row['id']}")


live_runs_panel = st.fragment(runs_panel, run_every=3.0)


def _curve(history: pd.DataFrame, metric: str, color: str, title: str) -> go.Figure:
    fig = go.Figure([
        go.Scatter(x=history["epoch"], y=history[metric], name="train", line=dict(color=color)),
        go.Scatter(x=history["epoch"], y=history[f"val_{metric}"], name="validation", line=dict(color=color, dash="dash")),
    ])
    charts.epoch_axis(fig, history["epoch"])
    fig.update_yaxes(title=metric)
    return charts.style(fig, title=title, height=240)


st.subheader(f"Runs on {common.md(Path(dataset).name)}")
common.damaged_notice(common.damaged_runs(results.runs_table()), what="run", key="train_damaged_runs")
if training_active():
    live_runs_panel(live=True)
else:
    runs_panel(live=False)
