"""Model comparison: the chosen runs side by side, with exports and a presentation mode (``?present=1``).

One unit on every view: the table is over runs, every figure pools the held-out predictions of all
of a model's runs (every fold and seed), and the title always names the protocol and any run left out (by
name in the line under it, with the dataset and the test galaxies per model).
"""

from __future__ import annotations

import streamlit as st

from core import runs
from core.learn import report
from ui import charts, common, present, session
from ui.services import builds, results

session.require_router()

table = results.runs_table()
finished = table[table["status"] == "finished"] if not table.empty else table
presenting = present.active()
if not presenting:
    common.page_header("Model comparison", "Finished runs side by side on their test set: mean ± std over runs "
                       "with 95 % intervals and n, Holm-corrected paired tests that say which differences are real, "
                       "and figures pooled over every fold and seed; every colour is one model.")
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
problem = builds.dataset_problem(dataset)
common.damaged_notice([(dataset, problem)] if problem else [], what="dataset", key="cmp_damaged_dataset")
candidates = finished[finished["dataset"] == dataset].set_index("id")
runs_before = [i for i in shown_before.get("runs", []) if i in candidates.index] or list(candidates.index)
if presenting:
    chosen = runs_before
else:
    chosen = controls.multiselect("Runs", list(candidates.index), default=runs_before, key="cmp_runs",
                                  format_func=lambda i: f"{common.model_label(candidates.loc[i, 'model'])} · "
                                                        f"seed {candidates.loc[i, 'seed']} · {i[:15]}",
                                  help="Leaving runs out changes the means, the intervals and the Holm families: "
                                       "the title then names the runs left out.")
if not chosen:
    common.stop_with("Choose at least one run above.")
runs_list, damaged_files = runs.split_damaged(results.load_runs(tuple(candidates.loc[chosen, "path"])))
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
# Every run of this experiment, chosen or not: those left out are named in the title and the exports.
readable, _ = runs.split_damaged(results.load_runs(tuple(candidates["path"])))
every = report.in_model_order(next(g for g in report.by_dataset(readable).values() if report.dataset_name(g) == experiment))
shown_ids = {r.id for r in runs_list}
left_out = [r for r in report.deduplicate(report.finished(every)) if r.id not in shown_ids]
models = list(dict.fromkeys(r.model_name for r in runs_list))
classes = runs_list[0].classes
sections = report.sections(runs_list)
tests = report.paired_tests(runs_list)
summary = report.summary_table(runs_list)
best = report.best_model(tests, list(summary.index))
title = report.comparison_title(runs_list, excluded=left_out)  # one line: the figures' zip names it
# Short enough for two lines at 1024 px (models, protocol, how many runs left out); the details under it.
headline, details = report.comparison_headline(runs_list, excluded=left_out)

# ------------------------------------------------------------------ the headline: title, verdict, accuracy, n
if presenting:
    st.title(common.md(headline))
else:
    st.markdown(f"#### {common.md(headline)}")
st.caption(common.md(details))
if (note := report.excluded_note(runs_list, every)) is not None:
    st.warning(common.md(note), icon=":material/filter_alt:")
said = report.verdict_lines(runs_list)
family = [line for line in said if line.startswith("Holm-corrected within")]
said = [line for line in said if line not in family]
if said:
    # The verdict between architectures first and bold; then each network against the baseline.
    st.markdown("\n".join(f"- **{common.md(line)}**" if k == 0 else f"- {common.md(line)}"
                          for k, line in enumerate(said)))
if family:
    st.caption(common.md(family[0]))

left, right = st.columns(2) if "paired_tests" in sections else (st.container(), None)
with left:
    st.plotly_chart(charts.style(report.accuracy_figure(summary), height=90 + 55 * len(summary)),
                    key="cmp_accuracy_chart")
    # The protocol and what the figures pool are in the title and the line under it: not said a third time.
    # How tuned recipes were picked is not there (empty under the equal protocol).
    pooling = "n = test galaxies per model; every figure below pools the same predictions."
    st.caption(common.md(" ".join(filter(None, (report.tuning_note(runs_list), pooling)))))
if right is not None:
    with right:
        st.plotly_chart(charts.style(report.paired_figure(runs_list), height=90 + 55 * len(summary)),
                        key="cmp_mcnemar")
        st.caption("Holm-corrected p-values (each family on its own: pairs of networks; each network against "
                   "the baseline). Blue: significant below 0.05.")

