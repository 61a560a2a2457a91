"""Model comparison: the chosen runs side by side, with exports and a presentation mode (``?present=1``)."""

from __future__ import annotations

import streamlit as st

from core import report, runs
from ui import charts, common, data, present, session

session.require_router()

table = data.runs_table()
finished = table[table["status"] == "finished"] if not table.empty else table
presenting = present.active()
if not presenting:
    common.page_header("Model comparison", "Finished runs side by side on their test set: mean ± std over runs "
                       "with 95 % intervals, and paired tests that say which differences are real; every colour "
                       "is one model.")
common.damaged_notice(common.damaged_runs(table), what="run", key="cmp_damaged_runs")
if finished.empty:
    common.stop_with("No finished runs yet — train models on the **Training** page (or `python -m core train`).")

# What was chosen last, so presentation mode shows it (its selectors are hidden) and normal mode gets it back.
shown_before = st.session_state.get("cmp_shown", {})
datasets = list(dict.fromkeys(finished["dataset"]))
last = datasets.index(shown_before["dataset"]) if shown_before.get("dataset") in datasets else len(datasets) - 1
if presenting:
    dataset = datasets[last]
else:
    controls = st.container(border=True)
    controls.button("Presentation mode", key="cmp_present", on_click=present.enter, icon=":material/slideshow:",
                    help="Results only: no sidebar, no selectors. The address (…?present=1) opens in it too.")
    dataset = controls.selectbox("Dataset", datasets, index=last, format_func=lambda p: str(p).split("/")[-1],
                                 key="cmp_dataset")
problem = data.dataset_problem(dataset)
common.damaged_notice([(dataset, problem)] if problem else [], what="dataset", key="cmp_damaged_dataset")
candidates = finished[finished["dataset"] == dataset].set_index("id")
runs_before = [i for i in shown_before.get("runs", []) if i in candidates.index] or list(candidates.index)
if presenting:
    chosen = runs_before
else:
    chosen = controls.multiselect("Runs", list(candidates.index), default=runs_before, key="cmp_runs",
                                  format_func=lambda i: f"{common.model_label(candidates.loc[i, 'model'])} · "
                                                        f"seed {candidates.loc[i, 'seed']} · {i[:15]}")
if not chosen:
    common.stop_with("Choose at least one run above.")
runs_list, damaged_files = runs.split_damaged(data.load_runs(tuple(candidates.loc[chosen, "path"])))
common.damaged_notice(damaged_files, what="run", key="cmp_damaged_files")
if not runs_list:
    common.stop_with("None of the chosen runs can be read; choose others above.")
groups = {report.dataset_name(group): group for group in report.by_dataset(runs_list).values()}
experiment = shown_before.get("experiment") if shown_before.get("experiment") in groups else list(groups)[-1]
if len(groups) > 1 and not presenting:
    # A rebuilt folder (new content hash) or another protocol is another experiment: one at a time.
    experiment = controls.selectbox("Experiment (dataset version and protocol)", list(groups),
                                    index=list(groups).index(experiment), key="cmp_experiment",
                                    help="Runs of different datasets or protocols are not pooled.")
st.session_state["cmp_shown"] = {"dataset": dataset, "runs": chosen, "experiment": experiment}
runs_list = report.in_model_order(groups[experiment])
models = list(dict.fromkeys(r.model_name for r in runs_list))
classes = runs_list[0].classes
sections = report.sections(runs_list)
tests = report.paired_tests(runs_list)
if presenting:
    st.title(common.md(report.presentation_title(runs_list)))
    if (sentence := report.verdict_sentence(tests)) is not None:
        st.markdown(f"**{common.md(sentence)}**")

summary = report.summary_table(runs_list)
best = report.best_model(tests, list(summary.index))
st.subheader("Test-set metrics")
st.dataframe(data.styled_summary(summary, best=best), key="cmp_summary")
st.caption(report.interval_note(summary) + " " + ("Bold green: " if best else "")
           + common.md(report.best_note(best)) + (" None is highlighted. " if best is None else " ")
           + "ECE = expected calibration error; time in seconds on "
           f"{runs_list[0].config.get('device', 'this machine')}.")
