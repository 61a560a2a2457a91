"""A comparison in words and cells: the verdict sentences, the title, the notes that go with every export,
and the summary table's display text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError
from core.learn.metrics import format_mean_std
from core.learn.report.tables import (
    BASELINE,
    FAMILIES,
    FoldEnsemble,
    SUMMARY_METRICS,
    deduplicate,
    experiment_protocol,
    finished,
    fold_ensembles,
    model_label,
    paired_tests,
    pooled_predictions,
    smallest_first,
    split_key,
)
from core.runs import Run

METRIC_LABELS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced acc.", "macro_f1": "Macro F1",
                 "roc_auc_macro": "ROC AUC (OvR)", "ece": "ECE", "params": "Parameters", "train_seconds": "Train time (s)",
                 "inference_img_per_s": "Inference (img/s)"}

PROTOCOL_MEANINGS = {"equal": "one recipe for every model", "tuned": "per-model recipes"}
PROTOCOL_WORDS = {name: f"{meaning} ({name} protocol)" for name, meaning in PROTOCOL_MEANINGS.items()}


def protocol_words(name: str) -> str:
    """``equal`` -> ``one recipe for every model (equal protocol)``; unknown names as ``NAME protocol``."""
    return PROTOCOL_WORDS.get(name, f"{name} protocol")


def pooled_note(runs: list[Run]) -> str:
    """What the figures pool, in words: ``pooled over 5 folds: 580 held-out predictions per model``, or for folds
    on a frozen test set ``ensemble of 5 fold models (mean probability) on 85 frozen test galaxies ...``."""
    done = fold_ensembles(deduplicate(finished(runs)))
    ensembles = [r for r in done if isinstance(r, FoldEnsemble)]
    splits = {split_key(r) for r in done if r.model_name != BASELINE} or {split_key(r) for r in done}
    seeds = {r.seed for r in done}
    pooled = pooled_predictions(done)
    n = max((len(frame) for frame in pooled.values()), default=0)
    if ensembles:
        alone = [a for e in ensembles for a in e.metrics["fold_accuracies"]]
        seeds_note = f" × {_count(len(seeds), 'seed')}" if len(seeds) > 1 else ""
        return (f"ensemble of {len(ensembles[0].members)} fold models (mean probability) on "
                f"{n // max(len(seeds), 1):,} frozen test galaxies{seeds_note}, each counted once; the fold "
                f"models alone score {min(alone):.3f}–{max(alone):.3f}")
    kind = "fold" if all(s.startswith("k") for s in splits) else "split"
    what = [_count(len(splits), kind)] if len(splits) > 1 else []
    what += [_count(len(seeds), "seed")] if len(seeds) > 1 else []
    if not what:
        return f"one split and seed: {n:,} test galaxies per model"
    return f"pooled over {' × '.join(what)}: {n:,} held-out predictions per model"


def format_p(p: float) -> str:
    """``p = 0.003``, ``p = 0.41``, ``p < 0.001``."""
    if p != p:
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _holm_tag(row: Any) -> str:
    # The family size travels with every p, so a reader knows what Holm corrected for.
    return f"{format_p(row.p_holm)}, Holm-corrected"


def verdicts(tests: pd.DataFrame) -> list[str]:
    """One sentence per model pair from :func:`paired_tests`, e.g. "ResNet-18 is better than LeNet-5
    (p = 0.003, Holm-corrected)", "no significant difference between LeNet-5 and AlexNet (p = 0.41,
    Holm-corrected)", or, for one split and one seed, "AlexNet was more accurate than LeNet-5 on this one
    split and seed (p = 0.003, Holm-corrected); train more seeds or folds before calling it better"."""
    lines = []
    for row in tests.itertuples():
        p = _holm_tag(row)
        if pd.isna(row.better):
            lines.append(f"no significant difference between {model_label(row.model_a)} and "
                         f"{model_label(row.model_b)} ({p})")
            continue
        worse = row.model_b if row.better == row.model_a else row.model_a
        if row.replicated:
            lines.append(f"{model_label(row.better)} is better than {model_label(worse)} ({p})")
        else:
            lines.append(f"{model_label(row.better)} was more accurate than {model_label(worse)} on this one split "
                         f"and seed ({p}); train more seeds or folds before calling it better")
    return lines