# Exports near the top and in both modes: what a slide needs, one click each (written when clicked).
paths, left_out_paths = tuple(str(r.path) for r in runs_list), tuple(str(r.path) for r in left_out)
st.markdown("**Export**")
e1, e2, e3, e4 = st.columns(4)
e1.download_button("Summary CSV", lambda: results.exports(paths, left_out_paths)["summary.csv"], "summary.csv",
                   "text/csv", key="cmp_csv", on_click="ignore", icon=":material/table:")
e2.download_button("LaTeX (standalone)", lambda: results.exports(paths, left_out_paths)["summary.tex"], "summary.tex",
                   "text/x-tex", key="cmp_tex", on_click="ignore", icon=":material/functions:",
                   help=f"Compiles with pdflatex; needs only {', '.join(report.LATEX_PACKAGES)}.")
e3.download_button("HTML report", lambda: results.exports(paths, left_out_paths)["report.html"], "report.html",
                   "text/html", key="cmp_html", on_click="ignore", icon=":material/description:")
e4.download_button("All figures (PNG + SVG)", lambda: results.figures_zip(paths, title), "figures.zip",
                   "application/zip", key="cmp_figures", on_click="ignore", icon=":material/download:",
                   help="Every figure of this page as PNG, SVG and interactive HTML in one zip (about a second per "
                        "image to draw).")

st.subheader("Test-set metrics")
shown_summary = results.styled_summary(summary, best=best)
if presenting:
    # On a projector: the accuracy, its n, the model's size and training time.
    compact = report.summary_cells(summary).loc[["Accuracy", report.N_TEST_LABEL, "Parameters", "Train time (s)"]]
    st.dataframe(compact.rename(columns=common.model_label), key="cmp_summary")
else:
    st.dataframe(shown_summary, key="cmp_summary")
    st.caption(report.interval_note(summary) + " " + ("Bold green: " if best else "")
               + common.md(report.best_note(best)) + (" None is highlighted. " if best is None else " ")
               + "ECE = expected calibration error; parameters and training time per run, mean over runs, on "
               f"{runs_list[0].config.get('device', 'this machine')}.")
if "recall" in sections:
    # Shown open: a data frame in a collapsed expander never draws, so the page never reads as loaded.
    st.markdown("**Recall per class** [95 % Wilson interval on the pooled held-out predictions] (n galaxies)")
    st.dataframe(report.per_class_recall(runs_list).rename(columns=common.model_label), key="cmp_recall")

if not tests.empty and not presenting:
    with st.expander("Paired tests in numbers (uncorrected and Holm-corrected p)", expanded=False):
        st.caption("One combined test per model pair: over several splits, Nadeau & Bengio's corrected resampled "
                   "t-test on the per-split accuracy differences; on one split, McNemar's test on the test galaxies "
                   "both models saw (with several seeds, the largest p: the difference must hold for each). "
                   "Only the Holm-corrected column decides.")
        st.dataframe(report.readable_tests(tests), key="cmp_tests_table", hide_index=True)
        st.markdown("**McNemar per split and seed — uncorrected p-values**, not for verdicts:")
        st.dataframe(report.readable_mcnemar(report.mcnemar_table(runs_list)), key="cmp_mcnemar_table",
                     hide_index=True)
elif tests.empty and not presenting:
    st.caption("Paired tests need two different models trained with the same seed on the same split.")

if "confusion" in sections:
    st.subheader("Confusion matrices")
    if not presenting:
        st.caption("Rows are the true class, columns the predicted one; colour and number the fraction of each true "
                   f"class, the count below it. {report.pooled_note(runs_list)[0].upper()}"
                   f"{report.pooled_note(runs_list)[1:]}.")
    for column, model in zip(st.columns(len(models)), models):
        with column:
            st.plotly_chart(charts.style(report.confusion_figure(runs_list, model), height=300),
                            key=f"cmp_confusion_{model}")