if "recall" in sections:
    # Shown open: a data frame in a collapsed expander never draws, so the page never reads as loaded.
    st.markdown("**Recall per class** [95 % Wilson interval]")
    st.dataframe(report.per_class_recall(runs_list).rename(columns=common.model_label), key="cmp_recall")
if not tests.empty and not presenting:
    st.markdown("\n".join(f"- {common.md(line)}" for line in report.verdicts(tests)))
    st.caption("Paired tests on the test galaxies two models share: " + "; ".join(sorted(set(tests["method"])))
               + ". p-values Holm-adjusted across the model pairs; significant below 0.05.")

first = report.first_seed_runs(runs_list)
if "confusion" in sections:
    st.subheader("Confusion matrices")
    st.caption("First seed of each model, on the test split: rows are the true class, columns the predicted one; "
               "numbers and colour are the fraction of each true class.")
    for column, run in zip(st.columns(len(first)), first):
        with column:
            st.markdown(f"**{common.md(common.model_label(run.model_name))}** · seed {common.md(run.seed)}")
            st.plotly_chart(charts.style(report.confusion_figure(run), height=300), key=f"cmp_confusion_{run.id}")


def draw(name: str) -> None:
    """One figure of the grid, from core.report; the ROC class is a choice outside presentation mode."""
    if name == "roc":
        roc_class = classes[0] if presenting else st.selectbox("ROC class (one vs rest)", classes, key="cmp_roc_class")
        fig = report.roc_figure(runs_list, roc_class)
    else:
        fig = FIGURES[name](runs_list)
    if name == "learning_curves":
        charts.epoch_axis(fig, report.learning_curves(runs_list)["epoch"])
    st.plotly_chart(charts.style(fig), key=f"cmp_{name}")


FIGURES = {"per_class_f1": report.per_class_f1_figure, "learning_curves": report.learning_curves_figure,
           "size_accuracy": report.size_accuracy_figure, "reliability": report.reliability_figure}
grid = [name for name in ("per_class_f1", "learning_curves", "roc", "size_accuracy", "reliability") if name in sections]
if "reliability" in grid and not presenting:
    grid.append("reliability_note")
for row in range(0, len(grid), 2):
    for column, name in zip(st.columns(2), grid[row:row + 2]):
        with column:
            if name == "reliability_note":
                st.caption("The reliability diagram behind the ECE row of the table: test galaxies binned by the "
                           "model's top probability; a point below the diagonal means the model is more confident "
                           "than it is right (over-confident). ECE is the gap weighted by the galaxies in each bin.")
            else:
                draw(name)

if "paired_tests" in sections:
    st.subheader("Paired tests between models")
    left, right = st.columns([2, 3])
    left.plotly_chart(charts.style(report.paired_figure(runs_list).update_layout(title=None), height=300),
                      key="cmp_mcnemar")
    right.caption("Holm-adjusted p-value per model pair, over every seed and split. One split: McNemar's test on the "
                  "test galaxies both models saw, the largest p over the seeds (the difference must hold, the same "
                  "way round, for each). "
                  "Several splits (train --folds / --repeats): Nadeau & Bengio's corrected resampled t-test on the "
                  "per-split accuracy differences. Below 0.05: the accuracies differ significantly.")
    st.dataframe(report.mcnemar_table(runs_list), key="cmp_mcnemar_table", hide_index=True)
elif not presenting:
    st.subheader("Paired tests between models")
    st.caption("Paired tests need two different models trained with the same seed on the same split.")

changed = [(run.path, change) for run in runs_list if (change := data.dataset_change(run)) is not None]
gallery = data.misclassified_gallery(runs_list, limit=8)
if not presenting or ("misclassified" in sections and not changed):
    st.subheader("Misclassified galaxies")
    common.changed_dataset_notice(changed, key="cmp_changed_runs")
if changed and not presenting:
    # The gallery's images come from the dataset folder: after a rebuild a name may show another image.
    st.caption("No gallery: the dataset folder no longer holds the images these runs were tested on.")
elif gallery.empty and not presenting:
    st.success("Every test galaxy is classified correctly by every chosen model.")
elif not changed and not gallery.empty:
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

if presenting:
    st.stop()

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
