"""Model comparison: the chosen runs side by side, with exports and a presentation layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import report
from ui import charts, common, data, palette, session

session.require_router()

table = data.runs_table()
finished = table[table["status"] == "finished"] if not table.empty else table
present = st.session_state.get("cmp_present", False)
if not present:
    common.page_header("Model comparison", "Finished runs side by side on their test set: mean ± std over runs "
                       "with 95 % intervals, and paired tests that say which differences are real; every colour "
                       "is one model.")
common.damaged_notice(common.damaged_runs(table), what="run", key="cmp_damaged_runs")
if finished.empty:
    common.stop_with("No finished runs yet — train models on the **Training** page (or `python -m core train`).")

datasets = list(dict.fromkeys(finished["dataset"]))
with st.sidebar:
    st.toggle("Presentation layout", key="cmp_present", help="Hide the controls and show results only.")
controls = st.container(border=True) if not present else st.sidebar
dataset = controls.selectbox("Dataset", datasets, index=len(datasets) - 1, format_func=lambda p: str(p).split("/")[-1],
                             key="cmp_dataset")
problem = data.dataset_problem(dataset)
common.damaged_notice([(dataset, problem)] if problem else [], what="dataset", key="cmp_damaged_dataset")
candidates = finished[finished["dataset"] == dataset]
chosen = controls.multiselect("Runs", list(candidates["id"]), default=list(candidates["id"]), key="cmp_runs",
                              format_func=lambda i: f"{common.model_label(candidates.set_index('id').loc[i, 'model'])} · "
                                                    f"seed {candidates.set_index('id').loc[i, 'seed']} · {i[:15]}")
if not chosen:
    common.stop_with("Choose at least one run above.")
runs_list = data.load_runs(tuple(candidates.set_index("id").loc[chosen, "path"]))
groups = {report.dataset_name(group): group for group in report.by_dataset(runs_list).values()}
if len(groups) > 1:
    # A rebuilt folder (new content hash) or another protocol is another experiment: one at a time.
    pick = controls.selectbox("Experiment (dataset version and protocol)", list(groups), index=len(groups) - 1,
                              key="cmp_experiment", help="Runs of different datasets or protocols are not pooled.")
    runs_list = groups[pick]
models = list(dict.fromkeys(r.model_name for r in runs_list))
colors = {m: palette.model_color(m, i) for i, m in enumerate(models)}
classes = runs_list[0].classes
if present:
    st.title(" vs ".join(common.md(common.model_label(m)) for m in models))

summary = report.summary_table(runs_list)
tests = report.paired_tests(runs_list)
best = report.best_model(tests, list(summary.index))
st.subheader("Test-set metrics")
st.dataframe(data.styled_summary(summary, best=best), key="cmp_summary")
st.caption(report.interval_note(summary) + " "
           + (f"Bold green: {common.md(common.model_label(best))} is significantly more accurate than every other model (Holm). "
              if best else "No model is significantly more accurate than every other one, so none is highlighted. ")
           + "ECE = expected calibration error; time in seconds on "
           f"{runs_list[0].config.get('device', 'this machine')}.")
# Shown open: a data frame in a collapsed expander never draws, so the page never reads as loaded.
st.markdown("**Recall per class** [95 % Wilson interval]")
st.dataframe(report.per_class_recall(runs_list).rename(columns=common.model_label), key="cmp_recall")
if not tests.empty:
    st.markdown("\n".join(f"- {common.md(line)}" for line in report.verdicts(tests)))
    st.caption("Paired tests on the test galaxies two models share: " + "; ".join(sorted(set(tests["method"])))
               + ". p-values Holm-adjusted across the model pairs; significant below 0.05.")

st.subheader("Confusion matrices")
st.caption("First seed of each model, on the test split: rows are the true class, columns the predicted one; "
           "numbers and colour are the fraction of each true class.")
first = data.first_seed_runs(runs_list)
for column, run in zip(st.columns(len(first)), first):
    with column:
        st.markdown(f"**{common.md(common.model_label(run.model_name))}** · seed {common.md(run.seed)}")
        cls, counts, norm = report.confusion_matrices(run)
        fig = charts.heatmap(pd.DataFrame(norm, index=cls, columns=cls), title=None, text_format=".2f", zmin=0, zmax=1,
                             x_title="predicted", y_title="true", height=300)
        st.plotly_chart(fig, key=f"cmp_confusion_{run.id}")

left, right = st.columns(2)
with left:
    per_class = report.per_class_table(runs_list)
    f1 = per_class.groupby(["model", "class"], sort=False)["f1"].agg(["mean", "std"]).reset_index()
    fig = go.Figure([go.Bar(name=charts.text(common.model_label(m)), x=charts.texts(part["class"]), y=part["mean"],
                            marker_color=colors[m],
                            error_y=dict(type="data", array=part["std"].fillna(0)))
                     for m, part in f1.groupby("model", sort=False)])
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="F1", range=[0, 1])
    st.plotly_chart(charts.style(fig, title="Per-class F1 (mean ± std over seeds)"), key="cmp_f1")
with right:
    curves = report.learning_curves(runs_list)
    fig = go.Figure()
    for run_id, part in curves.groupby("id", sort=False):
        m = part["model"].iloc[0]
        name = charts.text(f"{common.model_label(m)} s{part['seed'].iloc[0]}")
        fig.add_trace(go.Scatter(x=part["epoch"], y=part["accuracy"], name=name + " train", line=dict(color=colors[m])))
        fig.add_trace(go.Scatter(x=part["epoch"], y=part["val_accuracy"], name=name + " val",
                                 line=dict(color=colors[m], dash="dash")))
    charts.epoch_axis(fig, curves["epoch"])
    fig.update_yaxes(title="accuracy")
    st.plotly_chart(charts.style(fig, title="Learning curves (solid: train, dashed: validation)"), key="cmp_curves")

left, right = st.columns(2)
with left:
    roc_class = st.selectbox("ROC class (one vs rest)", classes, key="cmp_roc_class") if not present else classes[0]
    fig = go.Figure()
    for run in first:
        roc = report.roc_curves(run)
        part = roc[roc["class"] == roc_class]
        fig.add_trace(go.Scatter(x=part["fpr"], y=part["tpr"], line=dict(color=colors[run.model_name]),
                                 name=charts.text(f"{common.model_label(run.model_name)} "
                                                  f"(AUC {part['auc'].iloc[0]:.3f})")))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(color=palette.MISSING_COLOR, dash="dot"), name="chance"))
    fig.update_xaxes(title="false positive rate")
    fig.update_yaxes(title="true positive rate")
    st.plotly_chart(charts.style(fig, title=f"ROC curves — {roc_class} vs rest"), key="cmp_roc")
with right:
    runs_rows = report.runs_table(runs_list)
    fig = go.Figure()
    for m, part in runs_rows.groupby("model", sort=False):
        fig.add_trace(go.Scatter(
            x=part["params"], y=part["accuracy"], mode="markers", name=charts.text(common.model_label(m)),
            marker=dict(color=colors[m], size=10 + 30 * part["train_seconds"] / max(1.0, runs_rows["train_seconds"].max()),
                        opacity=0.9, line=dict(color="white", width=1)),
            hovertemplate="%{x:,} parameters<br>accuracy %{y:.3f}<br>%{customdata:.0f} s training",
            customdata=part["train_seconds"]))
    fig.update_xaxes(title="parameters (log scale)", type="log", dtick=1)
    fig.update_yaxes(title="test accuracy")
    st.plotly_chart(charts.style(fig, title="Size vs accuracy (marker area: training time)"), key="cmp_params")

left, right = st.columns(2)
with left:
    fig = go.Figure()
    for run in first:
        bins = report.reliability(run).dropna()
        ece = run.metrics.get("ece", np.nan)
        fig.add_trace(go.Scatter(x=bins["confidence"], y=bins["accuracy"], mode="lines+markers",
                                 line=dict(color=colors[run.model_name]), customdata=bins["count"],
                                 name=charts.text(f"{common.model_label(run.model_name)} (ECE {ece:.3f})"),
                                 hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} galaxies"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(color=palette.MISSING_COLOR, dash="dot"), name="calibrated"))
    fig.update_xaxes(title="mean confidence in bin", range=[0, 1])
    fig.update_yaxes(title="accuracy in bin", range=[0, 1])
    st.plotly_chart(charts.style(fig, title="Reliability diagram (15 confidence bins)"), key="cmp_reliability")
with right:
    st.caption("The reliability diagram behind the ECE row of the table: test galaxies binned by the model's top "
               "probability; a point below the diagonal means the model is more confident than it is right "
               "(over-confident). ECE is the gap weighted by the galaxies in each bin.")

st.subheader("Paired tests between models")
matrix = report.paired_matrix(runs_list)
if matrix.notna().any().any():
    matrix.index = matrix.columns = [common.model_label(m) for m in matrix.columns]
    left, right = st.columns([2, 3])
    left.plotly_chart(charts.heatmap(matrix, title=None, colorscale="RdBu", text_format=".3g", zmin=0, zmax=1, height=300),
                      key="cmp_mcnemar")
    right.caption("Holm-adjusted p-value per model pair, over every seed and split. One split: McNemar's test on the "
                  "test galaxies both models saw, the largest p over the seeds (the difference must hold, the same "
                  "way round, for each). "
                  "Several splits (train --folds / --repeats): Nadeau & Bengio's corrected resampled t-test on the "
                  "per-split accuracy differences. Below 0.05: the accuracies differ significantly.")
    st.dataframe(report.mcnemar_table(runs_list), key="cmp_mcnemar_table", hide_index=True)
else:
    st.caption("Paired tests need two different models trained with the same seed on the same split.")

st.subheader("Misclassified galaxies")
gallery = data.misclassified_gallery(runs_list, limit=8)
changed = [(run.path, change) for run in runs_list if (change := data.dataset_change(run)) is not None]
common.changed_dataset_notice(changed, key="cmp_changed_runs")
if changed:
    # The gallery's images come from the dataset folder: after a rebuild a name may show another image.
    st.caption("No gallery: the dataset folder no longer holds the images these runs were tested on.")
elif gallery.empty:
    st.success("Every test galaxy is classified correctly by every chosen model.")
else:
    source_path = data.dataset_source(runs_list[0])
    for chunk in range(0, len(gallery), 4):
        for col, (_, row) in zip(st.columns(4), gallery.iloc[chunk:chunk + 4].iterrows()):
            with col:
                image = data.dataset_image(runs_list[0].config["dataset"]["path"], row["name"])
                if image is not None:
                    st.image(image, width="stretch")
                lines = [f"**{common.md(row['name'])}** — true **{common.md(row['true'])}**"]
                lines += [f"{common.md(common.model_label(m))}: {common.md(row[f'pred_{m}'])} ({row[f'conf_{m}']:.0%})"
                          for m in models]
                st.markdown("  \n".join(lines))
    common.acknowledge(source_path)

if not present:
    st.subheader("Saliency and Grad-CAM")
    names = list(gallery["name"]) if not gallery.empty else list(runs_list[0].predictions["name"].head(20))
    galaxy = st.selectbox("Galaxy", names, key="cmp_saliency_name")
    if st.button("Compute saliency maps", key="cmp_saliency", icon=":material/visibility:",
                 disabled=problem is not None or bool(changed)):
        image = data.dataset_image(runs_list[0].config["dataset"]["path"], galaxy, raw=True)
        networks = [r for r in first if (r.path / "model.keras").exists()]  # the baseline has no gradients
        for col, run in zip(st.columns(len(networks) + 1), [None, *networks]):
            if run is None:
                col.image(data.dataset_image(runs_list[0].config["dataset"]["path"], galaxy), caption="input", width="stretch")
                continue
            heat, predicted = data.saliency(run.path, image)
            label = run.classes[predicted] if predicted < len(run.classes) else predicted
            model = common.md(common.model_label(run.model_name))
            col.image(heat, caption=f"{model} → {common.md(label)}: |∂p/∂pixel|", width="stretch")
            cam, _ = data.grad_cam(run.path, image)
            col.image(cam, caption=f"{model} → {common.md(label)}: Grad-CAM", width="stretch")

    st.subheader("Export")
    exports = data.exports(tuple(r.path for r in runs_list))
    c1, c2, c3 = st.columns(3)
    c1.download_button("Summary CSV", exports["summary.csv"], "summary.csv", "text/csv", key="cmp_csv")
    c2.download_button("LaTeX table", exports["summary.tex"], "summary.tex", "text/x-tex", key="cmp_tex")
    c3.download_button("HTML report", exports["report.html"], "report.html", "text/html", key="cmp_html")