def floor_sentences(tests: pd.DataFrame) -> list[str]:
    """Per network, in words, whether it beat the gradient-boosting baseline on hand-made features
    (the ``baseline`` family of :func:`paired_tests`); one sentence for all of them when none of
    several beats it."""
    floor = tests[tests["family"] == "baseline"]
    if len(floor) > 1 and not floor["better"].notna().any():
        names = [model_label(r.model_b if r.model_a == BASELINE else r.model_a) for r in floor.itertuples()]
        shown = {format_p(value) for value in floor["p_holm"]}
        p = f"{shown.pop()} each" if len(shown) == 1 else f"every p ≥ {floor['p_holm'].min():.2g}"
        return [f"None of {', '.join(names[:-1])} and {names[-1]} beats the gradient-boosting baseline ({p}, "
                "Holm-corrected): no evidence that they learned more than the hand-made morphology features"]
    lines = []
    for row in floor.itertuples():
        network = row.model_b if row.model_a == BASELINE else row.model_a
        name, p = model_label(network), _holm_tag(row)
        if row.better == network and row.replicated:
            lines.append(f"{name} beats the gradient-boosting baseline ({p}): it learned more than the hand-made "
                         "morphology features say")
        elif row.better == network:
            lines.append(f"{name} beat the gradient-boosting baseline on this one split and seed ({p}); train more "
                         "seeds or folds before calling it better")
        elif row.better == BASELINE:
            lines.append(f"{name} is worse than the gradient-boosting baseline ({p}): the hand-made features "
                         "classify better")
        else:
            lines.append(f"{name} does not beat the gradient-boosting baseline ({p}): no evidence that it learned "
                         "more than the hand-made morphology features")
    return lines


def summary_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """Display text of the summary: metric labels by row (accuracy first, then :data:`N_TEST_LABEL`, the
    test galaxies behind it), model ids by column, ``mean ± std [low, high]`` (the std only with several
    runs, the interval only for :data:`INTERVAL_METRICS`), and a last row ``Runs`` (``15: 5 splits × 3
    seeds``)."""
    columns = {}
    for model in summary.index:
        row = summary.loc[model]
        cells = {METRIC_LABELS[m]: _format_cell(m, row[f"{m}_mean"], row[f"{m}_std"], row.get(f"{m}_lo", np.nan),
                                          row.get(f"{m}_hi", np.nan)) for m in SUMMARY_METRICS}
        cells = {METRIC_LABELS["accuracy"]: cells.pop(METRIC_LABELS["accuracy"]),
                 N_TEST_LABEL: n_test_cell(row.get("n_test", np.nan), row.get("n_test_pooled", np.nan),
                                            int(row.get("n_splits", 1))), **cells}
        cells["Runs"] = _runs_cell(int(row.get("n_runs", row.get("n_seeds", 1))), int(row.get("n_splits", 1)),
                                   int(row.get("n_seeds", 1)), int(row.get("n_models", 0) or 0))
        columns[model] = cells
    return pd.DataFrame(columns)


N_TEST_LABEL = "Test galaxies (n)"


def n_test_cell(n_test: float, pooled: float, n_splits: int) -> str:
    """``87`` on one split; ``580 (116 per fold)`` pooled over splits."""
    if n_test != n_test:
        return "–"
    if n_splits > 1 and pooled == pooled:
        return f"{pooled:,.0f} ({n_test:,.0f} per split)"
    return f"{n_test:,.0f}"