def draw(name: str) -> None:
    """One figure of the grid, from core.learn.report. The ROC's class is chosen with pills; a presentation
    shows no control, so it keeps the class chosen before it started (a plain key: a widget's own key
    is dropped on a run that does not draw it)."""
    if name == "roc":
        chosen = st.session_state.get("cmp_roc_chosen")
        if presenting:
            roc_class = chosen if chosen in classes else classes[0]
        else:
            # Pills draw their options as Markdown: a class name is shown as text (common.md).
            roc_class = st.pills("ROC class (one vs rest)", classes, default=chosen if chosen in classes else classes[0],
                                 format_func=common.md, key="cmp_roc_class") or classes[0]
            st.session_state["cmp_roc_chosen"] = roc_class
        fig = report.roc_figure(runs_list, roc_class)
    else:
        fig = FIGURES[name](runs_list)
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
                st.caption("The reliability diagram behind the ECE row of the table: held-out predictions binned by "
                           "the model's top probability; a point below the diagonal means the model is more confident "
                           "than it is right (over-confident). ECE is the gap weighted by the predictions in each bin.")
            else:
                draw(name)

changed = [(run.path, change) for run in runs_list if (change := results.dataset_change(run)) is not None]
gallery = results.misclassified_gallery(runs_list, limit=8)
if not presenting or ("misclassified" in sections and not changed):
    st.subheader("Misclassified galaxies")
    common.changed_dataset_notice(changed, key="cmp_changed_runs")
if changed and not presenting:
    # The gallery's images come from the dataset folder: after a rebuild a name may show another image.
    st.caption("No gallery: the dataset folder no longer holds the images these runs were tested on.")
elif gallery.empty and not presenting:
    st.success("Every test galaxy is classified correctly by every chosen model.")
elif not changed and not gallery.empty:
    if not presenting:
        st.caption(f"Held-out galaxies that at least one model gets wrong ({report.pooled_note(runs_list)}); with "
                   "several seeds, a model's most frequent prediction and how often it was wrong.")
    source_path = results.dataset_source(runs_list[0])
    for chunk in range(0, len(gallery), 4):
        for col, (_, row) in zip(st.columns(4), gallery.iloc[chunk:chunk + 4].iterrows()):
            with col:
                image = builds.dataset_image(runs_list[0].config["dataset"]["path"], row["name"])
                if image is not None:
                    st.image(image, width="stretch")
                lines = [f"**{common.md(row['name'])}** — true **{common.md(row['true'])}**"]
                for m in models:
                    often = row[f"wrong_{m}"]
                    how_often = f", wrong in {often:.0%} of runs" if 0 < often < 1 else ""
                    lines.append(f"{common.md(common.model_label(m))}: {common.md(row[f'pred_{m}'])} "
                                 f"({row[f'conf_{m}']:.0%}{how_often})")
                st.markdown("  \n".join(lines))
    common.acknowledge(source_path)

if presenting:
    st.stop()

st.subheader("Saliency and Grad-CAM")
st.caption("Where each network looks, in colour over the galaxy: for each model one run, the one whose test split "
           "held this galaxy (it never saw it in training), named under its maps.")
names = list(gallery["name"]) if not gallery.empty else list(runs_list[0].predictions["name"].head(20))
galaxy = st.selectbox("Galaxy", names, key="cmp_saliency_name")
if st.button("Compute saliency maps", key="cmp_saliency", icon=":material/visibility:",
             disabled=problem is not None or bool(changed)):
    dataset_path = runs_list[0].config["dataset"]["path"]
    image = builds.dataset_image(dataset_path, galaxy, raw=True)
    shown = builds.dataset_image(dataset_path, galaxy)
    networks = [run for m in models if (run := report.run_holding_out(runs_list, m, str(galaxy))) is not None
                and (run.path / "model.keras").exists()]  # the baseline has no gradients
    for col, run in zip(st.columns(max(1, len(networks))), networks):
        heat, predicted = results.saliency(run.path, image)
        label = run.classes[predicted] if predicted < len(run.classes) else predicted
        model = common.model_label(run.model_name)
        col.plotly_chart(charts.saliency_overlay(shown, heat, title=f"{model} → {label}: |∂p/∂pixel|",
                                                 scale_title="saliency"), key=f"cmp_saliency_{run.id}")
        cam, _ = results.grad_cam(run.path, image)
        col.plotly_chart(charts.saliency_overlay(shown, cam, title=f"{model} → {label}: Grad-CAM",
                                                 scale_title="Grad-CAM"), key=f"cmp_gradcam_{run.id}")
        col.caption(common.md(f"{model}: run {run.label} (seed {run.seed}, split {report.split_key(run)})"))