def _runs_cell(n_runs: int, n_splits: int, n_seeds: int, n_models: int = 0) -> str:
    """``15: 5 splits × 3 seeds``; ``5 fold models, 1 ensemble`` where fold models were ensembled."""
    if n_models > n_runs:
        return f"{n_models} fold models, {n_runs} ensemble{'s' if n_runs != 1 else ''}"
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((n_splits, "split"), (n_seeds, "seed")) if n > 1]
    return f"{n_runs}: {' × '.join(parts)}" if parts else str(n_runs)


def format_summary(summary: pd.DataFrame, *, best: str | None = None) -> str:
    """The summary as a side-by-side text table (metrics by row, models by column), with a note on
    the intervals and ``*`` on the accuracy of ``best`` (significantly better than every other model)."""
    cells = summary_cells(summary)
    if best is not None:
        cells.loc[METRIC_LABELS["accuracy"], best] += " *"
    models = [model_label(m) for m in cells.columns]
    width = max(18, *(len(m) + 2 for m in models), *(len(c) + 2 for c in cells.to_numpy().ravel()))
    lines = [f"{'':<20}" + "".join(f"{m:>{width}}" for m in models)]
    for label, row in cells.iterrows():
        lines.append(f"{label:<20}" + "".join(f"{c:>{width}}" for c in row))
    lines.append(interval_note(summary))
    if best is not None:
        lines.append(f"* {best_note(best)}")
    return "\n".join(lines)


def interval_note(summary: pd.DataFrame) -> str:
    """One sentence saying what ``±`` and ``[low, high]`` mean for this summary."""
    if (summary["interval"] == "frozen test set, fold ensemble").any():
        where = ("95 % intervals [low, high] on the frozen test set, each test galaxy counted once: Wilson "
                 "for the accuracy of the fold models' mean-probability ensemble, stratified bootstrap for "
                 "the others")
    elif (summary["n_splits"] > 1).any():
        where = ("95 % intervals [low, high] between splits (corrected resampled t, Nadeau & Bengio 2003) where a "
                 "model has several splits, else on the test set")
    else:
        where = ("95 % intervals [low, high] on the test set: Wilson for accuracy, stratified bootstrap (1,000 "
                 "resamples) for the others, averaged over seeds")
    return f"mean ± std over runs; {where}."


def _format_cell(metric: str, mean: float, std: float, low: float = float("nan"), high: float = float("nan")) -> str:
    if mean != mean:
        return "–"
    if metric == "params":
        return f"{mean / 1e6:.2f} M" if mean >= 1e5 else f"{mean / 1e3:.1f} k"
    if metric in ("train_seconds", "inference_img_per_s"):
        return format_mean_std(mean, std, digits=0)
    text = format_mean_std(mean, std, digits=3)
    return text if low != low else f"{text} [{low:.3f}, {high:.3f}]"


def comparison_title(runs: list[Run], *, excluded: list[Run] | tuple[Run, ...] = ()) -> str:
    """The headline of a comparison on one line (the CLI, the exports): ``LeNet-5 vs AlexNet vs ResNet-18 · tiny ·
    one recipe for every model (equal protocol) · 5 folds``, then ``· left out: ResNet-18 s0 f2`` when runs of the
    experiment were excluded by hand.

    The models smallest first, the dataset folder, the protocol (always), how many runs each model's
    numbers pool (seeds on one split, or ``5 folds × 2 seeds``), and the runs left out. The dashboard
    splits the same content over a short title and a line under it (:func:`comparison_headline`).
    """
    done = _titled(runs)
    title = f"{_models(done)} · {_dataset(done)} · {protocol_words(experiment_protocol(done))} · {_pooled(done)}"
    if excluded:
        title += f" · left out: {_left_out(excluded)}"
    return title


def comparison_headline(runs: list[Run], *, excluded: list[Run] | tuple[Run, ...] = ()) -> tuple[str, str]:
    """The comparison's title and the smaller line under it, for a page or a projector.

    The title is short enough for two lines of a 1024-px projector: the models, the protocol (always)
    and how many runs were left out by hand (``LeNet-5 vs AlexNet vs ResNet-18 · equal protocol · 1 run
    left out``). The line under it holds the long details: the dataset folder, what the protocol means,
    what the figures pool with the test galaxies per model (n), and the runs left out by name
    (``sample-hubble3 · one recipe for every model · one split and seed: 143 test galaxies per model``).
    """
    done = _titled(runs)
    protocol = experiment_protocol(done)
    title = f"{_models(done)} · {protocol} protocol"
    if excluded:
        title += f" · {_count(len(excluded), 'run')} left out"
    details = [_dataset(done)]
    if protocol in PROTOCOL_MEANINGS:
        details.append(PROTOCOL_MEANINGS[protocol])
    details.append(pooled_note(done))
    if excluded:
        details.append(f"left out: {_left_out(excluded)}")
    return title, " · ".join(details)


def _titled(runs: list[Run]) -> list[Run]:
    done = deduplicate(finished(runs))
    if not done:
        raise GalaxyMorphError("no finished runs to title. Train some with `python -m core train`.")
    return done


def _models(done: list[Run]) -> str:
    return " vs ".join(model_label(m) for m in smallest_first([r.model_name for r in done]))


def _dataset(done: list[Run]) -> str:
    return Path(str(done[0].config.get("dataset", {}).get("path", "dataset"))).name


def _pooled(done: list[Run]) -> str:
    # "1 seed", "3 seeds", "5 folds", "5 folds × 2 seeds": what each model's numbers pool.
    networks = [r for r in done if r.model_name != BASELINE] or done
    splits = {split_key(r) for r in networks}
    seeds = _count(len({r.seed for r in networks}), "seed")
    if len(splits) > 1:
        kind = "fold" if all(s.startswith("k") for s in splits) else "split"
        seeds = (f"{_count(len(splits), kind)} × {seeds}" if len({r.seed for r in networks}) > 1
                 else _count(len(splits), kind))
    return seeds


def _left_out(excluded: list[Run] | tuple[Run, ...]) -> str:
    shown = [run_name(r) for r in excluded[:4]]
    more = f" and {len(excluded) - 4} more" if len(excluded) > 4 else ""
    return f"{', '.join(shown)}{more}"


def run_name(run: Run) -> str:
    # "ResNet-18 s0 f2": the run label with the display name of the model.
    return model_label(run.model_name) + run.label[len(run.model_name):]


def excluded_note(runs: list[Run], every: list[Run]) -> str | None:
    """What leaving runs out changed, or ``None`` when ``runs`` is all of ``every`` (the experiment's runs):
    which runs are left out, and that the Holm families now hold only the pairs the runs shown can test."""
    shown_ids = {r.id for r in runs}
    left_out = [r for r in deduplicate(finished(every)) if r.id not in shown_ids]
    if not left_out:
        return None
    pairs_shown, pairs_all = len(paired_tests(runs)), len(paired_tests(every))
    names = ", ".join(run_name(r) for r in left_out)
    return (f"{_count(len(left_out), 'run')} left out by hand ({names}). The Holm correction now covers "
            f"{_count(pairs_shown, 'model pair')} of the runs shown (with every run: {pairs_all}), and the "
            "means, intervals and p-values are those of the runs shown, not of the whole experiment.")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict_sentence(tests: pd.DataFrame) -> str | None:
    """Every pair of networks' :func:`verdicts` as one sentence (``ResNet-18 is better than LeNet-5 (p = 0.003,
    Holm-corrected); no significant …``), or ``None`` when no two networks share a seed and split. The
    baseline's pairs are :func:`floor_sentences`."""
    tests = tests[tests["family"] == "architectures"]
    said = verdicts(tests)
    if not said:
        return None
    if len(tests) > 2 and tests["better"].isna().all():
        # Three "no significant difference" clauses in a row read as noise: one clause says it.
        models = smallest_first([*tests["model_a"], *tests["model_b"]])
        names = ", ".join(model_label(m) for m in models[:-1]) + f" and {model_label(models[-1])}"
        lowest, highest = format_p(float(tests["p_holm"].min())), format_p(float(tests["p_holm"].max()))
        p = f"{lowest} for every pair" if lowest == highest else "every " + lowest.replace("p = ", "p ≥ ")
        return f"No significant difference between any two of {names} ({p}, Holm-corrected)."
    text = "; ".join(said)
    return text[0].upper() + text[1:] + "."


def verdict_lines(runs: list[Run]) -> list[str]:
    """The verdict in words for a page, a slide or an export: the architectures' sentence, one sentence per
    network against the baseline (or how to get one), and which family Holm corrected."""
    tests = paired_tests(runs)
    lines = []
    if (sentence := verdict_sentence(tests)) is not None:
        lines.append(sentence)
    floors = floor_sentences(tests)
    lines += [line[0].upper() + line[1:] + "." for line in floors]
    networks = {r.model_name for r in finished(runs)} - {BASELINE}
    if networks and not floors:
        # Plain words, no Markdown: the line goes to the page (escaped), the CLI, LaTeX and HTML alike.
        lines.append("No gradient-boosting baseline shares these splits, so this comparison cannot say whether a "
                     "network learned more than hand-made features: train one on the same split "
                     "with python -m core train --models baseline.")
    if not tests.empty:
        families = [f"{FAMILIES[f]} ({_count(int(n), 'pair')})" for f, n in tests["family"].value_counts().items()]
        lines.append("Holm-corrected within each family: " + "; ".join(families) + ".")
    return lines


def best_note(best: str | None) -> str:
    """What the highlighted accuracy means, or that none is highlighted."""
    if best is None:
        return "No network is significantly more accurate than every other one over folds or seeds."
    return f"{model_label(best)} is significantly more accurate than every other network (Holm-corrected)."


def tuning_note(runs: list[Run]) -> str:
    """How the recipes of tuned ``runs`` were picked (empty unless the experiment is a tuned one): a nested
    search with the same candidates for every model, or, for runs recorded before it, fixed recipes."""
    if experiment_protocol(runs) != "tuned":
        return ""
    searched = [r.config["tuning"] for r in runs if isinstance(r.config.get("tuning"), dict)]
    networks = [r for r in runs if r.model_name != BASELINE]
    sizes = sorted({len(t.get("candidates", [])) for t in searched})
    note = ""
    if searched:
        note = (f"Each tuned run picked its learning rate and schedule on its own validation galaxies from the same "
                f"{' or '.join(map(str, sizes))} candidates for every model (nested: its test galaxies scored only "
                "the one kept).")
    if len(searched) < len(networks):
        note += (" " if note else "") + ("Tuned runs recorded before the search used fixed per-model recipes, "
                                         "chosen on folds that also scored them (not nested).")
    return note


def report_notes(runs: list[Run], summary: pd.DataFrame, *, excluded: list[Run] | tuple[Run, ...] = ()) -> list[str]:
    """The sentences that go with every export: the verdict in words (:func:`verdict_lines`), what the figures
    pool, what the intervals are, and the runs left out."""
    notes = verdict_lines(runs)
    notes.append(f"Protocol: {protocol_words(experiment_protocol(runs))}. Figures and per-class intervals: "
                 f"{pooled_note(runs)}.")
    if tuning_note(runs):
        notes.append(tuning_note(runs))
    notes.append(interval_note(summary)[0].upper() + interval_note(summary)[1:])
    if excluded:
        notes.append(f"Left out by hand: {', '.join(run_name(r) for r in excluded)}; the Holm families cover "
                     "only the pairs of the runs shown.")
    return notes
